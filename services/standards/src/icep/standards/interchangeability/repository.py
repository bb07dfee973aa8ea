"""Interchangeability clearances in the database: rows <-> `Interchangeability`, the repository a change
loads and saves them through, and the queries of the clearances a caller may read."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.contracts.releasability import encode_tokens
from icep.platform import audit, visibility
from icep.platform.domain import Actor, check_version
from icep.platform.errors import NotFound
from icep.platform.outbox import UnitOfWork
from icep.standards.interchangeability.model import (
    Basis,
    BasisKind,
    Interchangeability,
    InterchangeabilityStatus,
)
from icep.standards.interchangeability.rows import ClearanceRow
from icep.standards.records import history_json, history_of, may_read, readers, release_of


def to_clearance(row: ClearanceRow) -> Interchangeability:
    return Interchangeability(
        id=row.id,
        item=row.item,
        platform=row.platform,
        nations=tuple(row.nations),
        status=InterchangeabilityStatus(row.status),
        basis=Basis(BasisKind(row.basis_kind), row.basis_reference),
        restrictions=tuple(row.restrictions),
        updated_at=row.updated_at,
        version=row.version,
        history=history_of(row.history),
        releasability=release_of(row.owner, row.release_scope, row.release_nations),
    )


def store_clearance(row: ClearanceRow, c: Interchangeability) -> None:
    row.nations = list(c.nations)
    row.status = c.status.value
    row.basis_kind = c.basis.kind.value
    row.basis_reference = c.basis.reference
    row.restrictions = list(c.restrictions)
    row.updated_at = c.updated_at
    row.version = c.version
    row.history = history_json(c.history)
    row.release_scope = c.release.scope.value
    row.release_nations = list(c.release.nations)
    row.readers = encode_tokens(readers(c.release))


async def clearance_row(
    session: AsyncSession, actor: Actor, clearance_id: str, *, lock: bool
) -> ClearanceRow:
    query = select(ClearanceRow).where(col(ClearanceRow.id) == clearance_id)
    row = (await session.execute(query.with_for_update() if lock else query)).scalar_one_or_none()
    release = None if row is None else to_clearance(row).release
    if release is not None:
        audit.subject("clearance", clearance_id, release.owner)
    if release is None or row is None or not may_read(release, actor.nation):
        raise NotFound(f"no interchangeability clearance {clearance_id}")
    return row


async def visible_clearances(
    session: AsyncSession, actor: Actor, *, item: str, platform: str
) -> list[Interchangeability]:
    """Every clearance of `item` for `platform` the caller may read."""
    query = select(ClearanceRow).where(
        visibility.readable_by(col(ClearanceRow.readers), actor.nation),
        col(ClearanceRow.item) == item,
        col(ClearanceRow.platform) == platform,
    )
    found = [to_clearance(r) for r in (await session.execute(query.order_by(col(ClearanceRow.id)))).scalars()]
    return [c for c in found if may_read(c.release, actor.nation)]


async def find_clearances(
    session: AsyncSession,
    actor: Actor,
    *,
    item: str | None,
    platform: str | None,
    limit: int,
    after: str | None,
) -> tuple[list[Interchangeability], str | None]:
    """A page of the clearances the caller may read, by id; the cursor is the last id of the page."""
    query = select(ClearanceRow).where(visibility.readable_by(col(ClearanceRow.readers), actor.nation))
    if item:
        query = query.where(col(ClearanceRow.item) == item)
    if platform:
        query = query.where(col(ClearanceRow.platform) == platform)
    if after:
        query = query.where(col(ClearanceRow.id) > after)
    rows = (await session.execute(query.order_by(col(ClearanceRow.id)).limit(limit + 1))).scalars().all()
    found = [c for c in (to_clearance(r) for r in rows[:limit]) if may_read(c.release, actor.nation)]
    return found, (rows[limit - 1].id if len(rows) > limit else None)


class ClearanceRepository:
    """Clearances for a change, in one unit of work: `save` updates the row a clearance was read from, or
    adds a new clearance's row, and hands it to the unit of work, which publishes what it recorded with
    the same commit."""

    def __init__(self, tx: UnitOfWork) -> None:
        self.tx = tx
        self.session = tx.session
        self._rows: dict[str, ClearanceRow] = {}

    async def get_for_update(
        self, actor: Actor, clearance_id: str, expected_version: int | None
    ) -> Interchangeability:
        row = await clearance_row(self.session, actor, clearance_id, lock=True)
        clearance = to_clearance(row)
        check_version("clearance", clearance.version, expected_version)
        self._rows[clearance.id] = row
        return clearance

    async def recorded_by_owner(self, clearance: Interchangeability) -> str | None:
        """The id of the clearance its owner already recorded for the same item and platform, if any."""
        same = await self.session.execute(
            select(col(ClearanceRow.id)).where(
                col(ClearanceRow.owner) == clearance.release.owner,
                col(ClearanceRow.item) == clearance.item,
                col(ClearanceRow.platform) == clearance.platform,
            )
        )
        return same.scalar_one_or_none()

    async def save(self, clearance: Interchangeability) -> None:
        row = self._rows.get(clearance.id)
        if row is None:
            row = ClearanceRow(
                id=clearance.id,
                owner=clearance.release.owner,
                item=clearance.item,
                platform=clearance.platform,
                status=clearance.status.value,
                basis_kind=clearance.basis.kind.value,
                basis_reference=clearance.basis.reference,
                updated_at=clearance.updated_at,
                version=clearance.version,
                release_scope=clearance.release.scope.value,
            )
            store_clearance(row, clearance)
            self.session.add(row)
            self._rows[clearance.id] = row
        else:
            store_clearance(row, clearance)
        self.tx.collect(clearance)
