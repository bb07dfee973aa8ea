"""Procurement's read models of other services' events: the yearly reading of a capacity commitment, who
may see a plan's capacity figures after a release, which events are handled, and the handlers on a real
database (an ended plan's late events). (They also run on real events in
tests/e2e/test_procurement_supply_chain.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlmodel import select

from icep.contracts import Releasability, ReleasabilityScope, all_event_types
from icep.contracts.plans import (
    CapacityCommitted,
    PlanSuperseded,
    PlanWithdrawn,
    RampStepFigure,
    ShortfallDetected,
)
from icep.contracts.standards import ConformanceVerified
from icep.platform.db import Database
from icep.platform.events import ReceivedEvent, utcnow
from icep.platform.ids import new_id
from icep.platform.visibility import union_of_markings as widest
from icep.procurement.handlers import HANDLERS
from icep.procurement.models import CapacityRow, EndedPlanRow, KnownConformanceRow, ShortfallRow, metadata
from icep.procurement.read_models.capacity import shortfall_detected, yearly_output


def committed(ramp: list[tuple[date, int]], current: int = 10_000) -> CapacityCommitted:
    return CapacityCommitted(
        plan_id="p1",
        nation="DEU",
        period_start=date(2025, 4, 1),
        period_end=date(2027, 3, 31),
        version=4,
        commitment_key="deu-a",
        product="155mm HE round (synthetic)",
        capability_area="munitions",
        site="Works (synthetic)",
        site_country="DEU",
        unit="rounds",
        baseline_per_month=current,
        current_per_month=current,
        target_per_month=max([current, *(o for _, o in ramp)]),
        ramp=[RampStepFigure(on=on, output_per_month=o) for on, o in ramp],
        surge_per_month=None,
        surge_days=None,
        lead_time_days=None,
        operator="Synthetic Munitions GmbH",
        operator_is_sme=True,
        investment_amount=None,
        investment_currency=None,
    )


def test_yearly_output_follows_the_ramp_within_the_period() -> None:
    # Steps given out of order are read in date order.
    c = committed([(date(2026, 7, 1), 20_000), (date(2026, 1, 1), 15_000)])
    assert yearly_output(c) == {
        "2025": 9 * 10_000,  # April to December
        "2026": 6 * 15_000 + 6 * 20_000,
        "2027": 3 * 20_000,  # January to March
    }
    assert yearly_output(committed([])) == {"2025": 90_000, "2026": 120_000, "2027": 30_000}


def test_capacity_goes_to_the_plans_readers_and_the_wider_capacity_release() -> None:
    allies = Releasability(owner="POL", scope=ReleasabilityScope.ALLIES)
    assert widest("POL", "POL", "ALLIES") == allies
    assert widest("POL", "ALLIES", "POL") == allies
    assert widest("POL", "POL", "ALLIES,UKR") == Releasability(
        owner="POL", scope=ReleasabilityScope.ALLIES_PARTNERS, nations=("UKR",)
    )
    assert widest("POL", "POL,FRA", "ALLIES") == allies  # an Ally named is among the Allies
    assert widest("POL", "POL,FRA", "POL,DEU") == Releasability(
        owner="POL", scope=ReleasabilityScope.NATIONS, nations=("DEU", "FRA")
    )
    assert widest("POL", "POL", "POL") == Releasability(owner="POL")


def test_every_handled_type_is_a_known_event() -> None:
    known = all_event_types()
    assert set(HANDLERS) <= set(known)
    assert {t.split(".")[1] for t in HANDLERS} == {"plans", "standards"}
    assert {
        "icep.plans.capacity.committed.v1",
        "icep.plans.plan.superseded.v1",
        "icep.plans.plan.withdrawn.v1",
        "icep.plans.plan.released.v1",
        "icep.standards.standard.superseded.v1",
        "icep.standards.standard.cancelled.v1",
        "icep.standards.conformance.verified.v1",
        "icep.standards.conformance.expired.v1",
        "icep.plans.shortfall.detected.v1",
    } <= set(HANDLERS)


# --- on a database --------------------------------------------------------------------------------------


@pytest.fixture
async def db(make_database_url: Callable[[str], str]) -> AsyncIterator[Database]:
    database = Database(make_database_url("procurement_handlers"))
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        yield database
    finally:
        await database.dispose()


def received(payload: Any, marking: str = "ALLIES") -> ReceivedEvent:
    """A fresh copy of an event (a new id: the inbox does not know it), as a redriven dead letter is."""
    return ReceivedEvent(
        id=new_id(),
        type=payload.event_type,
        source="/icep/plans",
        subject=payload.plan_id,
        time=utcnow(),
        nation="DEU",
        releasable_to=marking,
        data=payload.model_dump(mode="json"),
    )


async def handle(db: Database, event: ReceivedEvent) -> None:
    async with db.transaction() as session:
        await HANDLERS[event.type](session, event)


async def rows(db: Database, table: Any) -> list[Any]:
    async with db.sessions() as session:
        return list((await session.execute(select(table))).scalars().all())


def short(month: date) -> ShortfallDetected:
    return ShortfallDetected(
        plan_id="p1",
        nation="DEU",
        period_start=date(2025, 4, 1),
        period_end=date(2027, 3, 31),
        version=4,
        commitment_key="deu-a",
        product="155mm HE round (synthetic)",
        month=month,
        actual_output=7_000,
        planned_output=10_000,
        shortfall=3_000,
        threshold=0.1,
    )


@pytest.mark.parametrize("ended", [PlanSuperseded, PlanWithdrawn])
async def test_an_ended_plans_late_commitment_or_shortfall_is_not_counted_again(
    db: Database, ended: type[PlanSuperseded] | type[PlanWithdrawn]
) -> None:
    commitment = committed([])
    await handle(db, received(commitment))
    await handle(db, received(short(date(2026, 2, 1))))
    assert [(r.plan_id, r.yearly["2026"]) for r in await rows(db, CapacityRow)] == [("p1", 120_000)]
    assert [r.shortfall for r in await rows(db, ShortfallRow)] == [3_000]
    common = {
        "plan_id": "p1",
        "nation": "DEU",
        "period_start": date(2025, 4, 1),
        "period_end": date(2027, 3, 31),
        "version": 5,
        "title": "Capacity plan (synthetic)",
    }
    end = (
        PlanSuperseded(**common, superseded_by="p2", superseded_at=utcnow())
        if ended is PlanSuperseded
        else PlanWithdrawn(**common, withdrawn_by="deu-planner", withdrawn_at=utcnow())
    )
    await handle(db, received(end))
    assert await rows(db, CapacityRow) == [] and await rows(db, ShortfallRow) == []
    [tombstone] = await rows(db, EndedPlanRow)
    assert (tombstone.plan_id, tombstone.version) == ("p1", 5)
    # The commitment and a shortfall arrive again, late, under new event ids: nothing comes back.
    await handle(db, received(commitment))
    await handle(db, received(short(date(2026, 3, 1))))
    assert await rows(db, CapacityRow) == [] and await rows(db, ShortfallRow) == []
    # Ended twice (a replay): one tombstone, still ended.
    await handle(db, received(end))
    assert len(await rows(db, EndedPlanRow)) == 1


async def test_a_later_shortfall_report_of_a_month_replaces_the_earlier(db: Database) -> None:
    await handle(db, received(committed([])))
    earlier = received(short(date(2026, 2, 14)))
    later = received(short(date(2026, 2, 1)).model_copy(update={"actual_output": 9_000, "shortfall": 1_000}))
    await handle(db, earlier)
    await handle(db, later)
    [row] = await rows(db, ShortfallRow)
    assert (row.month, row.shortfall, row.actual_output, row.unit) == (
        date(2026, 2, 1),
        1_000,
        9_000,
        "rounds",
    )
    # The earlier report arriving again (a redriven copy) does not roll it back.
    async with db.transaction() as session:
        await shortfall_detected(
            session, replace(earlier, id=new_id(), time=datetime(2020, 1, 1, tzinfo=UTC))
        )
    [row] = await rows(db, ShortfallRow)
    assert row.shortfall == 1_000 and row.readers == ",ALLIES,DEU,"


async def test_the_conformance_copy_keeps_the_claims_releasability_and_manufacturer(db: Database) -> None:
    verified = ConformanceVerified(
        claim_id="c1",
        nation="DEU",
        manufacturer="Synthetic Munitions GmbH",
        product_code="SM-155-HE",
        product_name="155 mm HE round (synthetic)",
        standard_id="std-1",
        standard_reference="STANAG 4569 Ed. 3",
        level=None,
        version=3,
        evidence=["trial (synthetic)"],
        expires_on=date(2030, 1, 1),
        verified_by="nato-standards",
        verified_at=utcnow(),
    )

    def event(payload: ConformanceVerified, marking: str) -> ReceivedEvent:
        return replace(received_plan_free(payload), releasable_to=marking)

    await handle(db, event(verified, "DEU,NATO"))
    [row] = await rows(db, KnownConformanceRow)
    assert (row.nation, row.manufacturer, row.product_code, row.status) == (
        "DEU",
        "Synthetic Munitions GmbH",
        "SM-155-HE",
        "verified",
    )
    assert (row.releasable_to, row.readers) == ("DEU,NATO", ",DEU,NATO,")
    # The owner releases it to all Allies: the next event's marking is the copy's.
    await handle(db, event(verified.model_copy(update={"version": 4}), "ALLIES"))
    [row] = await rows(db, KnownConformanceRow)
    assert (row.releasable_to, row.readers, row.version) == ("ALLIES", ",ALLIES,DEU,", 4)
    # An older copy arriving late changes nothing, its marking included.
    await handle(db, event(verified, "DEU"))
    [row] = await rows(db, KnownConformanceRow)
    assert (row.releasable_to, row.version) == ("ALLIES", 4)


def received_plan_free(payload: ConformanceVerified) -> ReceivedEvent:
    return ReceivedEvent(
        id=new_id(),
        type=payload.event_type,
        source="/icep/standards",
        subject=payload.claim_id,
        time=utcnow(),
        nation=payload.nation,
        releasable_to="ALLIES",
        data=payload.model_dump(mode="json"),
    )
