"""Use cases of the procurement service: each change is one unit of work (rows, events and the OCDS release
in one transaction).

Reads apply one visibility rule (the record's reader tokens meet the caller's) in SQL and again in Python,
so a list, an aggregate or an export never shows what the caller may not read.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.contracts import EventPayload, Releasability
from icep.contracts.procurement import (
    AwardFigure,
    AwardMade,
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
)
from icep.contracts.releasability import encode_tokens, nation_tokens, reader_tokens
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
    SupplierRow,
)
from icep.procurement.settings import current_lists

log = logging.getLogger("icep.procurement")

T = TypeVar("T")

# --- storage codec: each aggregate is kept whole as JSON, through pydantic's dataclass support -----------

INITIATIVE = TypeAdapter(Initiative)
SUPPLIER = TypeAdapter(Supplier)
SIGNAL = TypeAdapter(DemandSignal)


def to_json(adapter: TypeAdapter[T], value: T) -> dict[str, Any]:
    data: dict[str, Any] = adapter.dump_python(value, mode="json")
    return data


def readers(r: Releasability) -> str:
    return encode_tokens(reader_tokens(r))


def readable_by(column: Any, actor: Actor) -> Any:
    """SQL: the reader tokens in `column` share one with the caller's."""
    return sa.or_(*(column.like(f"%,{token},%") for token in sorted(nation_tokens(actor.nation))))


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
    body = ocds.release(i, tags, release_id=release_id, date=now, suppliers=suppliers)
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


def _demand_event(i: Initiative) -> DemandAggregated:
    d = i.demand
    return DemandAggregated(
        **_fields(i),
        unit=i.item.unit,
        participants=d.participants,
        indicative=_years(d.indicative),
        firm=_years(d.firm),
        funded=_years(d.funded),
    )


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
    return initiative


Step = Callable[[Initiative, datetime], Initiative]
Announce = Callable[[Initiative, datetime], Sequence[EventPayload]]


async def change_initiative(
    uow: UnitOfWorkFactory,
    actor: Actor,
    initiative_id: str,
    expected: int | None,
    step: Callable[[Initiative, datetime, AsyncSession], Any],
    announce: Announce,
    action: str | Callable[[Initiative], str],
) -> Initiative:
    """Load (locked), check the version, apply the domain step, store, announce and record the OCDS release.
    `step` may be async (it gets the session, to read what the rule needs) and returns the changed one."""
    async with uow() as tx:
        row = await initiative_row(tx.session, actor, initiative_id, lock=True)
        current = _initiative(row)
        check_version("initiative", current.version, expected)
        now = utcnow()
        result = step(current, now, tx.session)
        changed: Initiative = await result if inspect.isawaitable(result) else result
        _store_initiative(row, changed, now)
        for payload in announce(changed, now):
            publish(tx, changed.id, changed.releasability, payload)
        await _record_release(
            tx.session, changed, action if isinstance(action, str) else action(changed), now
        )
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
    def announce(i: Initiative, now: datetime) -> list[EventPayload]:
        p = i.participation(actor.nation)
        assert p is not None
        return [
            InitiativeJoined(
                **_participation_fields(i, actor.nation, actor, now), indicative=_years(p.indicative)
            ),
            _demand_event(i),
        ]

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
    def announce(i: Initiative, now: datetime) -> list[EventPayload]:
        p = i.participation(actor.nation)
        assert p is not None
        return [
            InitiativeCommitted(
                **_participation_fields(i, actor.nation, actor, now),
                firm=_years(p.firm),
                funded=_years(p.funded),
            ),
            _demand_event(i),
        ]

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

    def announce(i: Initiative, now: datetime) -> list[EventPayload]:
        p = i.participation(actor.nation)
        assert p is not None
        if p.status is not domain.ParticipationStatus.WITHDRAWN:
            return []  # requested: nothing changed for anyone else until the lead nation decides
        amendment = bool(p.firm)
        return [
            ParticipantWithdrawn(
                **_participation_fields(i, actor.nation, actor, now),
                amendment=amendment,
                approved_by=actor.id if amendment else None,
                reason=p.withdrawal_reason or reason,
            ),
            _demand_event(i),
        ]

    return await change_initiative(
        uow, actor, initiative_id, expected, _sync(step), announce, lambda i: i.history[-1].action
    )


