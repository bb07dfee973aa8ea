"""The pure parts of procurement's read models: the yearly reading of a capacity commitment, who may see
a plan's capacity figures after a release, and which events are handled. (The handlers themselves run
on real events in tests/e2e/test_procurement_supply_chain.py.)"""

from __future__ import annotations

from datetime import date

from icep.contracts import Releasability, ReleasabilityScope, all_event_types
from icep.contracts.plans import CapacityCommitted, RampStepFigure
from icep.procurement.handlers import HANDLERS, widest, yearly_output


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
    } <= set(HANDLERS)
