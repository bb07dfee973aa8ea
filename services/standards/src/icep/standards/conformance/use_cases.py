"""Use cases of conformance claims: claim, test, verify, reject, read and list, and the schedule's
expiry of verifications whose date has come.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from icep.contracts import EventPayload, Releasability
from icep.contracts.releasability import encode_tokens
from icep.contracts.standards import (
    ConformanceClaimed,
    ConformanceExpired,
    ConformanceRejected,
    ConformanceTestStarted,
    ConformanceVerified,
)
from icep.platform import audit, visibility
from icep.platform.db import Database
from icep.platform.domain import Actor, check_version
from icep.platform.events import OutgoingEvent, utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWork, UnitOfWorkFactory
from icep.platform.telemetry import tracer
from icep.standards.conformance.model import ConformanceClaim, ConformanceStatus, Product
from icep.standards.conformance.repository import claim_row, store_claim, to_claim
from icep.standards.conformance.rows import ConformanceRow
from icep.standards.records import may_read, readers
from icep.standards.standards.repository import (
    reference_of,
    standard_row,
    to_standard,
)

log = logging.getLogger("icep.standards")


def _publish(tx: UnitOfWork, subject: str, release: Releasability, payload: EventPayload) -> None:
    tx.publish(OutgoingEvent(payload=payload, subject=subject, releasability=release))


def _claim_fields(c: ConformanceClaim, standard_reference: str) -> dict[str, Any]:
    return {
        "claim_id": c.id,
        "nation": c.nation,
        "manufacturer": c.product.manufacturer,
        "product_code": c.product.product_code,
        "product_name": c.product.name,
        "standard_id": c.standard_id,
        "standard_reference": standard_reference,
        "level": c.level,
        "version": c.version,
    }


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
        standard = to_standard(await standard_row(tx.session, actor, standard_id, lock=False))
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
        row = ConformanceRow(
            id=claim.id,
            nation=claim.nation,
            manufacturer=product.manufacturer,
            product_code=product.product_code,
            product_name=product.name,
            standard_id=standard.id,
            level=claim.level,
            status=claim.status.value,
            version=claim.version,
            release_scope=claim.release.scope.value,
            release_nations=list(claim.release.nations),
            readers=encode_tokens(readers(claim.release)),
        )
        store_claim(row, claim)
        tx.session.add(row)
        _publish(
            tx,
            claim.id,
            claim.release,
            ConformanceClaimed(
                **_claim_fields(claim, standard.reference),
                evidence=list(claim.evidence),
                claimed_by=actor.id,
                claimed_at=now,
            ),
        )
    return claim


async def _change_claim(
    uow: UnitOfWorkFactory,
    actor: Actor,
    claim_id: str,
    expected: int | None,
    change: Callable[[ConformanceClaim, datetime], ConformanceClaim],
    announce: Callable[[ConformanceClaim, dict[str, Any], datetime], EventPayload],
) -> ConformanceClaim:
    async with uow() as tx:
        row = await claim_row(tx.session, actor, claim_id, lock=True)
        claim = to_claim(row)
        check_version("conformance claim", claim.version, expected)
        now = utcnow()
        changed = change(claim, now)
        store_claim(row, changed)
        fields = _claim_fields(changed, await reference_of(tx.session, changed.standard_id))
        _publish(tx, changed.id, changed.release, announce(changed, fields, now))
    return changed


async def start_test(
    uow: UnitOfWorkFactory, actor: Actor, claim_id: str, expected: int | None, evidence: tuple[str, ...]
) -> ConformanceClaim:
    return await _change_claim(
        uow,
        actor,
        claim_id,
        expected,
        lambda c, now: c.start_test(actor, now, evidence),
        lambda c, f, now: ConformanceTestStarted(
            **f, evidence=list(c.evidence), started_by=actor.id, started_at=now
        ),
    )


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
    return await _change_claim(
        uow,
        actor,
        claim_id,
        expected,
        lambda c, now: c.verify(
            actor, expires_on, now, evidence, allow_self_verification=allow_self_verification
        ),
        lambda c, f, now: ConformanceVerified(
            **f, evidence=list(c.evidence), expires_on=expires_on, verified_by=actor.id, verified_at=now
        ),
    )


async def reject_claim(
    uow: UnitOfWorkFactory, actor: Actor, claim_id: str, expected: int | None, reason: str
) -> ConformanceClaim:
    return await _change_claim(
        uow,
        actor,
        claim_id,
        expected,
        lambda c, now: c.reject(actor, reason, now),
        lambda c, f, now: ConformanceRejected(
            **f, reason=c.rejection_reason or reason, rejected_by=actor.id, rejected_at=now
        ),
    )


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
            query = (
                select(ConformanceRow)
                .where(
                    col(ConformanceRow.status) == ConformanceStatus.VERIFIED.value,
                    col(ConformanceRow.expires_on) <= now.date(),
                )
                .order_by(col(ConformanceRow.id))
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
            rows = (await tx.session.execute(query)).scalars().all()
            if rows:
                found_work.enter_context(
                    tracer("icep.standards").start_as_current_span(
                        "expire conformance", attributes={"icep.expired": len(rows)}
                    )
                )
            for row in rows:
                claim = to_claim(row).expire(now)
                store_claim(row, claim)
                fields = _claim_fields(claim, await reference_of(tx.session, claim.standard_id))
                _publish(
                    tx,
                    claim.id,
                    claim.release,
                    ConformanceExpired(**fields, expires_on=claim.expires_on or now.date(), expired_at=now),
                )
        expired += len(rows)
        if len(rows) < batch:
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
    query = select(ConformanceRow).where(visibility.readable_by(col(ConformanceRow.readers), actor.nation))
    if standard_id:
        query = query.where(col(ConformanceRow.standard_id) == standard_id)
    if product_code:
        query = query.where(col(ConformanceRow.product_code) == product_code)
    if status:
        query = query.where(col(ConformanceRow.status) == status.value)
    if nation:
        query = query.where(col(ConformanceRow.nation) == nation)
    if after:
        query = query.where(col(ConformanceRow.id) > after)
    async with db.sessions() as session:
        rows = (
            (await session.execute(query.order_by(col(ConformanceRow.id)).limit(limit + 1))).scalars().all()
        )
    claims = [c for c in (to_claim(r) for r in rows[:limit]) if may_read(c.release, actor.nation)]
    return claims, (rows[limit - 1].id if len(rows) > limit else None)
