"""Use cases from the tender on: bids, awards (screening and verified conformance checked), contracts,
call-offs under a framework and delivery milestones; each one unit of work through `change_initiative`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from icep.contracts import EventPayload
from icep.contracts.procurement import (
    AwardFigure,
    AwardMade,
    BidRecorded,
    CallOffPlaced,
    ContractSigned,
    MilestoneFigure,
    MilestoneMet,
    MilestoneMissed,
)
from icep.platform.domain import Actor
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWorkFactory
from icep.procurement.initiatives.announcements import (
    Announcement,
    initiative_fields,
    lead_and,
)
from icep.procurement.initiatives.model import Initiative
from icep.procurement.initiatives.parts import (
    AwardInput,
    Bid,
    CallOff,
    Contract,
    Milestone,
    MilestoneStatus,
)
from icep.procurement.initiatives.use_cases import change_initiative, sync_step
from icep.procurement.ocds import releases
from icep.procurement.ocds.repository import supplier_parties
from icep.procurement.ocds.rows import OcdsReleaseRow
from icep.procurement.read_models.queries import standing_of
from icep.procurement.rules import OCID_PREFIX
from icep.procurement.suppliers.repository import readable_supplier, suppliers_for_award


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
        supplier = await readable_supplier(session, actor, supplier_id)
        bid = Bid(bid_id, lot_id, supplier_id, quantity, value, currency, now)
        return i.record_bid(actor, bid, supplier, now)

    def announce(i: Initiative, now: datetime) -> list[Announcement]:
        b = next(x for x in i.bids if x.id == bid_id)
        recorded = BidRecorded(
            **initiative_fields(i),
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
                **initiative_fields(i),
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
                **initiative_fields(i),
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
        uow, actor, initiative_id, expected, sync_step(step), announce, "sign_contract"
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
            f"{OCID_PREFIX}-{call_off_id}",
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
                **initiative_fields(i),
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
        body = releases.call_off_release(
            i, call_off, release_id=release_id, date=now, suppliers=await supplier_parties(session, i)
        )
        session.add(
            OcdsReleaseRow(
                id=release_id, ocid=call_off.ocid, position=1, date=now, tags=body["tag"], release=body
            )
        )

    changed = await change_initiative(
        uow, actor, initiative_id, expected, sync_step(step), announce, "place_call_off", after
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
                    **initiative_fields(i),
                    contract_id=c.id,
                    milestone_id=m.id,
                    due=m.due,
                    met_on=m.met_on,
                    recorded_by=actor.id,
                )
            ]
        return [
            MilestoneMissed(
                **initiative_fields(i),
                contract_id=c.id,
                milestone_id=m.id,
                due=m.due,
                reason=m.reason or reason,
                recorded_by=actor.id,
            )
        ]

    return await change_initiative(
        uow, actor, initiative_id, expected, sync_step(step), announce, lambda i: i.history[-1].action
    )
