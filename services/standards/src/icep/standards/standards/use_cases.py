"""Use cases of the catalogue: draft, circulate, promulgate (superseding the older edition in force),
cancel, read and search standard editions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from icep.contracts import Releasability
from icep.platform.db import Database
from icep.platform.domain import Actor
from icep.platform.errors import Conflict
from icep.platform.events import utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWorkFactory
from icep.standards.standards import model
from icep.standards.standards.model import ALLIES_RELEASE, Standard, StandardKind, StandardStatus
from icep.standards.standards.repository import (
    StandardRepository,
    standard_row,
    to_standard,
    visible_standards,
)

log = logging.getLogger("icep.standards")


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
        standards = StandardRepository(tx)
        older = None if draft.supersedes is None else await standards.get(actor, draft.supersedes)
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
        if await standards.is_catalogued(standard):
            raise Conflict(f"{standard.reference} is already in the catalogue")
        await standards.save(standard)
    log.info("%s drafted by %s", standard.reference, actor.id)
    return standard


async def circulate_standard(
    uow: UnitOfWorkFactory, actor: Actor, standard_id: str, expected: int | None
) -> Standard:
    async with uow() as tx:
        standards = StandardRepository(tx)
        standard = await standards.get_for_update(actor, standard_id, expected)
        standard = standard.circulate_for_ratification(actor, utcnow())
        await standards.save(standard)
    log.info("%s is %s after %s", standard.reference, standard.status.value, actor.id)
    return standard


async def promulgate_standard(
    uow: UnitOfWorkFactory, actor: Actor, standard_id: str, expected: int | None
) -> Standard:
    """One edition of a standard is in force: promulgating an edition supersedes every promulgated lower
    edition of the same standard in the same transaction, and is refused while a higher one is in force."""
    async with uow() as tx:
        standards = StandardRepository(tx)
        await standards.one_promulgation_at_a_time(await standards.get(actor, standard_id))
        standard = await standards.get_for_update(actor, standard_id, expected)
        in_force = await standards.other_editions_in_force(standard)
        now = utcnow()
        standard = standard.promulgate(actor, now)  # who may, and from which state: before what is in force
        newer = [s.reference for s in in_force if s.edition > standard.edition]
        if newer:
            raise Conflict(f"{newer[-1]} is in force: {standard.reference} can no longer be promulgated")
        await standards.save(standard)
        for older in in_force:
            await standards.save(older.supersede(actor, standard, now))
    log.info(
        "%s promulgated by %s; superseded %d older editions", standard.reference, actor.id, len(in_force)
    )
    return standard


async def cancel_standard(
    uow: UnitOfWorkFactory, actor: Actor, standard_id: str, expected: int | None, reason: str
) -> Standard:
    async with uow() as tx:
        standards = StandardRepository(tx)
        standard = await standards.get_for_update(actor, standard_id, expected)
        standard = standard.cancel(actor, reason, utcnow())
        await standards.save(standard)
    log.info("%s is %s after %s", standard.reference, standard.status.value, actor.id)
    return standard


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
    async with db.sessions() as session:
        candidates = await visible_standards(
            session, actor, number=number.strip() if number else None, status=status or None
        )
    found = model.search(candidates, number=number, text=text, capability_area=capability_area, status=status)
    if after:
        kind, _, rest = after.partition("|")
        number, _, edition = rest.rpartition("|")
        last = (kind, number, int(edition) if edition.isdigit() else 0)
        found = [s for s in found if (s.kind.value, s.number, s.edition) > last]
    page = found[:limit]
    more = len(found) > limit
    return page, (f"{page[-1].kind.value}|{page[-1].number}|{page[-1].edition}" if more else None)
