"""Use cases of conformance claims: claim, test, verify, reject, read and list, and the schedule's
expiry of verifications whose date has come.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from datetime import date, datetime

from icep.contracts import Releasability
from icep.platform import audit
from icep.platform.db import Database
from icep.platform.domain import Actor
from icep.platform.events import utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWorkFactory
from icep.platform.telemetry import tracer
from icep.standards.conformance.model import ConformanceClaim, ConformanceStatus, Product
from icep.standards.conformance.repository import ClaimRepository, claim_row, find_claims, to_claim
from icep.standards.standards.repository import StandardRepository

log = logging.getLogger("icep.standards")


async def claim_conformance(
    uow: UnitOfWorkFactory,
    actor: Actor,
    *,
    product: Product,
    standard_id: str,
    level: str | None,
    evidence: tuple[str, ...],
    releasability: Releasability | None,
) -> ConformanceClaim:
    now = utcnow()
    async with uow() as tx:
        standard = await StandardRepository(tx).get(actor, standard_id)
        claim = ConformanceClaim.claim(
            id=new_id(),
            actor=actor,
            product=product,
            standard=standard,
            now=now,
            level=level,
            evidence=evidence,
            releasability=releasability,
        )
        await ClaimRepository(tx).save(claim)
    return claim


async def start_test(
    uow: UnitOfWorkFactory, actor: Actor, claim_id: str, expected: int | None, evidence: tuple[str, ...]
) -> ConformanceClaim:
    async with uow() as tx:
        claims = ClaimRepository(tx)
        claim = await claims.get_for_update(actor, claim_id, expected)
        claim = claim.start_test(actor, utcnow(), evidence)
        await claims.save(claim)
    return claim


async def verify_claim(
    uow: UnitOfWorkFactory,
    actor: Actor,
    claim_id: str,
    expected: int | None,
    expires_on: date,
    evidence: tuple[str, ...],
    *,
    allow_self_verification: bool = False,
) -> ConformanceClaim:
    async with uow() as tx:
        claims = ClaimRepository(tx)
        claim = await claims.get_for_update(actor, claim_id, expected)
        claim = claim.verify(
            actor, expires_on, utcnow(), evidence, allow_self_verification=allow_self_verification
        )
        await claims.save(claim)
    return claim


async def reject_claim(
    uow: UnitOfWorkFactory, actor: Actor, claim_id: str, expected: int | None, reason: str
) -> ConformanceClaim:
    async with uow() as tx:
        claims = ClaimRepository(tx)
        claim = await claims.get_for_update(actor, claim_id, expected)
        claim = claim.reject(actor, reason, utcnow())
        await claims.save(claim)
    return claim


async def expire_due_claims(uow: UnitOfWorkFactory, now: datetime | None = None, batch: int = 200) -> int:
    """Move every verified claim whose date has come to expired, with its event, in one transaction per
    batch. An expired claim is never due again and rows are locked (skipping ones another replica holds),
    so each expiry is recorded and announced exactly once, whatever restarts or replicas there are."""
    now = now or utcnow()
    expired = 0
    while True:
        # A run that finds nothing is no trace (its queries are not recorded); one that expires claims
        # starts a trace of its own, which its events carry on (outbox, Kafka, subscribers).
        async with AsyncExitStack() as found_work, uow() as tx:
            claims = ClaimRepository(tx)
            due = await claims.due(now, batch)
            if due:
                found_work.enter_context(
                    tracer("icep.standards").start_as_current_span(
                        "expire conformance", attributes={"icep.expired": len(due)}
                    )
                )
            for claim in due:
                await claims.save(claim.expire(now))
        expired += len(due)
        if len(due) < batch:
            break
    if expired:
        log.info("%d conformance verifications expired", expired)
    return expired


async def get_claim(db: Database, actor: Actor, claim_id: str) -> ConformanceClaim:
    async with db.sessions() as session:
        claim = to_claim(await claim_row(session, actor, claim_id, lock=False))
    audit.read("conformance_claim", claim_id, claim.release.owner)
    return claim


async def list_claims(
    db: Database,
    actor: Actor,
    *,
    standard_id: str | None,
    product_code: str | None,
    status: ConformanceStatus | None,
    nation: str | None,
    limit: int,
    after: str | None,
) -> tuple[list[ConformanceClaim], str | None]:
    async with db.sessions() as session:
        return await find_claims(
            session,
            actor,
            standard_id=standard_id,
            product_code=product_code,
            status=status,
            nation=nation,
            limit=limit,
            after=after,
        )
