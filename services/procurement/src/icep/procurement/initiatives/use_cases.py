"""Use cases of an initiative's life and participation: each change is one unit of work (the initiative's
row, its events and its OCDS release in one transaction); and the reads of initiatives."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.contracts import Releasability
from icep.contracts.procurement import (
    InitiativeCancelled,
    InitiativeClosed,
    InitiativeCommitted,
    InitiativeDelivering,
    InitiativeJoined,
    InitiativeOpened,
    InitiativeProposed,
    LotFigure,
    ParticipantWithdrawn,
    ParticipationClosed,
    RequiredStandardFigure,
    TenderPublished,
    WithdrawalRefused,
    WithdrawalRequested,
)
from icep.platform import audit, visibility
from icep.platform.db import Database
from icep.platform.domain import Actor, check_version
from icep.platform.events import utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWorkFactory, joined_unit_of_work
from icep.procurement.initiatives.announcements import (
    Announcement,
    demand_events,
    flag_event,
    initiative_fields,
    participant_release,
    participation_fields,
    year_keys,
)
from icep.procurement.initiatives.model import Initiative
from icep.procurement.initiatives.parts import (
    CONTRACTED_STATES,
    InitiativeStatus,
    Item,
    Lot,
    ParticipationStatus,
    RequiredStandard,
)
from icep.procurement.initiatives.repository import initiative_of, initiative_row, store_initiative
from icep.procurement.initiatives.rows import InitiativeRow
from icep.procurement.ocds.repository import record_release
from icep.procurement.read_models.queries import withdrawn_standards
from icep.procurement.records import publish

log = logging.getLogger("icep.procurement")


@dataclass(frozen=True)
class NewInitiative:
    title: str
    item: Item
    capability_area: str
    participation_deadline: date
    description: str = ""
    procuring_entity: str | None = None
    required_standards: tuple[RequiredStandard, ...] = ()
    open_to_partners: tuple[str, ...] = ()
    releasability: Releasability | None = None


async def propose_initiative(uow: UnitOfWorkFactory, actor: Actor, new: NewInitiative) -> Initiative:
    now = utcnow()
    initiative = Initiative.propose(
        id=new_id(),
        actor=actor,
        title=new.title,
        item=new.item,
        capability_area=new.capability_area,
        participation_deadline=new.participation_deadline,
        now=now,
        procuring_entity=new.procuring_entity,
        description=new.description,
        required_standards=new.required_standards,
        open_to_partners=new.open_to_partners,
        releasability=new.releasability,
    )
    async with uow() as tx:
        row = InitiativeRow(
            id=initiative.id,
            ocid=initiative.ocid,
            lead_nation=initiative.lead_nation,
            title=initiative.title,
            product=initiative.item.product,
            capability_area=initiative.capability_area,
            status=initiative.status.value,
            version=initiative.version,
            created_at=now,
            updated_at=now,
        )
        store_initiative(row, initiative, now)
        tx.session.add(row)
        publish(
            tx,
            initiative.id,
            initiative.releasability,
            InitiativeProposed(
                **initiative_fields(initiative),
                title=initiative.title,
                capability_area=initiative.capability_area,
                unit=initiative.item.unit,
                procuring_entity=initiative.procuring_entity,
                required_standards=[
                    RequiredStandardFigure(number=s.number, edition=s.edition)
                    for s in initiative.required_standards
                ],
                participation_deadline=initiative.participation_deadline,
                open_to_partners=list(initiative.open_to_partners),
                proposed_by=actor.id,
                proposed_at=now,
            ),
        )
        await record_release(tx.session, initiative, "proposed", now)
        # A required edition already superseded or cancelled is flagged at once, as a later one would be.
        withdrawn = await withdrawn_standards(tx.session, initiative.required_standards)
        for standard, standard_status in withdrawn:
            flagged = initiative.flag(standard, standard_status, now)
            if flagged is None:
                continue
            initiative = flagged
            store_initiative(row, initiative, now)
            publish(tx, initiative.id, initiative.releasability, flag_event(initiative, now))
            await record_release(tx.session, initiative, "flagged", now)
    return initiative


Step = Callable[[Initiative, datetime], Initiative]


Announce = Callable[[Initiative, datetime], Sequence[Announcement]]
#: More to write in the change's transaction, after the initiative and its OCDS release.
After = Callable[[AsyncSession, Initiative, datetime], Awaitable[None]]


async def change_initiative(
    uow: UnitOfWorkFactory,
    actor: Actor,
    initiative_id: str,
    expected: int | None,
    step: Callable[[Initiative, datetime, AsyncSession], Any],
    announce: Announce,
    action: str | Callable[[Initiative], str],
    after: After | None = None,
) -> Initiative:
    """Load (locked), check the version, apply the domain step, store, announce and record the OCDS release.
    `step` may be async (it gets the session, to read what the rule needs) and returns the changed one;
    `after(session, changed, now)` writes what else belongs to the change, in the same transaction."""
    async with uow() as tx:
        row = await initiative_row(tx.session, actor, initiative_id, lock=True)
        current = initiative_of(row)
        check_version("initiative", current.version, expected)
        now = utcnow()
        result = step(current, now, tx.session)
        changed: Initiative = await result if inspect.isawaitable(result) else result
        store_initiative(row, changed, now)
        for announcement in announce(changed, now):
            payload, release = (
                announcement if isinstance(announcement, tuple) else (announcement, changed.releasability)
            )
            publish(tx, changed.id, release, payload)
        await record_release(tx.session, changed, action if isinstance(action, str) else action(changed), now)
        if after is not None:
            await after(tx.session, changed, now)
    log.info(
        "initiative %s is %s (version %d) after %s",
        changed.id,
        changed.status.value,
        changed.version,
        actor.id,
    )
    return changed


def sync_step(fn: Step) -> Callable[[Initiative, datetime, AsyncSession], Initiative]:
    return lambda i, now, _session: fn(i, now)


async def open_initiative(
    uow: UnitOfWorkFactory, actor: Actor, initiative_id: str, expected: int | None
) -> Initiative:
    return await change_initiative(
        uow,
        actor,
        initiative_id,
        expected,
        sync_step(lambda i, now: i.open(actor, now)),
        lambda i, now: [InitiativeOpened(**initiative_fields(i), opened_by=actor.id, opened_at=now)],
        "open",
    )


async def join_initiative(
    uow: UnitOfWorkFactory,
    actor: Actor,
    initiative_id: str,
    expected: int | None,
    indicative: Mapping[int, int],
) -> Initiative:
    def announce(i: Initiative, now: datetime) -> list[Announcement]:
        p = i.participation(actor.nation)
        assert p is not None
        joined = InitiativeJoined(
            **participation_fields(i, actor.nation, actor, now), indicative=year_keys(p.indicative)
        )
        return [(joined, participant_release(i, actor.nation)), *demand_events(i)]

    return await change_initiative(
        uow,
        actor,
        initiative_id,
        expected,
        sync_step(lambda i, now: i.join(actor, indicative, now)),
        announce,
        "join",
    )


async def commit_to_initiative(
    uow: UnitOfWorkFactory,
    actor: Actor,
    initiative_id: str,
    expected: int | None,
    firm: Mapping[int, int],
    funded: Mapping[int, int],
) -> Initiative:
    def announce(i: Initiative, now: datetime) -> list[Announcement]:
        p = i.participation(actor.nation)
        assert p is not None
        committed = InitiativeCommitted(
            **participation_fields(i, actor.nation, actor, now),
            firm=year_keys(p.firm),
            funded=year_keys(p.funded),
        )
        return [(committed, participant_release(i, actor.nation)), *demand_events(i)]

    return await change_initiative(
        uow,
        actor,
        initiative_id,
        expected,
        sync_step(lambda i, now: i.commit(actor, firm, funded, now)),
        announce,
        "commit",
    )


async def withdraw_from_initiative(
    uow: UnitOfWorkFactory, actor: Actor, initiative_id: str, expected: int | None, reason: str
) -> Initiative:
    """Withdrawn at once (an event and the new demand), or a request the lead nation decides on."""

    def step(i: Initiative, now: datetime) -> Initiative:
        changed, _done = i.withdraw(actor, reason, now)
        return changed

    def announce(i: Initiative, now: datetime) -> list[Announcement]:
        p = i.participation(actor.nation)
        assert p is not None
        fields = participation_fields(i, actor.nation, actor, now)
        if p.status is not ParticipationStatus.WITHDRAWN:
            # Requested: the demand still counts it until the lead nation decides.
            requested = WithdrawalRequested(**fields, reason=p.withdrawal_reason or reason)
            return [(requested, participant_release(i, actor.nation))]
        amendment = bool(p.firm)
        withdrawn = ParticipantWithdrawn(
            **fields,
            amendment=amendment,
            approved_by=actor.id if amendment else None,
            reason=p.withdrawal_reason or reason,
        )
        return [(withdrawn, participant_release(i, actor.nation)), *demand_events(i)]

    return await change_initiative(
        uow, actor, initiative_id, expected, sync_step(step), announce, lambda i: i.history[-1].action
    )


async def decide_withdrawal(
    uow: UnitOfWorkFactory, actor: Actor, initiative_id: str, expected: int | None, nation: str, approve: bool
) -> Initiative:
    reason_given = ""

    def step(i: Initiative, now: datetime) -> Initiative:
        nonlocal reason_given
        asked = i.participation(nation)
        reason_given = (asked.withdrawal_reason if asked else None) or ""
        return i.decide_withdrawal(actor, nation, approve, now)

    def announce(i: Initiative, now: datetime) -> list[Announcement]:
        p = i.participation(nation)
        assert p is not None
        fields = participation_fields(i, nation, actor, now)
        if not approve:
            return [(WithdrawalRefused(**fields, reason=reason_given), participant_release(i, nation))]
        withdrawn = ParticipantWithdrawn(
            **fields, amendment=True, approved_by=actor.id, reason=p.withdrawal_reason or reason_given
        )
        return [(withdrawn, participant_release(i, nation)), *demand_events(i)]

    return await change_initiative(
        uow,
        actor,
        initiative_id,
        expected,
        sync_step(step),
        announce,
        "approve_withdrawal" if approve else "refuse_withdrawal",
    )


async def close_participation(
    uow: UnitOfWorkFactory, actor: Actor, initiative_id: str, expected: int | None
) -> Initiative:
    return await change_initiative(
        uow,
        actor,
        initiative_id,
        expected,
        sync_step(lambda i, now: i.close_participation(actor, now)),
        lambda i, now: [ParticipationClosed(**initiative_fields(i), closed_by=actor.id, closed_at=now)],
        "close_participation",
    )


async def cancel_initiative(
    uow: UnitOfWorkFactory, actor: Actor, initiative_id: str, expected: int | None, reason: str
) -> Initiative:
    return await change_initiative(
        uow,
        actor,
        initiative_id,
        expected,
        sync_step(lambda i, now: i.cancel(actor, reason, now)),
        lambda i, now: [
            InitiativeCancelled(
                **initiative_fields(i),
                reason=i.cancellation_reason or reason,
                cancelled_by=actor.id,
                cancelled_at=now,
            ),
            *demand_events(i, published=True),  # its demand leaves the picture
        ],
        "cancel",
    )


async def publish_tender(
    uow: UnitOfWorkFactory,
    actor: Actor,
    initiative_id: str,
    expected: int | None,
    lots: Sequence[Lot],
    period_end: date,
) -> Initiative:
    def announce(i: Initiative, now: datetime) -> list[Announcement]:
        assert i.tender is not None
        return [
            # The demand is settled: its aggregate is published to every reader (disclosure control).
            *demand_events(i, published=True)[1:],
            TenderPublished(
                **initiative_fields(i),
                lots=[
                    LotFigure(
                        lot_id=x.id,
                        title=x.title,
                        quantity=x.quantity,
                        estimated_value=x.estimated_value,
                        currency=x.currency,
                    )
                    for x in i.tender.lots
                ],
                tender_period_end=i.tender.period_end,
                published_by=actor.id,
                published_at=now,
            ),
        ]

    return await change_initiative(
        uow,
        actor,
        initiative_id,
        expected,
        sync_step(lambda i, now: i.publish_tender(actor, lots, period_end, now)),
        announce,
        "publish_tender",
    )


async def start_delivery(
    uow: UnitOfWorkFactory, actor: Actor, initiative_id: str, expected: int | None
) -> Initiative:
    return await change_initiative(
        uow,
        actor,
        initiative_id,
        expected,
        sync_step(lambda i, now: i.start_delivery(actor, now)),
        lambda i, now: [InitiativeDelivering(**initiative_fields(i), by=actor.id, at=now)],
        "start_delivery",
    )


async def close_initiative(
    uow: UnitOfWorkFactory, actor: Actor, initiative_id: str, expected: int | None
) -> Initiative:
    return await change_initiative(
        uow,
        actor,
        initiative_id,
        expected,
        sync_step(lambda i, now: i.close(actor, now)),
        lambda i, now: [InitiativeClosed(**initiative_fields(i), by=actor.id, at=now)],
        "close",
    )


async def get_initiative(db: Database, actor: Actor, initiative_id: str) -> Initiative:
    async with db.sessions() as session:
        initiative = initiative_of(await initiative_row(session, actor, initiative_id, lock=False))
    audit.read("initiative", initiative.id, initiative.lead_nation)
    return initiative


async def list_initiatives(
    db: Database,
    actor: Actor,
    *,
    product: str | None,
    status: InitiativeStatus | None,
    lead_nation: str | None,
    limit: int,
    after: str | None,
) -> tuple[list[Initiative], str | None]:
    query = select(InitiativeRow).where(visibility.readable_by(col(InitiativeRow.readers), actor.nation))
    if product:
        query = query.where(col(InitiativeRow.product) == product)
    if status:
        query = query.where(col(InitiativeRow.status) == status.value)
    if lead_nation:
        query = query.where(col(InitiativeRow.lead_nation) == lead_nation)
    if after:
        query = query.where(col(InitiativeRow.id) > after)
    async with db.sessions() as session:
        rows = (await session.execute(query.order_by(col(InitiativeRow.id)).limit(limit + 1))).scalars().all()
    found = [i for i in (initiative_of(r) for r in rows[:limit]) if i.visible_to(actor.nation)]
    return found, (rows[limit - 1].id if len(rows) > limit else None)


async def flag_initiatives(
    session: AsyncSession, number: str, edition: int, standard_status: str, now: datetime
) -> int:
    """Flag every initiative not yet contracted that requires `number` Ed. `edition`, now superseded or
    cancelled: in the caller's transaction (a consumer's), with its OCDS release and InitiativeFlagged.
    Returns how many were flagged (an initiative already flagged for it is not flagged again)."""
    standard = RequiredStandard(number, edition)
    done = [s.value for s in (*CONTRACTED_STATES, InitiativeStatus.CANCELLED)]
    candidates = [
        row_id
        for row_id, document in (
            await session.execute(
                select(col(InitiativeRow.id), col(InitiativeRow.document)).where(
                    col(InitiativeRow.status).not_in(done)
                )
            )
        ).all()
        if any(
            r.get("number") == number and r.get("edition") == edition
            for r in document.get("required_standards", [])
        )
    ]
    if not candidates:
        return 0
    rows = (
        (
            await session.execute(
                select(InitiativeRow)
                .where(col(InitiativeRow.id).in_(candidates))
                .order_by(col(InitiativeRow.id))
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        )
        .scalars()
        .all()
    )
    tx = joined_unit_of_work(session)
    flagged = 0
    for row in rows:
        changed = initiative_of(row).flag(standard, standard_status, now)
        if changed is None:
            continue
        store_initiative(row, changed, now)
        publish(tx, changed.id, changed.releasability, flag_event(changed, now))
        await record_release(session, changed, "flagged", now)
        flagged += 1
    await tx.flush()
    if flagged:
        log.info("%d initiatives flagged: %s is %s", flagged, standard.label, standard_status)
    return flagged
