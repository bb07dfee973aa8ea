"""Procurement's use cases on a real database (SQLite, or PostgreSQL when configured), without Kafka: what
one transaction writes (rows, outbox events and their markings, OCDS releases), what a caller is shown,
and the demand against capacity and reported shortfalls.

Every nation, company, quantity and value here is synthetic.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from icep.contracts.plans import CapacityCommitted, ShortfallDetected
from icep.platform.db import Database
from icep.platform.domain import Actor
from icep.platform.errors import Conflict
from icep.platform.events import ReceivedEvent, utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWorkFactory
from icep.procurement.demand import use_cases as demand_cases
from icep.procurement.demand.model import Firmness
from icep.procurement.events import procurement_events
from icep.procurement.initiatives import repository as initiative_store
from icep.procurement.initiatives import use_cases as initiative_cases
from icep.procurement.initiatives.model import Initiative
from icep.procurement.initiatives.parts import Award, Contract, InitiativeStatus, Item, Lot, RequiredStandard
from icep.procurement.models import InitiativeRow, KnownStandardRow, OcdsReleaseRow, metadata, tables
from icep.procurement.ocds import releases as ocds_releases
from icep.procurement.ocds import use_cases as ocds_store
from icep.procurement.read_models import capacity as capacity_handlers
from icep.procurement.suppliers import use_cases as supplier_cases

PROCUREMENT = frozenset({"procurement"})
DEU = Actor("deu-proc", "DEU", PROCUREMENT)
FRA = Actor("fra-proc", "FRA", PROCUREMENT)
POL = Actor("pol-proc", "POL", PROCUREMENT)
NLD = Actor("nld-proc", "NLD", PROCUREMENT)
UKR = Actor("ukr-proc", "UKR", PROCUREMENT)
TODAY = utcnow().date()
NEXT_YEAR = TODAY.year + 1
PRODUCT = "155mm HE round (synthetic)"


@dataclass
class Store:
    db: Database
    uow: UnitOfWorkFactory

    async def events(self) -> list[dict[str, Any]]:
        """The outbox, in the order written: type, subject, owner nation, marking and data."""
        async with self.db.sessions() as session:
            rows = (
                await session.execute(sa.select(tables.outbox).order_by(tables.outbox.c.created_at))
            ).all()
        return [
            {
                "type": r.type.removeprefix("icep.procurement.").removesuffix(".v1"),
                "subject": r.key,
                "nation": r.nation,
                "releasable_to": r.releasable_to,
                "data": json.loads(r.data),
            }
            for r in rows
        ]

    async def releases(self, ocid: str) -> list[dict[str, Any]]:
        async with self.db.sessions() as session:
            rows = await session.execute(
                select(OcdsReleaseRow)
                .where(col(OcdsReleaseRow.ocid) == ocid)
                .order_by(col(OcdsReleaseRow.position))
            )
            return [r.release for r in rows.scalars()]

    async def store(self, i: Initiative) -> Initiative:
        """An initiative written as the use cases write it (to start a test in a later state)."""
        now = utcnow()
        row = InitiativeRow(
            id=i.id,
            ocid=i.ocid,
            lead_nation=i.lead_nation,
            title=i.title,
            product=i.item.product,
            capability_area=i.capability_area,
            status=i.status.value,
            version=i.version,
            created_at=now,
            updated_at=now,
        )
        initiative_store.store_initiative(row, i, now)
        async with self.db.transaction() as session:
            session.add(row)
        return i

    async def handle(self, handler: Callable[..., Any], event: ReceivedEvent) -> None:
        async with self.db.transaction() as session:
            await handler(session, event)


@pytest.fixture
async def store(make_database_url: Callable[[str], str]) -> AsyncIterator[Store]:
    db = Database(make_database_url("procurement_service"))
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        uow = UnitOfWorkFactory(
            db, tables.outbox, "procurement", "icep.procurement.events", procurement_events
        )
        yield Store(db, uow)
    finally:
        await db.dispose()


def new_initiative(**kw: Any) -> initiative_cases.NewInitiative:
    defaults: dict[str, Any] = {
        "title": "Joint buy of 155 mm rounds (synthetic)",
        "item": Item(PRODUCT, "rounds"),
        "capability_area": "munitions",
        "participation_deadline": TODAY + timedelta(days=60),
    }
    return initiative_cases.NewInitiative(**(defaults | kw))


# --- proposing against the standards read model ---------------------------------------------------------


async def test_a_required_edition_already_withdrawn_is_flagged_at_proposal(store: Store) -> None:
    async with store.db.transaction() as session:
        for sid, number, edition, status in (
            ("st-1", "4569", 3, "superseded"),
            ("st-2", "4569", 4, "promulgated"),
            ("st-3", "2345", 1, "cancelled"),
        ):
            session.add(
                KnownStandardRow(
                    id=sid,
                    kind="STANAG",
                    number=number,
                    edition=edition,
                    status=status,
                    version=1,
                    updated_at=utcnow(),
                )
            )
    required = (RequiredStandard("4569", 3), RequiredStandard("4569", 4), RequiredStandard("9999", 1))
    i = await initiative_cases.propose_initiative(store.uow, DEU, new_initiative(required_standards=required))
    [flag] = i.flags
    assert (flag.standard, flag.standard_status) == (RequiredStandard("4569", 3), "superseded")
    assert i.status is InitiativeStatus.PROPOSED and i.version == 2
    assert [h.action for h in i.history] == ["proposed", "flagged"]
    stored = await initiative_cases.get_initiative(store.db, DEU, i.id)
    assert stored.flags == i.flags and stored.version == 2
    events = await store.events()
    assert [(e["type"], e["data"]["version"]) for e in events] == [
        ("initiative.proposed", 1),
        ("initiative.flagged", 2),
    ]
    assert events[1]["data"]["standard_status"] == "superseded"
    assert events[1]["releasable_to"] == "ALLIES"
    releases = await store.releases(i.ocid)
    assert [r["tag"] for r in releases] == [["planning"], ["planningUpdate"]]
    assert releases[-1]["tender"]["icepStandardFlags"][0]["standardStatus"] == "superseded"
    # A cancelled edition too; an edition the read model does not know is not flagged.
    other = await initiative_cases.propose_initiative(
        store.uow, DEU, new_initiative(required_standards=(RequiredStandard("2345", 1),))
    )
    assert [f.standard_status for f in other.flags] == ["cancelled"]
    clean = await initiative_cases.propose_initiative(
        store.uow, DEU, new_initiative(required_standards=(RequiredStandard("9999", 1),))
    )
    assert clean.flags == () and clean.version == 1


# --- participation: events released to whom they concern ------------------------------------------------


async def test_one_nations_quantities_and_the_bids_go_only_to_whom_they_concern(store: Store) -> None:
    i = await initiative_cases.propose_initiative(store.uow, DEU, new_initiative())
    await initiative_cases.open_initiative(store.uow, DEU, i.id, None)
    await initiative_cases.join_initiative(store.uow, FRA, i.id, None, {NEXT_YEAR: 1000})
    await initiative_cases.join_initiative(store.uow, POL, i.id, None, {NEXT_YEAR: 400})
    await initiative_cases.commit_to_initiative(
        store.uow, FRA, i.id, None, {NEXT_YEAR: 800}, {NEXT_YEAR: 500}
    )
    await initiative_cases.commit_to_initiative(store.uow, POL, i.id, None, {NEXT_YEAR: 400}, {})
    await initiative_cases.withdraw_from_initiative(store.uow, POL, i.id, None, "budget cut (synthetic)")
    # Closing participation waits for the decision (and names the nation).
    with pytest.raises(Conflict, match="POL"):
        await initiative_cases.close_participation(store.uow, DEU, i.id, None)
    await initiative_cases.decide_withdrawal(store.uow, DEU, i.id, None, "POL", False)
    await initiative_cases.withdraw_from_initiative(
        store.uow, POL, i.id, None, "budget cut, again (synthetic)"
    )
    await initiative_cases.decide_withdrawal(store.uow, DEU, i.id, None, "POL", True)
    events = [e for e in await store.events() if e["subject"] == i.id]
    marked = [(e["type"], e["data"].get("nation"), e["nation"], e["releasable_to"]) for e in events]
    # The aggregate as it stands: to the lead nation and NATO staff only (disclosure control).
    agg = ("initiative.demand_aggregated", None, "DEU", "DEU,NATO")
    assert marked == [
        ("initiative.proposed", None, "DEU", "ALLIES"),
        ("initiative.opened", None, "DEU", "ALLIES"),
        ("initiative.joined", "FRA", "DEU", "DEU,FRA,NATO"),
        agg,
        ("initiative.joined", "POL", "DEU", "DEU,NATO,POL"),
        agg,
        ("initiative.committed", "FRA", "DEU", "DEU,FRA,NATO"),
        agg,
        ("initiative.committed", "POL", "DEU", "DEU,NATO,POL"),
        agg,
        ("initiative.withdrawal_requested", "POL", "DEU", "DEU,NATO,POL"),
        ("initiative.withdrawal_refused", "POL", "DEU", "DEU,NATO,POL"),
        ("initiative.withdrawal_requested", "POL", "DEU", "DEU,NATO,POL"),
        ("initiative.participant_withdrawn", "POL", "DEU", "DEU,NATO,POL"),
        agg,
    ]
    by_type = {e["type"]: e["data"] for e in events}
    assert by_type["initiative.withdrawal_refused"]["reason"] == "budget cut (synthetic)"
    assert by_type["initiative.withdrawal_refused"]["participation_status"] == "committed"
    assert by_type["initiative.withdrawal_requested"]["reason"] == "budget cut, again (synthetic)"
    assert by_type["initiative.participant_withdrawn"]["amendment"] is True
    # The lead nation's own participation: to itself and NATO.
    await initiative_cases.join_initiative(store.uow, DEU, i.id, None, {NEXT_YEAR: 10})
    own = [e for e in await store.events() if e["type"] == "initiative.joined"][-1]
    assert own["releasable_to"] == "DEU,NATO"


async def test_a_bid_goes_to_the_lead_nation_alone(store: Store) -> None:
    i = await initiative_cases.propose_initiative(store.uow, DEU, new_initiative())
    for step in (
        lambda: initiative_cases.open_initiative(store.uow, DEU, i.id, None),
        lambda: initiative_cases.join_initiative(store.uow, FRA, i.id, None, {NEXT_YEAR: 1000}),
        lambda: initiative_cases.commit_to_initiative(store.uow, FRA, i.id, None, {NEXT_YEAR: 1000}, {}),
        lambda: initiative_cases.close_participation(store.uow, DEU, i.id, None),
    ):
        await step()
    from icep.procurement.initiatives.parts import Lot
    from icep.procurement.suppliers.model import Scale, ScreeningLists

    await initiative_cases.publish_tender(
        store.uow, DEU, i.id, None, [Lot("L1", "All rounds", 1000)], TODAY + timedelta(days=30)
    )
    supplier = await supplier_cases.register_supplier(
        store.uow,
        DEU,
        supplier_cases.NewSupplier("HRB-1", "Synthetic Munitions GmbH", Scale.SME, "DEU"),
        ScreeningLists(frozenset({"RUS"}), frozenset()),
    )
    after = await initiative_cases.record_bid(
        store.uow, DEU, i.id, None, "L1", supplier.id, 1000, 3.9e6, "EUR"
    )
    [bid] = after.bids
    [event] = [e for e in await store.events() if e["type"] == "bid.recorded"]
    assert (event["subject"], event["nation"], event["releasable_to"]) == (i.id, "DEU", "DEU")
    assert event["data"] | {"recorded_at": None} == {
        "initiative_id": i.id,
        "ocid": i.ocid,
        "lead_nation": "DEU",
        "product": PRODUCT,
        "status": "tendering",
        "version": after.version,
        "bid_id": bid.id,
        "lot_id": "L1",
        "supplier_id": supplier.id,
        "quantity": 1000,
        "value": 3.9e6,
        "currency": "EUR",
        "recorded_by": DEU.id,
        "recorded_at": None,
    }


async def test_cancelling_takes_the_demand_out_with_zeros(store: Store) -> None:
    i = await initiative_cases.propose_initiative(store.uow, DEU, new_initiative())
    await initiative_cases.open_initiative(store.uow, DEU, i.id, None)
    await initiative_cases.join_initiative(store.uow, FRA, i.id, None, {NEXT_YEAR: 1000, NEXT_YEAR + 1: 5})
    await initiative_cases.commit_to_initiative(
        store.uow, FRA, i.id, None, {NEXT_YEAR: 800}, {NEXT_YEAR: 800}
    )
    await initiative_cases.cancel_initiative(
        store.uow, DEU, i.id, None, "requirement met otherwise (synthetic)"
    )
    events = await store.events()
    assert [e["type"] for e in events[-2:]] == ["initiative.cancelled", "initiative.demand_aggregated"]
    last = events[-1]
    zeros = {str(NEXT_YEAR): 0, str(NEXT_YEAR + 1): 0}
    assert (last["data"]["participants"], last["data"]["status"]) == (0, "cancelled")
    assert (last["data"]["indicative"], last["data"]["firm"], last["data"]["funded"]) == (zeros, zeros, zeros)
    # Never published (not settled): the wider audience is told nothing of it.
    assert last["releasable_to"] == "DEU,NATO"


async def test_the_settled_demand_is_published_once_with_the_tender_each_year_of_k_nations(
    store: Store,
) -> None:
    i = await initiative_cases.propose_initiative(store.uow, DEU, new_initiative())
    await initiative_cases.open_initiative(store.uow, DEU, i.id, None)
    y1, y2 = NEXT_YEAR, NEXT_YEAR + 1
    for nation, figures in ((FRA, {y1: 100, y2: 7}), (POL, {y1: 50}), (DEU, {y1: 30})):
        await initiative_cases.join_initiative(store.uow, nation, i.id, None, figures)
    await initiative_cases.commit_to_initiative(store.uow, FRA, i.id, None, {y1: 100, y2: 7}, {y1: 60})
    await initiative_cases.commit_to_initiative(store.uow, POL, i.id, None, {y1: 40}, {})
    await initiative_cases.commit_to_initiative(store.uow, DEU, i.id, None, {y1: 30}, {})
    await initiative_cases.close_participation(store.uow, DEU, i.id, None)
    before = len(await store.events())
    await initiative_cases.publish_tender(
        store.uow, DEU, i.id, None, [Lot("L1", "All rounds", 100)], TODAY + timedelta(days=30)
    )
    new = (await store.events())[before:]
    [wide] = [e for e in new if e["type"] == "initiative.demand_aggregated"]
    assert wide["releasable_to"] == "ALLIES"
    # The firm demand only: three nations commit to y1; only FRA to y2, left out (not a zero).
    assert (wide["data"]["indicative"], wide["data"]["firm"], wide["data"]["funded"]) == (
        {},
        {str(y1): 170},
        {},
    )
    assert wide["data"]["participants"] == 3
    # Cancelled after it was published: zeros for the published years, to the wider audience too.
    await initiative_cases.cancel_initiative(
        store.uow, DEU, i.id, None, "requirement met otherwise (synthetic)"
    )
    last = [e for e in await store.events() if e["type"] == "initiative.demand_aggregated"][-2:]
    assert [(e["releasable_to"], e["data"]["firm"]) for e in last] == [
        ("DEU,NATO", {str(y1): 0, str(y2): 0}),
        ("ALLIES", {str(y1): 0}),
    ]


# --- call-offs: one transaction for the framework's change and the call-off's own release ---------------


async def contracted(store: Store) -> Initiative:
    """A DEU framework contract for 2,000 rounds, FRA committed (built by the rules, award included)."""
    now = utcnow()
    i = Initiative.propose(
        id=new_id(),
        actor=DEU,
        title="Joint buy of 155 mm rounds (synthetic)",
        item=Item(PRODUCT, "rounds"),
        capability_area="munitions",
        participation_deadline=TODAY + timedelta(days=60),
        now=now,
    )
    i = i.open(DEU, now).join(FRA, {NEXT_YEAR: 2000}, now).commit(FRA, {NEXT_YEAR: 2000}, {}, now)
    i = i.close_participation(DEU, now)
    award = Award("a1", "L1", "s-1", "Synthetic Munitions GmbH", 2000, 7.5e6, "EUR", now)
    i = replace(i, status=InitiativeStatus.AWARDED, awards=(award,))
    framework = Contract("c1", "a1", "", True, 7.5e6, "EUR", TODAY, TODAY + timedelta(days=700), (), now)
    return await store.store(i.sign_contract(DEU, framework, now))


def new_call_off(**kw: Any) -> initiative_cases.NewCallOff:
    defaults: dict[str, Any] = {
        "contract_id": "c1",
        "buyer": "FRA",
        "quantity": 500,
        "value": 1.9e6,
        "currency": "EUR",
        "delivery_by": TODAY + timedelta(days=120),
    }
    return initiative_cases.NewCallOff(**(defaults | kw))


async def test_a_call_off_and_its_own_release_are_written_together(store: Store) -> None:
    i = await contracted(store)
    changed, call_off = await initiative_cases.place_call_off(store.uow, DEU, i.id, None, new_call_off())
    [release] = await store.releases(call_off.ocid)
    assert release["id"] == f"{call_off.ocid}-0001" and release["tag"] == ["award", "contract"]
    assert release["relatedProcesses"][0]["identifier"] == i.ocid
    found, releases = await ocds_store.call_off_releases(store.db, POL, i.id, call_off.id)
    assert found == call_off and releases == [release]
    assert changed.call_offs == (call_off,)


async def test_no_call_off_without_its_release(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    i = await contracted(store)

    def broken(*_a: Any, **_k: Any) -> dict[str, Any]:
        raise RuntimeError("crash while writing the call-off's release")

    monkeypatch.setattr(ocds_releases, "call_off_release", broken)
    with pytest.raises(RuntimeError):
        await initiative_cases.place_call_off(store.uow, DEU, i.id, None, new_call_off())
    # Nothing of it is written: neither the framework's change nor its events.
    after = await initiative_cases.get_initiative(store.db, DEU, i.id)
    assert after.call_offs == () and after.version == i.version
    assert [e for e in await store.events() if e["type"] == "call_off.placed"] == []
    async with store.db.sessions() as session:
        count = (await session.execute(sa.select(sa.func.count()).select_from(OcdsReleaseRow))).scalar_one()
    assert count == 0


# --- demand against capacity: units, shortfalls -------------------------------------------------------


def received(payload: Any, nation: str, marking: str, time: datetime | None = None) -> ReceivedEvent:
    return ReceivedEvent(
        id=new_id(),
        type=payload.event_type,
        source="/icep/plans",
        subject=payload.plan_id,
        time=time or utcnow(),
        nation=nation,
        releasable_to=marking,
        data=payload.model_dump(mode="json"),
    )


def committed(plan_id: str, key: str, unit: str, per_month: int, nation: str = "DEU") -> CapacityCommitted:
    return CapacityCommitted(
        plan_id=plan_id,
        nation=nation,
        period_start=date(NEXT_YEAR, 1, 1),
        period_end=date(NEXT_YEAR, 12, 31),
        version=3,
        commitment_key=key,
        product=PRODUCT,
        capability_area="munitions",
        site="Works (synthetic)",
        site_country=nation,
        unit=unit,
        baseline_per_month=per_month,
        current_per_month=per_month,
        target_per_month=per_month,
        ramp=[],
        surge_per_month=None,
        surge_days=None,
        lead_time_days=None,
        operator="Synthetic Munitions GmbH",
        operator_is_sme=True,
        investment_amount=None,
        investment_currency=None,
    )


def shortfall(plan_id: str, key: str, month: date, actual: int, nation: str = "DEU") -> ShortfallDetected:
    return ShortfallDetected(
        plan_id=plan_id,
        nation=nation,
        period_start=date(NEXT_YEAR, 1, 1),
        period_end=date(NEXT_YEAR, 12, 31),
        version=3,
        commitment_key=key,
        product=PRODUCT,
        month=month,
        actual_output=actual,
        planned_output=1000,
        shortfall=1000 - actual,
        threshold=0.1,
    )


async def test_demand_against_capacity_in_one_unit_with_reported_shortfalls(store: Store) -> None:
    # Capacity: DEU 1,000 rounds a month (released to Allies); POL's national plan; a crate-counted line.
    await store.handle(
        capacity_handlers.capacity_committed,
        received(committed("p-deu", "a", "rounds", 1000), "DEU", "ALLIES"),
    )
    await store.handle(
        capacity_handlers.capacity_committed,
        received(committed("p-pol", "a", "rounds", 50, "POL"), "POL", "POL"),
    )
    await store.handle(
        capacity_handlers.capacity_committed,
        received(committed("p-nld", "a", "crates", 3, "NLD"), "NLD", "ALLIES"),
    )
    # Demand in rounds, and in thousands of rounds (never added to rounds).
    for who, unit, quantity in ((FRA, "rounds", 30_000), (NLD, "thousand rounds", 5)):
        await demand_cases.publish_demand_signal(
            store.uow,
            who,
            product=PRODUCT,
            capability_area="munitions",
            unit=unit,
            firmness=Firmness.FUNDED,
            quantities={NEXT_YEAR: quantity},
            releasability=None,
        )
    # Shortfalls: March reported twice (the later report replaces the earlier), April once; POL's is
    # national; a late copy of the first March report changes nothing.
    march, april = date(NEXT_YEAR, 3, 1), date(NEXT_YEAR, 4, 1)
    first = received(shortfall("p-deu", "a", march, 600), "DEU", "ALLIES", utcnow() - timedelta(minutes=5))
    await store.handle(capacity_handlers.shortfall_detected, first)
    await store.handle(
        capacity_handlers.shortfall_detected, received(shortfall("p-deu", "a", march, 700), "DEU", "ALLIES")
    )
    await store.handle(
        capacity_handlers.shortfall_detected, received(shortfall("p-deu", "a", april, 900), "DEU", "ALLIES")
    )
    await store.handle(capacity_handlers.shortfall_detected, replace(first, id=new_id()))
    await store.handle(
        capacity_handlers.shortfall_detected,
        received(shortfall("p-pol", "a", march, 10, "POL"), "POL", "POL"),
    )

    seen = await demand_cases.demand_against_capacity(store.db, FRA, PRODUCT)
    assert (seen.unit, seen.other_units) == ("rounds", ("crates", "thousand rounds"))
    [line] = seen.years
    assert (line.year, line.capacity, line.demand.funded) == (NEXT_YEAR, 12 * 1000, 30_000)
    assert line.shortfall_reported == 300 + 100
    by_pol = (await demand_cases.demand_against_capacity(store.db, POL, PRODUCT)).years[0]
    assert (by_pol.capacity, by_pol.shortfall_reported) == (12 * 1000 + 12 * 50, 400 + 990)
    # Asked for another unit: that unit's figures alone.
    crates = await demand_cases.demand_against_capacity(store.db, FRA, PRODUCT, "crates")
    assert [(b.capacity, b.demand.total, b.shortfall_reported) for b in crates.years] == [(36, 0, 0)]
    assert crates.other_units == ("rounds", "thousand rounds")
    # A partner sees none of it.
    nothing = await demand_cases.demand_against_capacity(store.db, UKR, PRODUCT)
    assert (nothing.unit, nothing.years) == (None, [])


# --- blocks follow the organisation, whatever the case of its id ----------------------------------------


async def test_a_block_on_an_organisation_id_reaches_it_in_any_case(store: Store) -> None:
    from icep.procurement.suppliers.model import Scale, Screening, ScreeningLists

    lists = ScreeningLists(frozenset({"RUS"}), frozenset())
    deu = await supplier_cases.register_supplier(
        store.uow, DEU, supplier_cases.NewSupplier("ACME-1", "Synthetic Acme GmbH", Scale.SME, "RUS"), lists
    )
    fra = await supplier_cases.register_supplier(
        store.uow, FRA, supplier_cases.NewSupplier("acme-1", "Synthetic Acme SARL", Scale.SME, "DEU"), lists
    )
    assert (deu.screening, fra.screening) == (Screening.POTENTIAL_MATCH, Screening.CLEAR)
    # The same nation cannot register the organisation twice by changing the case of its id.
    with pytest.raises(Conflict):
        await supplier_cases.register_supplier(
            store.uow, DEU, supplier_cases.NewSupplier(" Acme-1 ", "Synthetic Acme", Scale.SME, "DEU"), lists
        )
    blocked = await supplier_cases.block_supplier(store.uow, DEU, deu.id, None, "sanctioned owner", "J. Doe")
    assert blocked.screening is Screening.BLOCKED
    # FRA's record of `acme-1` was screened again with DEU's block on `ACME-1` as a match.
    again = await supplier_cases.get_supplier(store.db, FRA, fra.id)
    assert again.screening is Screening.POTENTIAL_MATCH
    assert any("blocked by DEU" in m for m in again.matches), again.matches
    # A later registration in yet another case is screened against the block at once.
    pol = await supplier_cases.register_supplier(
        store.uow, POL, supplier_cases.NewSupplier("aCmE-1", "Synthetic Acme Sp.", Scale.SME, "DEU"), lists
    )
    assert pol.screening is Screening.POTENTIAL_MATCH
    # And a filter by organisation id finds every record of it.
    listed, _ = await supplier_cases.list_suppliers(store.db, DEU, organisation_id="acme-1")
    assert {s.id for s in listed} >= {deu.id}
