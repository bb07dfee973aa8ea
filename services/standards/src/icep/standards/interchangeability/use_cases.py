"""Use cases of interchangeability: record and change clearances, read and list them, and answer
"can nation N fire item I from platform P" from what the caller may see.
"""

from __future__ import annotations

from dataclasses import dataclass

from icep.contracts import Releasability
from icep.platform import audit
from icep.platform.db import Database
from icep.platform.domain import Actor, invalid
from icep.platform.errors import Conflict, NotFound
from icep.platform.events import utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWork, UnitOfWorkFactory
from icep.standards.answers.repository import responses_to
from icep.standards.interchangeability import model
from icep.standards.interchangeability.model import (
    Basis,
    BasisKind,
    Interchangeability,
    InterchangeabilityAnswer,
    InterchangeabilityStatus,
)
from icep.standards.interchangeability.repository import (
    ClearanceRepository,
    clearance_row,
    find_clearances,
    to_clearance,
    visible_clearances,
)
from icep.standards.standards.repository import StandardRepository, visible_standards


@dataclass(frozen=True)
class ClearanceInput:
    status: InterchangeabilityStatus
    basis: Basis
    nations: tuple[str, ...] | None = None
    restrictions: tuple[str, ...] = ()


async def _check_basis(tx: UnitOfWork, actor: Actor, basis: Basis) -> None:
    """A clearance resting on a standard names an edition the caller may read."""
    if basis.kind is BasisKind.STANDARD:
        try:
            await StandardRepository(tx).get(actor, basis.reference)
        except NotFound:
            raise invalid("body.basis.reference", f"no standard {basis.reference}") from None


async def record_clearance(
    uow: UnitOfWorkFactory,
    actor: Actor,
    *,
    item: str,
    platform: str,
    given: ClearanceInput,
    releasability: Releasability | None,
) -> Interchangeability:
    now = utcnow()
    async with uow() as tx:
        await _check_basis(tx, actor, given.basis)
        clearance = Interchangeability.record(
            id=new_id(),
            actor=actor,
            item=item,
            platform=platform,
            nations=given.nations or (),
            status=given.status,
            basis=given.basis,
            now=now,
            restrictions=given.restrictions,
            releasability=releasability,
        )
        clearances = ClearanceRepository(tx)
        existing = await clearances.recorded_by_owner(clearance)
        if existing is not None:
            raise Conflict(
                f"{clearance.release.owner} already recorded the clearance of {clearance.item} for"
                f" {clearance.platform}: change /v1/interchangeability/clearances/{existing}"
            )
        await clearances.save(clearance)
    return clearance


async def update_clearance(
    uow: UnitOfWorkFactory, actor: Actor, clearance_id: str, expected: int | None, given: ClearanceInput
) -> Interchangeability:
    async with uow() as tx:
        clearances = ClearanceRepository(tx)
        clearance = await clearances.get_for_update(actor, clearance_id, expected)
        await _check_basis(tx, actor, given.basis)
        clearance = clearance.update(
            actor,
            now=utcnow(),
            status=given.status,
            nations=given.nations,
            basis=given.basis,
            restrictions=given.restrictions,
        )
        await clearances.save(clearance)
    return clearance


async def get_clearance(db: Database, actor: Actor, clearance_id: str) -> Interchangeability:
    async with db.sessions() as session:
        clearance = to_clearance(await clearance_row(session, actor, clearance_id, lock=False))
    audit.read("clearance", clearance_id, clearance.release.owner)
    return clearance


async def list_clearances(
    db: Database,
    actor: Actor,
    *,
    item: str | None,
    platform: str | None,
    limit: int = 50,
    after: str | None = None,
) -> tuple[list[Interchangeability], str | None]:
    async with db.sessions() as session:
        return await find_clearances(session, actor, item=item, platform=platform, limit=limit, after=after)


async def can_fire(
    db: Database, actor: Actor, *, item: str, platform: str, nation: str
) -> InterchangeabilityAnswer:
    """From the clearances, standards and responses the caller may see: a reason never cites a record the
    caller could not read."""
    async with db.sessions() as session:
        clearances = await visible_clearances(session, actor, item=item, platform=platform)
        basis_ids = [c.basis.reference for c in clearances if c.basis.kind is BasisKind.STANDARD]
        standards = await visible_standards(session, actor, ids=basis_ids) if basis_ids else []
        responses = await responses_to(session, [s.id for s in standards])
    return model.can_fire(nation, item, platform, clearances, standards, responses, on=utcnow().date())
