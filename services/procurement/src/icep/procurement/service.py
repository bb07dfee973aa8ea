"""Use cases of the procurement service: each change is one unit of work (rows, events and the OCDS release
in one transaction).

Reads apply one visibility rule (the record's reader tokens meet the caller's) in SQL and again in Python,
so a list, an aggregate or an export never shows what the caller may not read.
"""

from __future__ import annotations

import inspect
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.contracts import EventPayload, Releasability, ReleasabilityScope
from icep.contracts.nations import NATO
from icep.contracts.procurement import (
    AwardFigure,
    AwardMade,
    BidRecorded,
    CallOffPlaced,
    ContractSigned,
    DemandAggregated,
    DemandSignalPublished,
    InitiativeCancelled,
    InitiativeClosed,
    InitiativeCommitted,
    InitiativeDelivering,
    InitiativeFlagged,
    InitiativeJoined,
    InitiativeOpened,
    InitiativeProposed,
    LotFigure,
    MilestoneFigure,
    MilestoneMet,
    MilestoneMissed,
    ParticipantWithdrawn,
    ParticipationClosed,
    RequiredStandardFigure,
    SupplierBlocked,
    SupplierCleared,
    SupplierFlagged,
    SupplierRegistered,
    SupplierScreened,
    TenderPublished,
    WithdrawalRefused,
    WithdrawalRequested,
)
from icep.contracts.releasability import nation_tokens
from icep.platform import audit, visibility
from icep.platform.db import Database
from icep.platform.domain import invalid
from icep.platform.errors import Conflict, NotFound, PreconditionFailed
from icep.platform.events import OutgoingEvent, utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWork, UnitOfWorkFactory, joined_unit_of_work
from icep.procurement import domain, ocds
from icep.procurement.domain import (
    Actor,
    AwardInput,
    Bid,
    CallOff,
    Contract,
    Demand,
    DemandSignal,
    Firmness,
    Initiative,
    InitiativeStatus,
    Item,
    KnownConformance,
    KnownStandard,
    Lot,
    Milestone,
    MilestoneStatus,
    Owner,
    ProductDemand,
    RequiredStandard,
    Scale,
    Screening,
    ScreeningLists,
    Supplier,
    SupplierStanding,
    YearBalance,
)
from icep.procurement.models import (
    CapacityRow,
    DemandSignalRow,
    InitiativeRow,
    KnownConformanceRow,
    KnownStandardRow,
    OcdsReleaseRow,
    ShortfallRow,
    SupplierRow,
)
from icep.procurement.settings import current_lists, min_aggregate_participants

log = logging.getLogger("icep.procurement")

#: A standard edition in one of these states flags the initiatives (not yet contracted) requiring it.
WITHDRAWN_STANDARD_STATUSES = ("superseded", "cancelled")

T = TypeVar("T")

# --- storage codec: each aggregate is kept whole as JSON, through pydantic's dataclass support -----------

INITIATIVE = TypeAdapter(Initiative)
SUPPLIER = TypeAdapter(Supplier)
SIGNAL = TypeAdapter(DemandSignal)


def to_json(adapter: TypeAdapter[T], value: T) -> dict[str, Any]:
    data: dict[str, Any] = adapter.dump_python(value, mode="json")
    return data


def readers(r: Releasability) -> str:
    """The stored readers of an initiative, supplier or demand signal: who may read it, and who its
    events are marked for (`publish` with the same releasability), by `icep.platform.visibility`."""
    return visibility.encode(domain.readers(r))


def readable_by(column: Any, actor: Actor) -> Any:
    """SQL: the reader tokens in `column` share one with the caller's."""
    return visibility.readable_by(column, actor.nation)


def check_version(kind: str, version: int, expected: int | None) -> None:
    if expected is not None and expected != version:
        raise PreconditionFailed(
            f"the {kind} is at version {version}, not {expected}", current_version=version
        )


def publish(tx: UnitOfWork, subject: str, release: Releasability, payload: EventPayload) -> None:
    tx.publish(OutgoingEvent(payload=payload, subject=subject, releasability=release))


# --- initiatives: storage -------------------------------------------------------------------------------


def _initiative(row: InitiativeRow) -> Initiative:
    return INITIATIVE.validate_python(row.document)


def _store_initiative(row: InitiativeRow, i: Initiative, now: datetime) -> None:
    row.status = i.status.value
    row.version = i.version
    row.readers = readers(i.releasability)
    row.document = to_json(INITIATIVE, i)
    row.updated_at = now


async def initiative_row(
    session: AsyncSession, actor: Actor, initiative_id: str, *, lock: bool
) -> InitiativeRow:
    query = select(InitiativeRow).where(col(InitiativeRow.id) == initiative_id)
    row = (await session.execute(query.with_for_update() if lock else query)).scalar_one_or_none()
    if row is not None:
        audit.subject("initiative", row.id, row.lead_nation)  # a refused attempt is the lead's to see too
    if row is None or not _initiative(row).visible_to(actor.nation):
        raise NotFound(f"no initiative {initiative_id}")
    return row


async def _record_release(session: AsyncSession, i: Initiative, action: str, now: datetime) -> None:
    """The OCDS release of this change: immutable, numbered within its ocid."""
    position = (
        await session.execute(select(func.count()).where(col(OcdsReleaseRow.ocid) == i.ocid))
    ).scalar_one()
    release_id = f"{i.ocid}-{position + 1:04d}"
    tags = ocds.tags_for(action, i)
    suppliers = await _supplier_parties(session, i)
    body = ocds.release(
        i,
        tags,
        release_id=release_id,
        date=now,
        suppliers=suppliers,
        min_contributors=min_aggregate_participants(),
    )
    session.add(
        OcdsReleaseRow(id=release_id, ocid=i.ocid, position=position + 1, date=now, tags=tags, release=body)
    )


async def _supplier_parties(session: AsyncSession, i: Initiative) -> dict[str, tuple[str, str]]:
    ids = {b.supplier_id for b in i.bids} | {a.supplier_id for a in i.awards}
    if not ids:
        return {}
    rows = (await session.execute(select(SupplierRow).where(col(SupplierRow.id).in_(ids)))).scalars()
    out = {}
    for r in rows:
        s = SUPPLIER.validate_python(r.document)
        out[s.id] = (s.name, s.scale.value)
    return out


