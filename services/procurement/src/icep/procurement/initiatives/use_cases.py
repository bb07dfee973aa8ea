"""Use cases of initiatives. Each change reads top to bottom: load the initiative through its repository
(locked, at the version the caller read), call one method of it, save it (its row, its OCDS release and
the events it recorded commit together). And the reads of initiatives."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.contracts import Releasability
from icep.platform import audit, visibility
from icep.platform.db import Database
from icep.platform.domain import Actor
from icep.platform.events import utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWorkFactory, joined_unit_of_work
from icep.procurement.initiatives.model import Initiative
from icep.procurement.initiatives.parts import (
    AwardInput,
    Bid,
    CallOff,
    Contract,
    InitiativeStatus,
    Item,
    Lot,
    Milestone,
    RequiredStandard,
)
from icep.procurement.initiatives.repository import (
    InitiativeRepository,
    initiative_of,
    initiative_row,
    requiring,
)
from icep.procurement.initiatives.rows import InitiativeRow
from icep.procurement.ocds.repository import record_call_off_release
from icep.procurement.read_models.queries import standing_of, withdrawn_standards
from icep.procurement.rules import OCID_PREFIX
from icep.procurement.suppliers.repository import readable_supplier, suppliers_for_award

log = logging.getLogger("icep.procurement")


def _changed(i: Initiative, actor: Actor) -> Initiative:
    log.info("initiative %s is %s (version %d) after %s", i.id, i.status.value, i.version, actor.id)
    return i


# --- proposal and life cycle ----------------------------------------------------------------------------


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
        initiatives = InitiativeRepository(tx)
        await initiatives.add(initiative)
        # A required edition already superseded or cancelled is flagged at once, as a later one would be.
        for standard, standard_status in await withdrawn_standards(tx.session, initiative.required_standards):
            flagged = initiative.flag(standard, standard_status, now)
            if flagged is not None:
                initiative = flagged
                await initiatives.save(initiative)
    return initiative


async def open_initiative(
    uow: UnitOfWorkFactory, actor: Actor, initiative_id: str, expected: int | None
) -> Initiative:
    async with uow() as tx:
        initiatives = InitiativeRepository(tx)
        initiative = await initiatives.get_for_update(actor, initiative_id, expected)
        initiative = initiative.open(actor, utcnow())
        await initiatives.save(initiative)
    return _changed(initiative, actor)


async def close_participation(
    uow: UnitOfWorkFactory, actor: Actor, initiative_id: str, expected: int | None
) -> Initiative:
    async with uow() as tx:
        initiatives = InitiativeRepository(tx)
        initiative = await initiatives.get_for_update(actor, initiative_id, expected)
        initiative = initiative.close_participation(actor, utcnow())
        await initiatives.save(initiative)
    return _changed(initiative, actor)


async def cancel_initiative(
    uow: UnitOfWorkFactory, actor: Actor, initiative_id: str, expected: int | None, reason: str
) -> Initiative:
    async with uow() as tx:
        initiatives = InitiativeRepository(tx)
        initiative = await initiatives.get_for_update(actor, initiative_id, expected)
        initiative = initiative.cancel(actor, reason, utcnow())
        await initiatives.save(initiative)
    return _changed(initiative, actor)


async def start_delivery(
    uow: UnitOfWorkFactory, actor: Actor, initiative_id: str, expected: int | None
) -> Initiative:
    async with uow() as tx:
        initiatives = InitiativeRepository(tx)
        initiative = await initiatives.get_for_update(actor, initiative_id, expected)
        initiative = initiative.start_delivery(actor, utcnow())
        await initiatives.save(initiative)
    return _changed(initiative, actor)


async def close_initiative(
    uow: UnitOfWorkFactory, actor: Actor, initiative_id: str, expected: int | None
) -> Initiative:
    async with uow() as tx:
        initiatives = InitiativeRepository(tx)
        initiative = await initiatives.get_for_update(actor, initiative_id, expected)
        initiative = initiative.close(actor, utcnow())
        await initiatives.save(initiative)
    return _changed(initiative, actor)


# --- participation --------------------------------------------------------------------------------------


async def join_initiative(
    uow: UnitOfWorkFactory,
    actor: Actor,
    initiative_id: str,
    expected: int | None,
    indicative: Mapping[int, int],
) -> Initiative:
    async with uow() as tx:
        initiatives = InitiativeRepository(tx)
        initiative = await initiatives.get_for_update(actor, initiative_id, expected)
        initiative = initiative.join(actor, indicative, utcnow())
        await initiatives.save(initiative)
    return _changed(initiative, actor)


async def commit_to_initiative(
    uow: UnitOfWorkFactory,
    actor: Actor,
    initiative_id: str,
    expected: int | None,
    firm: Mapping[int, int],
    funded: Mapping[int, int],
) -> Initiative:
    async with uow() as tx:
        initiatives = InitiativeRepository(tx)
        initiative = await initiatives.get_for_update(actor, initiative_id, expected)
        initiative = initiative.commit(actor, firm, funded, utcnow())
        await initiatives.save(initiative)
    return _changed(initiative, actor)


async def withdraw_from_initiative(
    uow: UnitOfWorkFactory, actor: Actor, initiative_id: str, expected: int | None, reason: str
) -> Initiative:
    """Withdrawn at once (an event and the new demand), or a request the lead nation decides on."""
    async with uow() as tx:
        initiatives = InitiativeRepository(tx)
        initiative = await initiatives.get_for_update(actor, initiative_id, expected)
        initiative, _withdrawn = initiative.withdraw(actor, reason, utcnow())
        await initiatives.save(initiative)
    return _changed(initiative, actor)


async def decide_withdrawal(
    uow: UnitOfWorkFactory, actor: Actor, initiative_id: str, expected: int | None, nation: str, approve: bool
) -> Initiative:
    async with uow() as tx:
        initiatives = InitiativeRepository(tx)
        initiative = await initiatives.get_for_update(actor, initiative_id, expected)
        initiative = initiative.decide_withdrawal(actor, nation, approve, utcnow())
        await initiatives.save(initiative)
    return _changed(initiative, actor)


# --- tender, bids, award, contracts ---------------------------------------------------------------------


async def publish_tender(
    uow: UnitOfWorkFactory,
    actor: Actor,
    initiative_id: str,
    expected: int | None,
    lots: Sequence[Lot],
    period_end: date,
) -> Initiative:
    async with uow() as tx:
        initiatives = InitiativeRepository(tx)
        initiative = await initiatives.get_for_update(actor, initiative_id, expected)
        initiative = initiative.publish_tender(actor, lots, period_end, utcnow())
        await initiatives.save(initiative)
    return _changed(initiative, actor)


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
    async with uow() as tx:
        initiatives = InitiativeRepository(tx)
        initiative = await initiatives.get_for_update(actor, initiative_id, expected)
        now = utcnow()
        supplier = await readable_supplier(tx.session, actor, supplier_id)
        bid = Bid(bid_id, lot_id, supplier_id, quantity, value, currency, now)
        initiative = initiative.record_bid(actor, bid, supplier, now)
        await initiatives.save(initiative)
    return _changed(initiative, actor)


async def award(
    uow: UnitOfWorkFactory,
    actor: Actor,
    initiative_id: str,
    expected: int | None,
    awards: Sequence[AwardInput],
) -> Initiative:
    """Award lots, on the suppliers' screening and their products' verified conformance as committed now
    (read in this transaction: a block or a new screening is seen, never missed)."""
    async with uow() as tx:
        initiatives = InitiativeRepository(tx)
        initiative = await initiatives.get_for_update(actor, initiative_id, expected)
        now = utcnow()
        suppliers = await suppliers_for_award(tx.session, actor, [a.supplier_id for a in awards])
        standings = {
            sid: await standing_of(tx.session, s, now.date(), initiative.releasability)
            for sid, s in suppliers.items()
        }
        initiative = initiative.award(actor, [(new_id(), a) for a in awards], standings, now)
        await initiatives.save(initiative)
    return _changed(initiative, actor)


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
    """The initiative, and the contract just signed (its last)."""
    contract_id = new_id()
    async with uow() as tx:
        initiatives = InitiativeRepository(tx)
        initiative = await initiatives.get_for_update(actor, initiative_id, expected)
        now = utcnow()
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
        initiative = initiative.sign_contract(actor, contract, now)
        await initiatives.save(initiative)
    return _changed(initiative, actor), initiative.contracts[-1]


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
    """The initiative, and the call-off just placed (its last)."""
    call_off_id = new_id()
    async with uow() as tx:
        initiatives = InitiativeRepository(tx)
        initiative = await initiatives.get_for_update(actor, initiative_id, expected)
        now = utcnow()
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
        initiative = initiative.place_call_off(actor, call_off, now)
        await initiatives.save(initiative)
        # The call-off's own process starts with the framework's change: never one without the other.
        await record_call_off_release(tx.session, initiative, initiative.call_offs[-1], now)
    return _changed(initiative, actor), initiative.call_offs[-1]


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
    async with uow() as tx:
        initiatives = InitiativeRepository(tx)
        initiative = await initiatives.get_for_update(actor, initiative_id, expected)
        initiative, _milestone = initiative.record_milestone(
            actor, contract_id, milestone_id, met_on, reason, utcnow()
        )
        await initiatives.save(initiative)
    return _changed(initiative, actor)


# --- standards awareness (the standards events' handler calls it) ---------------------------------------


async def flag_initiatives(
    session: AsyncSession, number: str, edition: int, standard_status: str, now: datetime
) -> int:
    """Flag every initiative not yet contracted that requires `number` Ed. `edition`, now superseded or
    cancelled: in the caller's transaction (a consumer's), with its OCDS release and InitiativeFlagged.
    Returns how many were flagged (an initiative already flagged for it is not flagged again)."""
    standard = RequiredStandard(number, edition)
    candidates = await requiring(session, standard)
    if not candidates:
        return 0
    tx = joined_unit_of_work(session)
    initiatives = InitiativeRepository(tx)
    flagged = 0
    for initiative in await initiatives.all_for_update(candidates):
        changed = initiative.flag(standard, standard_status, now)
        if changed is None:
            continue
        await initiatives.save(changed)
        flagged += 1
    await tx.flush()
    if flagged:
        log.info("%d initiatives flagged: %s is %s", flagged, standard.label, standard_status)
    return flagged


# --- reads ----------------------------------------------------------------------------------------------


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
