"""Use cases of the catalogue: draft, circulate, promulgate (superseding the older edition in force),
cancel, read and search standard editions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlmodel import col

from icep.contracts import EventPayload, Releasability
from icep.contracts.standards import (
    StandardCancelled,
    StandardCirculated,
    StandardDrafted,
    StandardPromulgated,
    StandardSuperseded,
)
from icep.platform.db import Database, advisory_key
from icep.platform.domain import Actor, check_version
from icep.platform.errors import Conflict
from icep.platform.events import OutgoingEvent, utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWork, UnitOfWorkFactory
from icep.standards.standards import model
from icep.standards.standards.model import ALLIES_RELEASE, Standard, StandardKind, StandardStatus
from icep.standards.standards.repository import (
    new_standard_row,
    standard_row,
    store_standard,
    to_standard,
    visible_standards,
)
from icep.standards.standards.rows import StandardRow

log = logging.getLogger("icep.standards")


def _publish(tx: UnitOfWork, subject: str, release: Releasability, payload: EventPayload) -> None:
    tx.publish(OutgoingEvent(payload=payload, subject=subject, releasability=release))


def _standard_fields(s: Standard) -> dict[str, Any]:
    return {
        "standard_id": s.id,
        "kind": s.kind.value,
        "number": s.number,
        "edition": s.edition,
        "title": s.title,
        "version": s.version,
    }


@dataclass(frozen=True)
class DraftStandard:
    kind: StandardKind
    number: str
    edition: int
    title: str
    domain: str
    covering_publications: tuple[str, ...] = ()
    capability_areas: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()
    supersedes: str | None = None
    releasability: Releasability = ALLIES_RELEASE


async def draft_standard(uow: UnitOfWorkFactory, actor: Actor, draft: DraftStandard) -> Standard:
    now = utcnow()
    async with uow() as tx:
        older = None
        if draft.supersedes is not None:
            older = to_standard(await standard_row(tx.session, actor, draft.supersedes, lock=False))
        standard = Standard.draft(
            id=new_id(),
            actor=actor,
            kind=draft.kind,
            number=draft.number,
            edition=draft.edition,
            title=draft.title,
            domain=draft.domain,
            now=now,
            covering_publications=draft.covering_publications,
            capability_areas=draft.capability_areas,
            levels=draft.levels,
            supersedes=older,
            releasability=draft.releasability,
        )
        same = await tx.session.execute(
            select(col(StandardRow.id)).where(
                col(StandardRow.kind) == standard.kind.value,
                col(StandardRow.number) == standard.number,
                col(StandardRow.edition) == standard.edition,
            )
        )
        if same.first() is not None:
            raise Conflict(f"{standard.reference} is already in the catalogue")
        tx.session.add(new_standard_row(standard, now))
        _publish(
            tx,
            standard.id,
            standard.releasability,
            StandardDrafted(
                **_standard_fields(standard),
                covering_publications=list(standard.covering_publications),
                domain=standard.domain,
                capability_areas=list(standard.capability_areas),
                levels=list(standard.levels),
                supersedes=standard.supersedes,
                drafted_by=actor.id,
                drafted_at=now,
            ),
        )
    log.info("%s drafted by %s", standard.reference, actor.id)
    return standard


async def _change_standard(
    uow: UnitOfWorkFactory,
    actor: Actor,
    standard_id: str,
    expected: int | None,
    change: Callable[[Standard, datetime], Standard],
    announce: Callable[[Standard, datetime], EventPayload],
) -> Standard:
    async with uow() as tx:
        row = await standard_row(tx.session, actor, standard_id, lock=True)
        standard = to_standard(row)
        check_version("standard", standard.version, expected)
        now = utcnow()
        changed = change(standard, now)
        store_standard(row, changed)
        _publish(tx, changed.id, changed.releasability, announce(changed, now))
    log.info("%s is %s after %s", changed.reference, changed.status.value, actor.id)
    return changed


async def circulate_standard(
    uow: UnitOfWorkFactory, actor: Actor, standard_id: str, expected: int | None
) -> Standard:
    return await _change_standard(
        uow,
        actor,
        standard_id,
        expected,
        lambda s, now: s.circulate_for_ratification(actor, now),
        lambda s, now: StandardCirculated(**_standard_fields(s), circulated_by=actor.id, circulated_at=now),
    )


async def promulgate_standard(
    uow: UnitOfWorkFactory, actor: Actor, standard_id: str, expected: int | None
) -> Standard:
    """One edition of a standard is in force: promulgating an edition supersedes every promulgated lower
    edition of the same standard in the same transaction, and is refused while a higher one is in force."""
    async with uow() as tx:
        first = to_standard(await standard_row(tx.session, actor, standard_id, lock=False))
        if tx.session.bind is not None and tx.session.bind.dialect.name == "postgresql":
            # Two promulgations of editions of one standard see each other: one at a time.
            key = advisory_key(f"icep-standards-{first.kind.value}-{first.number}")
            await tx.session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        row = await standard_row(tx.session, actor, standard_id, lock=True)
        standard = to_standard(row)
        check_version("standard", standard.version, expected)
        siblings = (
            (
                await tx.session.execute(
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
        now = utcnow()
        changed = standard.promulgate(actor, now)  # who may, and from which state: before what is in force
        newer = [to_standard(r).reference for r in siblings if r.edition > standard.edition]
        if newer:
            raise Conflict(f"{newer[-1]} is in force: {standard.reference} can no longer be promulgated")
        store_standard(row, changed)
        _publish(
            tx,
            changed.id,
            changed.releasability,
            StandardPromulgated(
                **_standard_fields(changed),
                promulgated_by=actor.id,
                promulgated_at=now,
                promulgated_on=changed.promulgated_on or now.date(),
                supersedes=changed.supersedes,
            ),
        )
        for older_row in siblings:
            replaced = to_standard(older_row).supersede(actor, changed, now)
            store_standard(older_row, replaced)
            _publish(
                tx,
                replaced.id,
                replaced.releasability,
                StandardSuperseded(**_standard_fields(replaced), superseded_by=changed.id, superseded_at=now),
            )
    log.info("%s promulgated by %s; superseded %d older editions", changed.reference, actor.id, len(siblings))
    return changed


async def cancel_standard(
    uow: UnitOfWorkFactory, actor: Actor, standard_id: str, expected: int | None, reason: str
) -> Standard:
    return await _change_standard(
        uow,
        actor,
        standard_id,
        expected,
        lambda s, now: s.cancel(actor, reason, now),
        lambda s, now: StandardCancelled(
            **_standard_fields(s),
            reason=s.cancellation_reason or reason,
            cancelled_by=actor.id,
            cancelled_at=now,
        ),
    )


async def get_standard(db: Database, actor: Actor, standard_id: str) -> Standard:
    async with db.sessions() as session:
        return to_standard(await standard_row(session, actor, standard_id, lock=False))


async def search_standards(
    db: Database,
    actor: Actor,
    *,
    number: str | None,
    text: str | None,
    capability_area: str | None,
    status: StandardStatus | None,
    limit: int,
    after: str | None,
) -> tuple[list[Standard], str | None]:
    """The catalogue search, ordered by kind, number and edition; the cursor is the last standard shown
    (`STANAG|4569|3`), so the next page starts right after it even if that one has changed since."""
    where = []
    if number:
        where.append(col(StandardRow.number) == number.strip())
    if status:
        where.append(col(StandardRow.status) == status.value)
    async with db.sessions() as session:
        candidates = await visible_standards(session, actor, *where)
    found = model.search(candidates, number=number, text=text, capability_area=capability_area, status=status)
    if after:
        kind, _, rest = after.partition("|")
        number, _, edition = rest.rpartition("|")
        last = (kind, number, int(edition) if edition.isdigit() else 0)
        found = [s for s in found if (s.kind.value, s.number, s.edition) > last]
    page = found[:limit]
    more = len(found) > limit
    return page, (f"{page[-1].kind.value}|{page[-1].number}|{page[-1].edition}" if more else None)
