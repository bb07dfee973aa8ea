"""Interchangeability clearances in the database: rows <-> `Interchangeability`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.contracts.releasability import encode_tokens
from icep.platform import audit, visibility
from icep.platform.domain import Actor
from icep.platform.errors import NotFound
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


async def visible_clearances(session: AsyncSession, actor: Actor, *where: Any) -> list[Interchangeability]:
    query = select(ClearanceRow).where(
        visibility.readable_by(col(ClearanceRow.readers), actor.nation), *where
    )
    found = [to_clearance(r) for r in (await session.execute(query.order_by(col(ClearanceRow.id)))).scalars()]
    return [c for c in found if may_read(c.release, actor.nation)]
