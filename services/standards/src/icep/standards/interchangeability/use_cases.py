"""Use cases of interchangeability: record and change clearances, read and list them, and answer
"can nation N fire item I from platform P" from what the caller may see.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.contracts import EventPayload, Releasability
from icep.contracts.standards import (
    InterchangeabilityUpdated,
)
from icep.platform import audit, visibility
from icep.platform.db import Database
from icep.platform.domain import Actor, check_version, invalid
from icep.platform.errors import Conflict, NotFound
from icep.platform.events import OutgoingEvent, utcnow
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
    clearance_row,
    store_clearance,
    to_clearance,
    visible_clearances,
)
from icep.standards.interchangeability.rows import ClearanceRow
from icep.standards.records import may_read
from icep.standards.standards.repository import (
    standard_row,
    visible_standards,
)
from icep.standards.standards.rows import StandardRow


def _publish(tx: UnitOfWork, subject: str, release: Releasability, payload: EventPayload) -> None:
    tx.publish(OutgoingEvent(payload=payload, subject=subject, releasability=release))


@dataclass(frozen=True)
class ClearanceInput:
    status: InterchangeabilityStatus
    basis: Basis
    nations: tuple[str, ...] | None = None
    restrictions: tuple[str, ...] = ()


async def _check_basis(session: AsyncSession, actor: Actor, basis: Basis) -> None:
    if basis.kind is BasisKind.STANDARD:
        try:
            await standard_row(session, actor, basis.reference, lock=False)
        except NotFound:
            raise invalid("body.basis.reference", f"no standard {basis.reference}") from None


def _clearance_event(c: Interchangeability, actor: Actor) -> InterchangeabilityUpdated:
    return InterchangeabilityUpdated(
        clearance_id=c.id,
        item=c.item,
        platform=c.platform,
        nations=list(c.nations),
        status=c.status.value,
        basis_kind=c.basis.kind.value,
        basis_reference=c.basis.reference,
        restrictions=list(c.restrictions),
        version=c.version,
        updated_by=actor.id,
        updated_at=c.updated_at,
    )


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
        await _check_basis(tx.session, actor, given.basis)
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
        same = await tx.session.execute(
            select(col(ClearanceRow.id)).where(
                col(ClearanceRow.owner) == clearance.release.owner,
                col(ClearanceRow.item) == clearance.item,
                col(ClearanceRow.platform) == clearance.platform,
            )
        )
        existing = same.scalar_one_or_none()
        if existing is not None:
            raise Conflict(
                f"{clearance.release.owner} already recorded the clearance of {clearance.item} for"
                f" {clearance.platform}: change /v1/interchangeability/clearances/{existing}"
            )
        row = ClearanceRow(
            id=clearance.id,
            owner=clearance.release.owner,
            item=clearance.item,
            platform=clearance.platform,
            status=clearance.status.value,
            basis_kind=clearance.basis.kind.value,
            basis_reference=clearance.basis.reference,
            updated_at=now,
            version=clearance.version,
            release_scope=clearance.release.scope.value,
        )
        store_clearance(row, clearance)
        tx.session.add(row)
        _publish(tx, clearance.id, clearance.release, _clearance_event(clearance, actor))
    return clearance


async def update_clearance(
    uow: UnitOfWorkFactory, actor: Actor, clearance_id: str, expected: int | None, given: ClearanceInput
) -> Interchangeability:
    async with uow() as tx:
        row = await clearance_row(tx.session, actor, clearance_id, lock=True)
        current = to_clearance(row)
        check_version("clearance", current.version, expected)
        await _check_basis(tx.session, actor, given.basis)
        changed = current.update(
            actor,
            now=utcnow(),
            status=given.status,
            nations=given.nations,
            basis=given.basis,
            restrictions=given.restrictions,
        )
        store_clearance(row, changed)
        _publish(tx, changed.id, changed.release, _clearance_event(changed, actor))
    return changed


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
    query = select(ClearanceRow).where(visibility.readable_by(col(ClearanceRow.readers), actor.nation))
    if item:
        query = query.where(col(ClearanceRow.item) == item)
    if platform:
        query = query.where(col(ClearanceRow.platform) == platform)
    if after:
        query = query.where(col(ClearanceRow.id) > after)
    async with db.sessions() as session:
        rows = (await session.execute(query.order_by(col(ClearanceRow.id)).limit(limit + 1))).scalars().all()
    found = [c for c in (to_clearance(r) for r in rows[:limit]) if may_read(c.release, actor.nation)]
    return found, (rows[limit - 1].id if len(rows) > limit else None)


# --- the answers ----------------------------------------------------------------------------------------


async def can_fire(
    db: Database, actor: Actor, *, item: str, platform: str, nation: str
) -> InterchangeabilityAnswer:
    """From the clearances, standards and responses the caller may see: a reason never cites a record the
    caller could not read."""
    async with db.sessions() as session:
        clearances = await visible_clearances(
            session, actor, col(ClearanceRow.item) == item, col(ClearanceRow.platform) == platform
        )
        basis_ids = [c.basis.reference for c in clearances if c.basis.kind is BasisKind.STANDARD]
        standards = (
            await visible_standards(session, actor, col(StandardRow.id).in_(basis_ids)) if basis_ids else []
        )
        responses = await responses_to(session, [s.id for s in standards])
    return model.can_fire(nation, item, platform, clearances, standards, responses, on=utcnow().date())
