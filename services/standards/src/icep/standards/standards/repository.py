"""Standard editions in the database: rows <-> `Standard`, and the queries that find the ones a caller
may read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.contracts.releasability import encode_tokens
from icep.platform import visibility
from icep.platform.domain import Actor
from icep.platform.errors import NotFound
from icep.standards.records import history_json, history_of, may_read, readers, release_of
from icep.standards.standards.model import Standard, StandardKind, StandardStatus
from icep.standards.standards.rows import StandardRow


def to_standard(row: StandardRow) -> Standard:
    return Standard(
        id=row.id,
        kind=StandardKind(row.kind),
        number=row.number,
        edition=row.edition,
        title=row.title,
        covering_publications=tuple(row.covering_publications),
        domain=row.domain,
        capability_areas=tuple(row.capability_areas),
        status=StandardStatus(row.status),
        version=row.version,
        history=history_of(row.history),
        levels=tuple(row.levels),
        supersedes=row.supersedes,
        superseded_by=row.superseded_by,
        promulgated_on=row.promulgated_on,
        cancellation_reason=row.cancellation_reason,
        releasability=release_of("NATO", row.release_scope, row.release_nations),
    )


def store_standard(row: StandardRow, s: Standard) -> None:
    row.status = s.status.value
    row.version = s.version
    row.superseded_by = s.superseded_by
    row.promulgated_on = s.promulgated_on
    row.cancellation_reason = s.cancellation_reason
    row.history = history_json(s.history)


def new_standard_row(s: Standard, now: datetime) -> StandardRow:
    return StandardRow(
        id=s.id,
        kind=s.kind.value,
        number=s.number,
        edition=s.edition,
        title=s.title,
        covering_publications=list(s.covering_publications),
        domain=s.domain,
        capability_areas=list(s.capability_areas),
        levels=list(s.levels),
        status=s.status.value,
        version=s.version,
        supersedes=s.supersedes,
        release_scope=s.releasability.scope.value,
        release_nations=list(s.releasability.nations),
        readers=encode_tokens(readers(s.releasability)),
        history=history_json(s.history),
        created_at=now,
    )


async def standard_row(
    session: AsyncSession, actor: Actor, standard_id: str, *, lock: bool, share: bool = False
) -> StandardRow:
    """The standard, if the caller may read it; locked for an update, or (`share`) so that it does not
    change while something that depends on its state (a national answer) is recorded."""
    query = select(StandardRow).where(col(StandardRow.id) == standard_id)
    if lock or share:
        query = query.with_for_update(read=share and not lock)
    row = (await session.execute(query)).scalar_one_or_none()
    if row is None or not may_read(to_standard(row).releasability, actor.nation):
        raise NotFound(f"no standard {standard_id}")
    return row


async def visible_standards(session: AsyncSession, actor: Actor, *where: Any) -> list[Standard]:
    query = select(StandardRow).where(visibility.readable_by(col(StandardRow.readers), actor.nation), *where)
    rows = (await session.execute(query)).scalars().all()
    found = [to_standard(r) for r in rows]
    return [s for s in found if may_read(s.releasability, actor.nation)]


async def reference_of(session: AsyncSession, standard_id: str) -> str:
    row = await session.get(StandardRow, standard_id)
    return to_standard(row).reference if row is not None else standard_id
