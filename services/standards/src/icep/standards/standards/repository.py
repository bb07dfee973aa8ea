"""Standard editions in the database: rows <-> `Standard`, the repository a change loads and saves them
through, and the queries that find the ones a caller may read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.contracts.releasability import encode_tokens
from icep.platform import visibility
from icep.platform.db import advisory_key
from icep.platform.domain import Actor, check_version
from icep.platform.errors import NotFound
from icep.platform.outbox import UnitOfWork
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


async def visible_standards(
    session: AsyncSession,
    actor: Actor,
    *,
    ids: Sequence[str] | None = None,
    number: str | None = None,
    status: StandardStatus | None = None,
) -> list[Standard]:
    """The editions the caller may read, among those with one of `ids`, `number` or `status` if given."""
    query = select(StandardRow).where(visibility.readable_by(col(StandardRow.readers), actor.nation))
    if ids is not None:
        query = query.where(col(StandardRow.id).in_(ids))
    if number is not None:
        query = query.where(col(StandardRow.number) == number)
    if status is not None:
        query = query.where(col(StandardRow.status) == status.value)
    rows = (await session.execute(query)).scalars().all()
    found = [to_standard(r) for r in rows]
    return [s for s in found if may_read(s.releasability, actor.nation)]


async def find_standard(session: AsyncSession, actor: Actor, standard_id: str) -> Standard | None:
    """The edition with this id if the caller may read it; None otherwise."""
    row = await session.get(StandardRow, standard_id)
    standard = None if row is None else to_standard(row)
    return standard if standard is not None and may_read(standard.releasability, actor.nation) else None


async def reference_of(session: AsyncSession, standard_id: str) -> str:
    row = await session.get(StandardRow, standard_id)
    return to_standard(row).reference if row is not None else standard_id


class StandardRepository:
    """Standard editions for a change, in one unit of work. It remembers the rows it loaded, so `save`
    updates the row an edition was read from (or adds the row of a new one) and hands the edition to the
    unit of work, which publishes what it recorded with the same commit."""

    def __init__(self, tx: UnitOfWork) -> None:
        self.tx = tx
        self.session = tx.session
        self._rows: dict[str, StandardRow] = {}

    async def get(self, actor: Actor, standard_id: str, *, share: bool = False) -> Standard:
        """The edition, if the caller may read it; `share`: it does not change until the commit (see
        `standard_row`)."""
        return to_standard(await standard_row(self.session, actor, standard_id, lock=False, share=share))

    async def get_for_update(self, actor: Actor, standard_id: str, expected_version: int | None) -> Standard:
        row = await standard_row(self.session, actor, standard_id, lock=True)
        standard = to_standard(row)
        check_version("standard", standard.version, expected_version)
        self._rows[standard.id] = row
        return standard

    async def is_catalogued(self, standard: Standard) -> bool:
        """Whether the catalogue already holds this edition of the standard (kind, number, edition)."""
        same = await self.session.execute(
            select(col(StandardRow.id)).where(
                col(StandardRow.kind) == standard.kind.value,
                col(StandardRow.number) == standard.number,
                col(StandardRow.edition) == standard.edition,
            )
        )
        return same.first() is not None

    async def one_promulgation_at_a_time(self, standard: Standard) -> None:
        """Two promulgations of editions of one standard see each other: one at a time (PostgreSQL;
        SQLite writes one transaction at a time anyway)."""
        if self.session.bind is not None and self.session.bind.dialect.name == "postgresql":
            key = advisory_key(f"icep-standards-{standard.kind.value}-{standard.number}")
            await self.session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})

    async def other_editions_in_force(self, standard: Standard) -> list[Standard]:
        """The promulgated editions of the same standard other than `standard`, oldest first, locked."""
        rows = (
            (
                await self.session.execute(
                    select(StandardRow)
                    .where(
                        col(StandardRow.kind) == standard.kind.value,
                        col(StandardRow.number) == standard.number,
                        col(StandardRow.status) == StandardStatus.PROMULGATED.value,
                        col(StandardRow.id) != standard.id,
                    )
                    .order_by(col(StandardRow.edition))
                    .with_for_update()
                )
            )
            .scalars()
            .all()
        )
        self._rows.update((r.id, r) for r in rows)
        return [to_standard(r) for r in rows]

    async def save(self, standard: Standard) -> None:
        row = self._rows.get(standard.id)
        if row is None:
            # A new edition: its row is created when it was drafted.
            row = new_standard_row(standard, standard.history[0].at)
            self.session.add(row)
            self._rows[standard.id] = row
        else:
            store_standard(row, standard)
        self.tx.collect(standard)