def _fields(i: Initiative) -> dict[str, Any]:
    return {
        "initiative_id": i.id,
        "ocid": i.ocid,
        "lead_nation": i.lead_nation,
        "product": i.item.product,
        "status": i.status.value,
        "version": i.version,
    }


def _years(q: Mapping[int, int]) -> dict[str, int]:
    return {str(y): v for y, v in sorted(q.items())}


def _demand_figures(
    i: Initiative, d: Demand, release: Releasability, *, published: bool = False
) -> tuple[DemandAggregated, Releasability]:
    """The demand `d` of the initiative as an event released as `release`; a cancelled one's demand leaves
    the picture: zeros for every year it had."""
    if i.status is InitiativeStatus.CANCELLED:
        gone = dict.fromkeys(sorted(set(d.indicative) | set(d.firm) | set(d.funded)), 0)
        d = Demand(0, gone, gone, gone)
    event = DemandAggregated(
        **_fields(i),
        unit=i.item.unit,
        participants=d.participants,
        indicative=_years(d.indicative),
        firm=_years(d.firm),
        funded=_years(d.funded),
        disclosure="published" if published else "full",
    )
    return event, release


def demand_release(i: Initiative) -> Releasability:
    """Who receives the aggregate as it stands: the lead nation and NATO staff (when the initiative is
    released to NATO staff), never the wider audience (disclosure control, `domain.Disclosure`)."""
    return lead_and(i, *((NATO,) if i.visible_to(NATO) else ()))


def _demand_events(i: Initiative, *, published: bool = False) -> list[Announcement]:
    """The aggregate as it stands, to the lead nation and NATO staff; and, when `published` (the demand is
    settled: the tender is published, or a published demand leaves the picture at cancellation), the
    aggregate as published (`Initiative.demand_for(None, k)`) to every reader of the initiative."""
    out: list[Announcement] = [_demand_figures(i, i.demand, demand_release(i))]
    if published and i.demand_settled:
        shown = i.demand_for(None, min_aggregate_participants()).demand
        out.append(_demand_figures(i, shown, i.releasability, published=True))
    return out