async def decide_withdrawal(
    uow: UnitOfWorkFactory, actor: Actor, initiative_id: str, expected: int | None, nation: str, approve: bool
) -> Initiative:
    def announce(i: Initiative, now: datetime) -> list[EventPayload]:
        if not approve:
            return []
        p = i.participation(nation)
        assert p is not None
        return [
            ParticipantWithdrawn(
                **_participation_fields(i, nation, actor, now),
                amendment=True,
                approved_by=actor.id,
                reason=p.withdrawal_reason or "",
            ),
            _demand_event(i),
        ]

    return await change_initiative(
        uow,
        actor,
        initiative_id,
        expected,
        _sync(lambda i, now: i.decide_withdrawal(actor, nation, approve, now)),
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
            )
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
    def announce(i: Initiative, now: datetime) -> list[EventPayload]:
        assert i.tender is not None
        return [
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
            )
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
    async def step(i: Initiative, now: datetime, session: AsyncSession) -> Initiative:
        supplier = await _supplier(session, actor, supplier_id)
        bid = Bid(new_id(), lot_id, supplier_id, quantity, value, currency, now)
        return i.record_bid(actor, bid, supplier, now)

    return await change_initiative(uow, actor, initiative_id, expected, step, lambda i, now: [], "record_bid")


async def standing_of(session: AsyncSession, supplier: Supplier, on: date) -> SupplierStanding:
    """The supplier's screening and the standard editions its products hold verified conformance with,
    from the local read model of the standards service's events."""
    if not supplier.products:
        return SupplierStanding(supplier, frozenset())
    claims = [
        KnownConformance(r.claim_id, r.product_code, r.standard_id, r.status, r.expires_on)
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
    return SupplierStanding(supplier, domain.verified_editions(supplier.products, claims, standards, on))


async def award(
    uow: UnitOfWorkFactory,
    actor: Actor,
    initiative_id: str,
    expected: int | None,
    awards: Sequence[AwardInput],
) -> Initiative:
    async def step(i: Initiative, now: datetime, session: AsyncSession) -> Initiative:
        standings = {}
        for a in awards:
            if a.supplier_id not in standings:
                supplier = await _supplier(session, actor, a.supplier_id)
                standings[a.supplier_id] = await standing_of(session, supplier, now.date())
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

    changed = await change_initiative(
        uow, actor, initiative_id, expected, _sync(step), announce, "place_call_off"
    )
    call_off = next(c for c in changed.call_offs if c.id == call_off_id)
    # The call-off is a process of its own: its first OCDS release, linked to the framework's ocid.
    async with uow() as tx:
        now = utcnow()
        release_id = f"{call_off.ocid}-0001"
        body = ocds.call_off_release(changed, call_off, release_id=release_id, date=now)
        tx.session.add(
            OcdsReleaseRow(
                id=release_id, ocid=call_off.ocid, position=1, date=now, tags=body["tag"], release=body
            )
        )
    return changed, call_off


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
        return _initiative(await initiative_row(session, actor, initiative_id, lock=False))


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
    if row is None or not domain.may_read(SIGNAL.validate_python(row.document).releasability, actor.nation):
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
        return SIGNAL.validate_python((await _signal_row(session, actor, signal_id, lock=False)).document)


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
    return domain.demand_picture(signals, initiatives)


async def committed_capacity(session: AsyncSession, actor: Actor, product: str) -> dict[int, int]:
    """Committed capacity per year from accepted national plans, counting only what the caller may see."""
    rows = (
        await session.execute(
            select(CapacityRow).where(
                col(CapacityRow.product) == product, readable_by(col(CapacityRow.readers), actor)
            )
        )
    ).scalars()
    mine = nation_tokens(actor.nation)
    out: dict[int, int] = {}
    for r in rows:
        if not set(r.readers.strip(",").split(",")).isdisjoint(mine):
            for y, q in r.yearly.items():
                out[int(y)] = out.get(int(y), 0) + q
    return out


@dataclass(frozen=True)
class DemandCapacity:
    product: str
    unit: str | None
    years: list[YearBalance]


async def demand_against_capacity(db: Database, actor: Actor, product: str) -> DemandCapacity:
    async with db.sessions() as session:
        signals, initiatives = await _visible_demand(session, actor, product)
        capacity = await committed_capacity(session, actor, product)
    picture = domain.demand_picture(signals, initiatives)
    years = picture[0].years if picture else {}
    unit = picture[0].unit if picture else None
    return DemandCapacity(product, unit, domain.demand_against_capacity(years, capacity))


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
    screened = registered.screen(lists if lists is not None else current_lists(), now)
    duplicate = (
        f"{actor.nation} has already registered a supplier with organisation id {registered.organisation_id}"
    )
    async with uow() as tx:
        taken = (
            await tx.session.execute(
                select(col(SupplierRow.id)).where(
                    col(SupplierRow.nation) == actor.nation,
                    col(SupplierRow.organisation_id) == registered.organisation_id,
                )
            )
        ).scalar_one_or_none()
        if taken is not None:
            raise Conflict(duplicate, supplier_id=taken)
        row = SupplierRow(
            id=screened.id,
            nation=screened.nation,
            organisation_id=screened.organisation_id,
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
    if row is None or not domain.may_read(_supplier_of(row).releasability, actor.nation):
        raise NotFound(f"no supplier {supplier_id}")
    return row


async def get_supplier(db: Database, actor: Actor, supplier_id: str) -> Supplier:
    async with db.sessions() as session:
        return _supplier_of(await _supplier_row(session, actor, supplier_id, lock=False))


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
        query = query.where(col(SupplierRow.organisation_id) == organisation_id)
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
) -> Supplier:
    async with uow() as tx:
        row = await _supplier_row(tx.session, actor, supplier_id, lock=True)
        current = _supplier_of(row)
        check_version("supplier", current.version, expected)
        now = utcnow()
        changed = step(current, now)
        _store_supplier(row, changed, now)
        publish(tx, changed.id, changed.releasability, announce(changed, now))
    log.info("supplier %s is %s after %s", changed.id, changed.screening.value, actor.id)
    return changed


async def clear_supplier(
    uow: UnitOfWorkFactory, actor: Actor, supplier_id: str, expected: int | None, mitigation: str
) -> Supplier:
    """A named person (the registering nation's or NATO's procurement staff) clears a potential match."""
    return await _adjudicate(
        uow,
        actor,
        supplier_id,
        expected,
        lambda s, now: s.clear(actor, mitigation, now),
        lambda s, now: SupplierCleared(
            **_supplier_fields(s), mitigation=s.mitigation or mitigation, adjudicator=actor.id, cleared_at=now
        ),
    )


async def block_supplier(
    uow: UnitOfWorkFactory, actor: Actor, supplier_id: str, expected: int | None, reason: str
) -> Supplier:
    return await _adjudicate(
        uow,
        actor,
        supplier_id,
        expected,
        lambda s, now: s.block(actor, reason, now),
        lambda s, now: SupplierBlocked(
            **_supplier_fields(s), reason=s.blocked_reason or reason, adjudicator=actor.id, blocked_at=now
        ),
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
            for row in rows:
                before = _supplier_of(row)
                after = before.screen(lists, now)
                if after.screening is before.screening and after.matches == before.matches:
                    after = replace(before, lists_version=after.lists_version)
                else:
                    changed += 1
                    _announce_screening(tx, after, before, now)
                _store_supplier(row, after, now)
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
        publish(
            tx,
            changed.id,
            changed.releasability,
            InitiativeFlagged(
                **_fields(changed),
                standard_number=number,
                standard_edition=edition,
                standard_status=standard_status,
                reason=changed.flags[-1].reason,
                flagged_at=now,
            ),
        )
        await _record_release(session, changed, "flagged", now)
        flagged += 1
    await tx.flush()
    if flagged:
        log.info("%d initiatives flagged: %s is %s", flagged, standard.label, standard_status)
    return flagged