# --- initiatives: commands ------------------------------------------------------------------------------


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
        _store_initiative(row, initiative, now)
        tx.session.add(row)
        publish(
            tx,
            initiative.id,
            initiative.releasability,
            InitiativeProposed(
                **_fields(initiative),
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
        await _record_release(tx.session, initiative, "proposed", now)
        # A required edition already superseded or cancelled is flagged at once, as a later one would be.
        withdrawn = await _withdrawn_standards(tx.session, initiative.required_standards)
        for standard, standard_status in withdrawn:
            flagged = initiative.flag(standard, standard_status, now)
            if flagged is None:
                continue
            initiative = flagged
            _store_initiative(row, initiative, now)
            publish(tx, initiative.id, initiative.releasability, _flag_event(initiative, now))
            await _record_release(tx.session, initiative, "flagged", now)
    return initiative


async def _withdrawn_standards(
    session: AsyncSession, required: Sequence[RequiredStandard]
) -> list[tuple[RequiredStandard, str]]:
    """The required editions the standards read model knows as superseded or cancelled, with that status."""
    if not required:
        return []
    numbers = {s.number for s in required}
    known = (
        await session.execute(
            select(KnownStandardRow).where(
                col(KnownStandardRow.number).in_(numbers),
                col(KnownStandardRow.status).in_(WITHDRAWN_STANDARD_STATUSES),
            )
        )
    ).scalars()
    status = {(r.number, r.edition): r.status for r in known}
    return [(s, status[(s.number, s.edition)]) for s in required if (s.number, s.edition) in status]


def _flag_event(i: Initiative, now: datetime) -> InitiativeFlagged:
    flag = i.flags[-1]
    return InitiativeFlagged(
        **_fields(i),
        standard_number=flag.standard.number,
        standard_edition=flag.standard.edition,
        standard_status=flag.standard_status,
        reason=flag.reason,
        flagged_at=now,
    )


Step = Callable[[Initiative, datetime], Initiative]
#: An event, published under the initiative's releasability, or under its own (one nation's figures).
Announcement = EventPayload | tuple[EventPayload, Releasability]
Announce = Callable[[Initiative, datetime], Sequence[Announcement]]
#: More to write in the change's transaction, after the initiative and its OCDS release.
After = Callable[[AsyncSession, Initiative, datetime], Awaitable[None]]


def lead_and(i: Initiative, *nations: str) -> Releasability:
    """Only the lead nation and `nations` (an event about one nation's quantities or the bids)."""
    others = tuple(n for n in dict.fromkeys(nations) if n != i.lead_nation)
    if not others:
        return Releasability(owner=i.lead_nation, scope=ReleasabilityScope.NATIONAL)
    return Releasability(owner=i.lead_nation, scope=ReleasabilityScope.NATIONS, nations=others)


def participant_release(i: Initiative, nation: str) -> Releasability:
    """Who reads one nation's participation (its quantities, its reason to withdraw), in the initiative's
    answer and in the events about it: the lead nation, that nation and NATO staff, when the initiative is
    released to NATO staff (an event never reaches who may not read the initiative)."""
    return lead_and(i, nation, *((NATO,) if i.visible_to(NATO) else ()))


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
        current = _initiative(row)
        check_version("initiative", current.version, expected)
        now = utcnow()
        result = step(current, now, tx.session)
        changed: Initiative = await result if inspect.isawaitable(result) else result
        _store_initiative(row, changed, now)
        for announcement in announce(changed, now):
            payload, release = (
                announcement if isinstance(announcement, tuple) else (announcement, changed.releasability)
            )
            publish(tx, changed.id, release, payload)
        await _record_release(
            tx.session, changed, action if isinstance(action, str) else action(changed), now
        )
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


def _sync(fn: Step) -> Callable[[Initiative, datetime, AsyncSession], Initiative]:
    return lambda i, now, _session: fn(i, now)


async def open_initiative(
    uow: UnitOfWorkFactory, actor: Actor, initiative_id: str, expected: int | None
) -> Initiative:
    return await change_initiative(
        uow,
        actor,
        initiative_id,
        expected,
        _sync(lambda i, now: i.open(actor, now)),
        lambda i, now: [InitiativeOpened(**_fields(i), opened_by=actor.id, opened_at=now)],
        "open",
    )


def _participation_fields(i: Initiative, nation: str, actor: Actor, now: datetime) -> dict[str, Any]:
    p = i.participation(nation)
    return {
        **_fields(i),
        "nation": nation,
        "participation_status": p.status.value if p else "absent",
        "by": actor.id,
        "at": now,
    }


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
            **_participation_fields(i, actor.nation, actor, now), indicative=_years(p.indicative)
        )
        return [(joined, participant_release(i, actor.nation)), *_demand_events(i)]

    return await change_initiative(
        uow,
        actor,
        initiative_id,
        expected,
        _sync(lambda i, now: i.join(actor, indicative, now)),
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
            **_participation_fields(i, actor.nation, actor, now), firm=_years(p.firm), funded=_years(p.funded)
        )
        return [(committed, participant_release(i, actor.nation)), *_demand_events(i)]

    return await change_initiative(
        uow,
        actor,
        initiative_id,
        expected,
        _sync(lambda i, now: i.commit(actor, firm, funded, now)),
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
        fields = _participation_fields(i, actor.nation, actor, now)
        if p.status is not domain.ParticipationStatus.WITHDRAWN:
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
        return [(withdrawn, participant_release(i, actor.nation)), *_demand_events(i)]

    return await change_initiative(
        uow, actor, initiative_id, expected, _sync(step), announce, lambda i: i.history[-1].action
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
        fields = _participation_fields(i, nation, actor, now)
        if not approve:
            return [(WithdrawalRefused(**fields, reason=reason_given), participant_release(i, nation))]
        withdrawn = ParticipantWithdrawn(
            **fields, amendment=True, approved_by=actor.id, reason=p.withdrawal_reason or reason_given
        )
        return [(withdrawn, participant_release(i, nation)), *_demand_events(i)]

    return await change_initiative(
        uow,
        actor,
        initiative_id,
        expected,
        _sync(step),
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
        _sync(lambda i, now: i.close_participation(actor, now)),
        lambda i, now: [ParticipationClosed(**_fields(i), closed_by=actor.id, closed_at=now)],
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
        _sync(lambda i, now: i.cancel(actor, reason, now)),
        lambda i, now: [
            InitiativeCancelled(
                **_fields(i), reason=i.cancellation_reason or reason, cancelled_by=actor.id, cancelled_at=now
            ),
            *_demand_events(i, published=True),  # its demand leaves the picture
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
            *_demand_events(i, published=True)[1:],
            TenderPublished(
                **_fields(i),
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
        _sync(lambda i, now: i.publish_tender(actor, lots, period_end, now)),
        announce,
        "publish_tender",
    )


async def _supplier(session: AsyncSession, actor: Actor, supplier_id: str) -> Supplier:
    row = await session.get(SupplierRow, supplier_id)
    if row is None:
        raise invalid("body.supplier_id", f"no supplier {supplier_id}")
    supplier = SUPPLIER.validate_python(row.document)
    if not domain.may_read(supplier.releasability, actor.nation):
        raise invalid("body.supplier_id", f"no supplier {supplier_id}")
    return supplier


async def record_bid(
    uow: UnitOfWorkFactory,
    actor: Actor,
    initiative_id: str,
    expected: int | None,
    lot_id: str,
    supplier_id: str,
    quantity: int,
    value: float,
    currency: str,
) -> Initiative:
    bid_id = new_id()

    async def step(i: Initiative, now: datetime, session: AsyncSession) -> Initiative:
        supplier = await _supplier(session, actor, supplier_id)
        bid = Bid(bid_id, lot_id, supplier_id, quantity, value, currency, now)
        return i.record_bid(actor, bid, supplier, now)

    def announce(i: Initiative, now: datetime) -> list[Announcement]:
        b = next(x for x in i.bids if x.id == bid_id)
        recorded = BidRecorded(
            **_fields(i),
            bid_id=b.id,
            lot_id=b.lot_id,
            supplier_id=b.supplier_id,
            quantity=b.quantity,
            value=b.value,
            currency=b.currency,
            recorded_by=actor.id,
            recorded_at=now,
        )
        return [(recorded, lead_and(i))]  # bids are the lead nation's alone

    return await change_initiative(uow, actor, initiative_id, expected, step, announce, "record_bid")


async def standing_of(
    session: AsyncSession, supplier: Supplier, on: date, audience: Releasability
) -> SupplierStanding:
    """The supplier's screening and, per product, the standard editions that product holds verified
    conformance with, from the local read model of the standards service's events: only the claims that
    name the product and that every reader of `audience` (the initiative) may read count."""
    if not supplier.products:
        return SupplierStanding(supplier, {})
    claims = [
        KnownConformance(
            r.claim_id,
            r.product_code,
            r.standard_id,
            r.status,
            r.expires_on,
            r.manufacturer,
            Releasability.from_marking(r.nation, r.releasable_to) if r.nation and r.releasable_to else None,
        )
        for r in (
            await session.execute(
                select(KnownConformanceRow).where(
                    col(KnownConformanceRow.product_code).in_(supplier.products)
                )
            )
        ).scalars()
    ]
    ids = {c.standard_id for c in claims}
    standards = (
        {
            r.id: KnownStandard(r.id, r.number, r.edition, r.status)
            for r in (
                await session.execute(select(KnownStandardRow).where(col(KnownStandardRow.id).in_(ids)))
            ).scalars()
        }
        if ids
        else {}
    )
    return domain.supplier_standing(supplier, claims, standards, on, audience)


async def suppliers_for_award(
    session: AsyncSession, actor: Actor, supplier_ids: Iterable[str]
) -> dict[str, Supplier]:
    """The named suppliers that the caller may read, by id. Their rows are read FOR SHARE in the award's
    transaction, in the order of their ids (so transactions take these locks in one order): a block or
    a new screening committed meanwhile is seen, or waits until the award is made; never missed."""
    query = (
        select(SupplierRow)
        .where(col(SupplierRow.id).in_(sorted(set(supplier_ids))))
        .order_by(col(SupplierRow.id))
        .with_for_update(read=True)
    )
    found = (_supplier_of(r) for r in (await session.execute(query)).scalars())
    return {s.id: s for s in found if domain.may_read(s.releasability, actor.nation)}


async def award(
    uow: UnitOfWorkFactory,
    actor: Actor,
    initiative_id: str,
    expected: int | None,
    awards: Sequence[AwardInput],
) -> Initiative:
    async def step(i: Initiative, now: datetime, session: AsyncSession) -> Initiative:
        suppliers = await suppliers_for_award(session, actor, [a.supplier_id for a in awards])
        standings = {
            sid: await standing_of(session, s, now.date(), i.releasability) for sid, s in suppliers.items()
        }
        return i.award(actor, [(new_id(), a) for a in awards], standings, now)

    def announce(i: Initiative, now: datetime) -> list[EventPayload]:
        return [
            AwardMade(
                **_fields(i),
                awards=[
                    AwardFigure(
                        award_id=a.id,
                        lot_id=a.lot_id,
                        supplier_id=a.supplier_id,
                        supplier_name=a.supplier_name,
                        quantity=a.quantity,
                        value=a.value,
                        currency=a.currency,
                    )
                    for a in i.awards
                ],
                awarded_by=actor.id,
                awarded_at=now,
            )
        ]

    return await change_initiative(uow, actor, initiative_id, expected, step, announce, "award")


@dataclass(frozen=True)
class NewContract:
    award_id: str
    framework: bool
    value: float
    currency: str
    period_start: date
    period_end: date
    milestones: tuple[Milestone, ...] = ()


async def sign_contract(
    uow: UnitOfWorkFactory, actor: Actor, initiative_id: str, expected: int | None, new: NewContract
) -> tuple[Initiative, Contract]:
    contract_id = new_id()

    def step(i: Initiative, now: datetime) -> Initiative:
        contract = Contract(
            contract_id,
            new.award_id,
            "",
            new.framework,
            new.value,
            new.currency,
            new.period_start,
            new.period_end,
            new.milestones,
            now,
        )
        return i.sign_contract(actor, contract, now)

    def announce(i: Initiative, now: datetime) -> list[EventPayload]:
        c = next(x for x in i.contracts if x.id == contract_id)
        return [
            ContractSigned(
                **_fields(i),
                contract_id=c.id,
                award_id=c.award_id,
                supplier_id=c.supplier_id,
                framework=c.framework,
                value=c.value,
                currency=c.currency,
                period_start=c.period_start,
                period_end=c.period_end,
                milestones=[
                    MilestoneFigure(milestone_id=m.id, title=m.title, due=m.due, quantity=m.quantity)
                    for m in c.milestones
                ],
                signed_by=actor.id,
                signed_at=now,
            )
        ]

    changed = await change_initiative(
        uow, actor, initiative_id, expected, _sync(step), announce, "sign_contract"
    )
    return changed, next(c for c in changed.contracts if c.id == contract_id)


@dataclass(frozen=True)
class NewCallOff:
    contract_id: str
    buyer: str
    quantity: int
    value: float
    currency: str
    delivery_by: date


async def place_call_off(
    uow: UnitOfWorkFactory, actor: Actor, initiative_id: str, expected: int | None, new: NewCallOff
) -> tuple[Initiative, CallOff]:
    call_off_id = new_id()

    def step(i: Initiative, now: datetime) -> Initiative:
        call_off = CallOff(
            call_off_id,
            f"{domain.OCID_PREFIX}-{call_off_id}",
            new.contract_id,
            new.buyer,
            new.quantity,
            new.value,
            new.currency,
            new.delivery_by,
            now,
        )
        return i.place_call_off(actor, call_off, now)

    def announce(i: Initiative, now: datetime) -> list[EventPayload]:
        c = next(x for x in i.call_offs if x.id == call_off_id)
        return [
            CallOffPlaced(
                **_fields(i),
                call_off_id=c.id,
                call_off_ocid=c.ocid,
                contract_id=c.contract_id,
                buyer=c.buyer,
                quantity=c.quantity,
                value=c.value,
                currency=c.currency,
                delivery_by=c.delivery_by,
                placed_by=actor.id,
                placed_at=now,
            )
        ]

    async def after(session: AsyncSession, i: Initiative, now: datetime) -> None:
        """The call-off is a process of its own: its first OCDS release, linked to the framework's ocid,
        written with the framework's change (never one without the other)."""
        call_off = next(c for c in i.call_offs if c.id == call_off_id)
        release_id = f"{call_off.ocid}-0001"
        body = ocds.call_off_release(
            i, call_off, release_id=release_id, date=now, suppliers=await _supplier_parties(session, i)
        )
        session.add(
            OcdsReleaseRow(
                id=release_id, ocid=call_off.ocid, position=1, date=now, tags=body["tag"], release=body
            )
        )

    changed = await change_initiative(
        uow, actor, initiative_id, expected, _sync(step), announce, "place_call_off", after
    )
    return changed, next(c for c in changed.call_offs if c.id == call_off_id)


async def record_milestone(
    uow: UnitOfWorkFactory,
    actor: Actor,
    initiative_id: str,
    expected: int | None,
    contract_id: str,
    milestone_id: str,
    met_on: date | None,
    reason: str,
) -> Initiative:
    def step(i: Initiative, now: datetime) -> Initiative:
        changed, _m = i.record_milestone(actor, contract_id, milestone_id, met_on, reason, now)
        return changed

    def announce(i: Initiative, now: datetime) -> list[EventPayload]:
        c = next(x for x in i.contracts if x.id == contract_id)
        m = next(x for x in c.milestones if x.id == milestone_id)
        if m.status is MilestoneStatus.MET:
            assert m.met_on is not None
            return [
                MilestoneMet(
                    **_fields(i),
                    contract_id=c.id,
                    milestone_id=m.id,
                    due=m.due,
                    met_on=m.met_on,
                    recorded_by=actor.id,
                )
            ]
        return [
            MilestoneMissed(
                **_fields(i),
                contract_id=c.id,
                milestone_id=m.id,
                due=m.due,
                reason=m.reason or reason,
                recorded_by=actor.id,
            )
        ]

    return await change_initiative(
        uow, actor, initiative_id, expected, _sync(step), announce, lambda i: i.history[-1].action
    )


async def start_delivery(
    uow: UnitOfWorkFactory, actor: Actor, initiative_id: str, expected: int | None
) -> Initiative:
    return await change_initiative(
        uow,
        actor,
        initiative_id,
        expected,
        _sync(lambda i, now: i.start_delivery(actor, now)),
        lambda i, now: [InitiativeDelivering(**_fields(i), by=actor.id, at=now)],
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
        _sync(lambda i, now: i.close(actor, now)),
        lambda i, now: [InitiativeClosed(**_fields(i), by=actor.id, at=now)],
        "close",
    )


# --- initiatives: queries -------------------------------------------------------------------------------


async def get_initiative(db: Database, actor: Actor, initiative_id: str) -> Initiative:
    async with db.sessions() as session:
        initiative = _initiative(await initiative_row(session, actor, initiative_id, lock=False))
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
    query = select(InitiativeRow).where(readable_by(col(InitiativeRow.readers), actor))
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
    found = [i for i in (_initiative(r) for r in rows[:limit]) if i.visible_to(actor.nation)]
    return found, (rows[limit - 1].id if len(rows) > limit else None)


async def ocds_releases(
    db: Database, actor: Actor, initiative_id: str
) -> tuple[Initiative, list[dict[str, Any]]]:
    """The initiative's OCDS releases in order (its call-offs' processes have their own ocids)."""
    async with db.sessions() as session:
        initiative = _initiative(await initiative_row(session, actor, initiative_id, lock=False))
        rows = (
            await session.execute(
                select(OcdsReleaseRow)
                .where(col(OcdsReleaseRow.ocid) == initiative.ocid)
                .order_by(col(OcdsReleaseRow.position))
            )
        ).scalars()
        return initiative, [r.release for r in rows]


async def call_off_releases(
    db: Database, actor: Actor, initiative_id: str, call_off_id: str
) -> tuple[CallOff, list[dict[str, Any]]]:
    """A call-off's own OCDS releases (its own ocid), for whoever may read the framework's initiative."""
    async with db.sessions() as session:
        initiative = _initiative(await initiative_row(session, actor, initiative_id, lock=False))
        call_off = next((c for c in initiative.call_offs if c.id == call_off_id), None)
        if call_off is None:
            raise NotFound(f"no call-off {call_off_id} in initiative {initiative_id}")
        rows = (
            await session.execute(
                select(OcdsReleaseRow)
                .where(col(OcdsReleaseRow.ocid) == call_off.ocid)
                .order_by(col(OcdsReleaseRow.position))
            )
        ).scalars()
        releases = [r.release for r in rows]
    if not releases:
        raise NotFound(f"call-off {call_off_id} has no OCDS release")
    return call_off, releases


# --- demand signals and the demand picture --------------------------------------------------------------


async def publish_demand_signal(
    uow: UnitOfWorkFactory,
    actor: Actor,
    *,
    product: str,
    capability_area: str,
    unit: str,
    firmness: Firmness,
    quantities: Mapping[int, int],
    releasability: Releasability | None,
) -> DemandSignal:
    now = utcnow()
    signal = DemandSignal.publish(
        id=new_id(),
        actor=actor,
        product=product,
        capability_area=capability_area,
        unit=unit,
        firmness=firmness,
        quantities=quantities,
        now=now,
        releasability=releasability,
    )
    async with uow() as tx:
        tx.session.add(
            DemandSignalRow(
                id=signal.id,
                nation=signal.nation,
                product=signal.product,
                version=signal.version,
                readers=readers(signal.releasability),
                document=to_json(SIGNAL, signal),
                updated_at=now,
            )
        )
        _announce_signal(tx, signal, actor)
    return signal


def _announce_signal(tx: UnitOfWork, s: DemandSignal, actor: Actor) -> None:
    publish(
        tx,
        s.id,
        s.releasability,
        DemandSignalPublished(
            signal_id=s.id,
            nation=s.nation,
            product=s.product,
            capability_area=s.capability_area,
            unit=s.unit,
            firmness=s.firmness.value,
            quantities=_years(s.quantities),
            version=s.version,
            published_by=actor.id,
            published_at=s.updated_at,
        ),
    )


async def _signal_row(session: AsyncSession, actor: Actor, signal_id: str, *, lock: bool) -> DemandSignalRow:
    query = select(DemandSignalRow).where(col(DemandSignalRow.id) == signal_id)
    row = (await session.execute(query.with_for_update() if lock else query)).scalar_one_or_none()
    release = None if row is None else SIGNAL.validate_python(row.document).releasability
    if release is not None:
        audit.subject("demand_signal", signal_id, release.owner)
    if release is None or row is None or not domain.may_read(release, actor.nation):
        raise NotFound(f"no demand signal {signal_id}")
    return row


async def revise_demand_signal(
    uow: UnitOfWorkFactory,
    actor: Actor,
    signal_id: str,
    expected: int | None,
    firmness: Firmness,
    quantities: Mapping[int, int],
) -> DemandSignal:
    async with uow() as tx:
        row = await _signal_row(tx.session, actor, signal_id, lock=True)
        current = SIGNAL.validate_python(row.document)
        check_version("demand signal", current.version, expected)
        changed = current.revise(actor, firmness, quantities, utcnow())
        row.version = changed.version
        row.document = to_json(SIGNAL, changed)
        row.updated_at = changed.updated_at
        _announce_signal(tx, changed, actor)
    return changed


async def list_demand_signals(
    db: Database,
    actor: Actor,
    *,
    nation: str | None,
    product: str | None,
    limit: int,
    after: str | None,
) -> tuple[list[DemandSignal], str | None]:
    query = select(DemandSignalRow).where(readable_by(col(DemandSignalRow.readers), actor))
    if nation:
        query = query.where(col(DemandSignalRow.nation) == nation)
    if product:
        query = query.where(col(DemandSignalRow.product) == product)
    if after:
        query = query.where(col(DemandSignalRow.id) > after)
    async with db.sessions() as session:
        rows = (
            (await session.execute(query.order_by(col(DemandSignalRow.id)).limit(limit + 1))).scalars().all()
        )
    found = [s for s in (SIGNAL.validate_python(r.document) for r in rows[:limit])]
    found = [s for s in found if domain.may_read(s.releasability, actor.nation)]
    return found, (rows[limit - 1].id if len(rows) > limit else None)


async def get_demand_signal(db: Database, actor: Actor, signal_id: str) -> DemandSignal:
    async with db.sessions() as session:
        signal = SIGNAL.validate_python((await _signal_row(session, actor, signal_id, lock=False)).document)
    audit.read("demand_signal", signal_id, signal.releasability.owner)
    return signal


async def _visible_demand(
    session: AsyncSession, actor: Actor, product: str | None
) -> tuple[list[DemandSignal], list[Initiative]]:
    sq = select(DemandSignalRow).where(readable_by(col(DemandSignalRow.readers), actor))
    iq = select(InitiativeRow).where(
        readable_by(col(InitiativeRow.readers), actor),
        col(InitiativeRow.status) != InitiativeStatus.CANCELLED.value,
    )
    if product:
        sq = sq.where(col(DemandSignalRow.product) == product)
        iq = iq.where(col(InitiativeRow.product) == product)
    signals = [SIGNAL.validate_python(r.document) for r in (await session.execute(sq)).scalars()]
    initiatives = [_initiative(r) for r in (await session.execute(iq)).scalars()]
    return (
        [s for s in signals if domain.may_read(s.releasability, actor.nation)],
        [i for i in initiatives if i.visible_to(actor.nation)],
    )


async def demand(db: Database, actor: Actor, product: str | None) -> list[ProductDemand]:
    """The demand signal industry asks for: per product and year, by firmness, within what the caller sees."""
    async with db.sessions() as session:
        signals, initiatives = await _visible_demand(session, actor, product)
    return domain.demand_picture(signals, initiatives, actor.nation, min_aggregate_participants())


def _reads(readers_column: str, actor: Actor) -> bool:
    return not set(readers_column.strip(",").split(",")).isdisjoint(nation_tokens(actor.nation))


async def capacity_rows(session: AsyncSession, actor: Actor, product: str) -> list[CapacityRow]:
    """The capacity commitments of accepted national plans for `product` that the caller may see."""
    rows = (
        await session.execute(
            select(CapacityRow).where(
                col(CapacityRow.product) == product, readable_by(col(CapacityRow.readers), actor)
            )
        )
    ).scalars()
    return [r for r in rows if _reads(r.readers, actor)]


async def shortfall_rows(session: AsyncSession, actor: Actor, product: str) -> list[ShortfallRow]:
    """The shortfalls the plans reported for `product` that the caller may see."""
    rows = (
        await session.execute(
            select(ShortfallRow).where(
                col(ShortfallRow.product) == product, readable_by(col(ShortfallRow.readers), actor)
            )
        )
    ).scalars()
    return [r for r in rows if _reads(r.readers, actor)]


def _most_used(units: Sequence[str], preferred: Set[str] = frozenset()) -> str | None:
    """The unit most of `units` are in, one of `preferred` first (the first in sorted order on a tie)."""
    counted = Counter(units)
    return min(counted, key=lambda u: (u not in preferred, -counted[u], u)) if counted else None


@dataclass(frozen=True)
class DemandCapacity:
    product: str
    #: The unit compared: the committed capacity's (its most used, one the demand is in first), else the
    #: demand's; None with neither.
    unit: str | None
    years: list[YearBalance]
    #: Units the product is also demanded or committed in, left out (quantities of different units are
    #: never added up).
    other_units: tuple[str, ...] = ()


async def demand_against_capacity(
    db: Database, actor: Actor, product: str, unit: str | None = None
) -> DemandCapacity:
    """Per year, the product's demand against committed capacity, in one unit (`unit`, else the unit of
    the capacity the caller sees), with the shortfalls the plans reported."""
    async with db.sessions() as session:
        signals, initiatives = await _visible_demand(session, actor, product)
        capacity = await capacity_rows(session, actor, product)
        shortfalls = await shortfall_rows(session, actor, product)
    picture = domain.demand_picture(signals, initiatives, actor.nation, min_aggregate_participants())
    demanded = {p.unit for p in picture}
    unit = unit or _most_used([r.unit for r in capacity], demanded) or _most_used([p.unit for p in picture])
    years = next((p.years for p in picture if p.unit == unit), {})
    per_year: dict[int, int] = {}
    for r in capacity:
        if r.unit == unit:
            for y, q in r.yearly.items():
                per_year[int(y)] = per_year.get(int(y), 0) + q
    short: dict[int, int] = {}
    for s in shortfalls:
        if s.unit in (None, unit):
            short[s.month.year] = short.get(s.month.year, 0) + s.shortfall
    others = demanded | {r.unit for r in capacity}
    return DemandCapacity(
        product,
        unit,
        domain.demand_against_capacity(years, per_year, short),
        tuple(sorted(others - {unit})) if unit else (),
    )


# --- suppliers and supply-chain screening ---------------------------------------------------------------


@dataclass(frozen=True)
class NewSupplier:
    organisation_id: str
    name: str
    scale: Scale
    country_of_incorporation: str
    ultimate_parent: str | None = None
    ultimate_parent_country: str | None = None
    ownership_chain: tuple[Owner, ...] = ()
    products: tuple[str, ...] = ()
    releasability: Releasability | None = None


def _supplier_of(row: SupplierRow) -> Supplier:
    return SUPPLIER.validate_python(row.document)


def _store_supplier(row: SupplierRow, s: Supplier, now: datetime) -> None:
    row.name = s.name
    row.screening = s.screening.value
    row.lists_version = s.lists_version
    row.version = s.version
    row.readers = readers(s.releasability)
    row.document = to_json(SUPPLIER, s)
    row.updated_at = now


def _supplier_fields(s: Supplier) -> dict[str, Any]:
    return {
        "supplier_id": s.id,
        "organisation_id": s.organisation_id,
        "name": s.name,
        "scale": s.scale.value,
        "country_of_incorporation": s.country_of_incorporation,
        "screening": s.screening.value,
        "version": s.version,
    }


async def _blocks_of(
    session: AsyncSession, organisation_ids: Iterable[str], *, lock: bool = False
) -> dict[str, list[Supplier]]:
    """The blocked supplier records of these organisations (any nation's), by organisation key. `lock`:
    every record of them is read FOR SHARE, so a block being committed meanwhile is waited for and seen."""
    keys = sorted({domain.organisation_key(o) for o in organisation_ids})
    query = select(SupplierRow).where(col(SupplierRow.organisation_key).in_(keys))
    if lock:
        query = query.order_by(col(SupplierRow.id)).with_for_update(read=True)
    else:
        query = query.where(col(SupplierRow.screening) == Screening.BLOCKED.value)
    out: dict[str, list[Supplier]] = {}
    for row in (await session.execute(query)).scalars():
        s = _supplier_of(row)
        if s.screening is Screening.BLOCKED:
            out.setdefault(s.organisation_key, []).append(s)
    return out


def _blocked_elsewhere(s: Supplier, blocks: Iterable[Supplier]) -> list[str]:
    """Who blocked `s`'s organisation on another record, for `s`'s screening: the nation, or "another
    nation" when that record is not released to everyone who may read `s`'s (a match never tells a reader
    more than they may read)."""
    return [
        b.nation if not domain.readers_missing(b.releasability, s.releasability) else "another nation"
        for b in blocks
        if b.id != s.id
    ]


def _screen_again(
    tx: UnitOfWork, row: SupplierRow, lists: ScreeningLists, now: datetime, blocked_elsewhere: Sequence[str]
) -> bool:
    """Screen a stored supplier again; True when that changed its outcome or matches (a new version,
    announced), else only the lists' version is noted."""
    before = _supplier_of(row)
    after = before.screen(lists, now, blocked_elsewhere)
    changed = not (after.screening is before.screening and after.matches == before.matches)
    if changed:
        _announce_screening(tx, after, before, now)
    else:
        after = replace(before, lists_version=after.lists_version)
    _store_supplier(row, after, now)
    return changed


def _announce_screening(tx: UnitOfWork, s: Supplier, before: Supplier | None, now: datetime) -> None:
    """SupplierScreened, and SupplierFlagged when the screening found a potential match a person has not
    seen yet (it became one, or a new match joined those already waiting for adjudication)."""
    publish(
        tx,
        s.id,
        s.releasability,
        SupplierScreened(
            **_supplier_fields(s),
            matches=list(s.matches),
            lists_version=s.lists_version or "",
            screened_at=now,
        ),
    )
    if s.screening is Screening.POTENTIAL_MATCH and (
        before is None
        or before.screening is not Screening.POTENTIAL_MATCH
        or not set(s.matches) <= set(before.matches)
    ):
        publish(
            tx,
            s.id,
            s.releasability,
            SupplierFlagged(**_supplier_fields(s), matches=list(s.matches), flagged_at=now),
        )


async def register_supplier(
    uow: UnitOfWorkFactory, actor: Actor, new: NewSupplier, lists: ScreeningLists | None = None
) -> Supplier:
    """Register a supplier and screen it at once, in one transaction: it is never on record unscreened.
    `lists`: the screening lists to use; by default the ones in force (the service's settings)."""
    now = utcnow()
    registered = Supplier.register(
        id=new_id(),
        actor=actor,
        organisation_id=new.organisation_id,
        name=new.name,
        scale=new.scale,
        country_of_incorporation=new.country_of_incorporation,
        now=now,
        ultimate_parent=new.ultimate_parent,
        ultimate_parent_country=new.ultimate_parent_country,
        ownership_chain=new.ownership_chain,
        products=new.products,
        releasability=new.releasability,
    )
    duplicate = (
        f"{actor.nation} has already registered a supplier with organisation id {registered.organisation_id}"
    )
    async with uow() as tx:
        blocks = await _blocks_of(tx.session, [registered.organisation_id], lock=True)
        screened = registered.screen(
            lists if lists is not None else current_lists(),
            now,
            _blocked_elsewhere(registered, blocks.get(registered.organisation_key, ())),
        )
        taken = (
            await tx.session.execute(
                select(col(SupplierRow.id)).where(
                    col(SupplierRow.nation) == actor.nation,
                    col(SupplierRow.organisation_key) == registered.organisation_key,
                )
            )
        ).scalar_one_or_none()
        if taken is not None:
            raise Conflict(duplicate, supplier_id=taken)
        row = SupplierRow(
            id=screened.id,
            nation=screened.nation,
            organisation_id=screened.organisation_id,
            organisation_key=screened.organisation_key,
            name=screened.name,
            screening=screened.screening.value,
            version=screened.version,
            updated_at=now,
        )
        _store_supplier(row, screened, now)
        tx.session.add(row)
        publish(
            tx,
            registered.id,
            registered.releasability,
            SupplierRegistered(
                **_supplier_fields(registered),
                ultimate_parent=registered.ultimate_parent,
                ultimate_parent_country=registered.ultimate_parent_country,
                products=list(registered.products),
                registered_by=actor.id,
                registered_at=now,
            ),
        )
        _announce_screening(tx, screened, None, now)
        try:
            await tx.session.flush()
        except IntegrityError as exc:  # registered at the same moment by another request
            raise Conflict(duplicate) from exc
    log.info("supplier %s registered by %s: %s", screened.id, actor.id, screened.screening.value)
    return screened


async def _supplier_row(session: AsyncSession, actor: Actor, supplier_id: str, *, lock: bool) -> SupplierRow:
    query = select(SupplierRow).where(col(SupplierRow.id) == supplier_id)
    row = (await session.execute(query.with_for_update() if lock else query)).scalar_one_or_none()
    release = None if row is None else _supplier_of(row).releasability
    if release is not None:
        audit.subject("supplier", supplier_id, release.owner)
    if release is None or row is None or not domain.may_read(release, actor.nation):
        raise NotFound(f"no supplier {supplier_id}")
    return row


async def get_supplier(db: Database, actor: Actor, supplier_id: str) -> Supplier:
    async with db.sessions() as session:
        supplier = _supplier_of(await _supplier_row(session, actor, supplier_id, lock=False))
    audit.read("supplier", supplier_id, supplier.releasability.owner)
    return supplier


async def list_suppliers(
    db: Database,
    actor: Actor,
    *,
    screening: Screening | None = None,
    nation: str | None = None,
    organisation_id: str | None = None,
    limit: int = 50,
    after: str | None = None,
) -> tuple[list[Supplier], str | None]:
    query = select(SupplierRow).where(readable_by(col(SupplierRow.readers), actor))
    if screening:
        query = query.where(col(SupplierRow.screening) == screening.value)
    if nation:
        query = query.where(col(SupplierRow.nation) == nation)
    if organisation_id:
        query = query.where(col(SupplierRow.organisation_key) == domain.organisation_key(organisation_id))
    if after:
        query = query.where(col(SupplierRow.id) > after)
    async with db.sessions() as session:
        rows = (await session.execute(query.order_by(col(SupplierRow.id)).limit(limit + 1))).scalars().all()
    found = [
        s for s in (_supplier_of(r) for r in rows[:limit]) if domain.may_read(s.releasability, actor.nation)
    ]
    return found, (rows[limit - 1].id if len(rows) > limit else None)


async def _adjudicate(
    uow: UnitOfWorkFactory,
    actor: Actor,
    supplier_id: str,
    expected: int | None,
    step: Callable[[Supplier, datetime], Supplier],
    announce: Callable[[Supplier, datetime], EventPayload],
    *,
    organisation_wide: bool = False,
) -> Supplier:
    """`organisation_wide` (a block): every record of the organisation is locked first, in the order of
    their ids, and the others are screened again in the same transaction (the block is a match on them)."""
    async with uow() as tx:
        if organisation_wide:
            await _lock_organisation_of(tx.session, supplier_id)
        row = await _supplier_row(tx.session, actor, supplier_id, lock=True)
        current = _supplier_of(row)
        check_version("supplier", current.version, expected)
        now = utcnow()
        changed = step(current, now)
        _store_supplier(row, changed, now)
        publish(tx, changed.id, changed.releasability, announce(changed, now))
        if organisation_wide:
            await _rescreen_organisation(tx, changed, now)
    log.info("supplier %s is %s after %s", changed.id, changed.screening.value, actor.id)
    return changed


def _organisation_rows(organisation_id: str) -> Any:
    return (
        select(SupplierRow)
        .where(col(SupplierRow.organisation_key) == domain.organisation_key(organisation_id))
        .order_by(col(SupplierRow.id))
        .with_for_update()
    )


async def _lock_organisation_of(session: AsyncSession, supplier_id: str) -> None:
    organisation_id = (
        await session.execute(
            select(col(SupplierRow.organisation_id)).where(col(SupplierRow.id) == supplier_id)
        )
    ).scalar_one_or_none()
    if organisation_id is not None:
        await session.execute(_organisation_rows(organisation_id))


async def _rescreen_organisation(tx: UnitOfWork, blocked: Supplier, now: datetime) -> None:
    """A block on one nation's record of an organisation is a match on every other nation's record of it:
    they are screened again at once, with the lists in force."""
    await tx.session.flush()
    rows = list((await tx.session.execute(_organisation_rows(blocked.organisation_id))).scalars())
    others = [r for r in rows if r.id != blocked.id]
    if not others:
        return
    blocks = [s for s in map(_supplier_of, rows) if s.screening is Screening.BLOCKED]
    lists = current_lists()
    for row in others:
        _screen_again(tx, row, lists, now, _blocked_elsewhere(_supplier_of(row), blocks))


async def clear_supplier(
    uow: UnitOfWorkFactory,
    actor: Actor,
    supplier_id: str,
    expected: int | None,
    mitigation: str,
    adjudicator: str,
) -> Supplier:
    """A named person (`adjudicator`, of the registering Ally's or NATO's procurement staff) clears a
    potential match."""
    return await _adjudicate(
        uow,
        actor,
        supplier_id,
        expected,
        lambda s, now: s.clear(actor, mitigation, now, adjudicator=adjudicator),
        lambda s, now: SupplierCleared(
            **_supplier_fields(s),
            mitigation=s.mitigation or mitigation,
            adjudicator=s.adjudicator or adjudicator,
            cleared_at=now,
        ),
    )


async def block_supplier(
    uow: UnitOfWorkFactory,
    actor: Actor,
    supplier_id: str,
    expected: int | None,
    reason: str,
    adjudicator: str,
) -> Supplier:
    """A named person (`adjudicator`) blocks a supplier on a potential match. Every other nation's record
    of the same organisation is screened again in the same transaction: the block is a match on them."""
    return await _adjudicate(
        uow,
        actor,
        supplier_id,
        expected,
        lambda s, now: s.block(actor, reason, now, adjudicator=adjudicator),
        lambda s, now: SupplierBlocked(
            **_supplier_fields(s),
            reason=s.blocked_reason or reason,
            adjudicator=s.adjudicator or adjudicator,
            blocked_at=now,
        ),
        organisation_wide=True,
    )


async def rescreen_suppliers(
    uow: UnitOfWorkFactory, lists: ScreeningLists, now: datetime | None = None, batch: int = 200
) -> int:
    """Screen again every supplier last screened under other lists; returns how many were screened.

    Only a changed outcome or changed matches is a new screening (a new version, SupplierScreened, and
    SupplierFlagged when a person must look again); otherwise only the lists' version is noted. Batches of
    rows are locked, skipping rows another replica (or an adjudication) holds, each batch one transaction;
    a noted supplier is never due again, so each is screened once per change of the lists."""
    now = now or utcnow()
    screened = changed = 0
    while True:
        async with uow() as tx:
            query = (
                select(SupplierRow)
                .where(
                    sa.or_(
                        col(SupplierRow.lists_version).is_(None),
                        col(SupplierRow.lists_version) != lists.version,
                    )
                )
                .order_by(col(SupplierRow.id))
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
            rows = (await tx.session.execute(query)).scalars().all()
            blocks = await _blocks_of(tx.session, {r.organisation_key for r in rows}) if rows else {}
            for row in rows:
                elsewhere = _blocked_elsewhere(_supplier_of(row), blocks.get(row.organisation_key, ()))
                changed += _screen_again(tx, row, lists, now, elsewhere)
        screened += len(rows)
        if len(rows) < batch:
            break
    if screened:
        log.info("re-screened %d suppliers against lists %s; %d changed", screened, lists.version, changed)
    return screened


# --- standards awareness (called by the standards events' handlers) -------------------------------------


async def flag_initiatives(
    session: AsyncSession, number: str, edition: int, standard_status: str, now: datetime
) -> int:
    """Flag every initiative not yet contracted that requires `number` Ed. `edition`, now superseded or
    cancelled: in the caller's transaction (a consumer's), with its OCDS release and InitiativeFlagged.
    Returns how many were flagged (an initiative already flagged for it is not flagged again)."""
    standard = RequiredStandard(number, edition)
    done = [s.value for s in (*domain.CONTRACTED_STATES, InitiativeStatus.CANCELLED)]
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
        changed = _initiative(row).flag(standard, standard_status, now)
        if changed is None:
            continue
        _store_initiative(row, changed, now)
        publish(tx, changed.id, changed.releasability, _flag_event(changed, now))
        await _record_release(session, changed, "flagged", now)
        flagged += 1
    await tx.flush()
    if flagged:
        log.info("%d initiatives flagged: %s is %s", flagged, standard.label, standard_status)
    return flagged
