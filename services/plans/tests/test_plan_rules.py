"""The full life of a national plan, its content rules, visibility, progress and shortfalls."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icep.contracts import Releasability, ReleasabilityScope
from icep.plans.plans.model import (
    Actor,
    BottleneckInput,
    CapacityCommitment,
    Measure,
    MeasureKind,
    NationalPlan,
    Operator,
    PlanContent,
    PlanStatus,
    RampStep,
    check_period,
)
from icep.plans.progress.model import report_progress
from icep.plans.targets.model import check_target_setter
from icep.platform.errors import Forbidden, IllegalTransition, Unprocessable
from icep.platform.visibility import union

NOW = datetime(2026, 11, 28, tzinfo=UTC)
DEU = Actor("deu-planner", "DEU", frozenset({"planner"}))
FRA = Actor("fra-planner", "FRA", frozenset({"planner"}))
REVIEWER = Actor("nato-reviewer", "NATO", frozenset({"reviewer"}))
NATO_PLANNER_ONLY = Actor("nato-x", "NATO", frozenset({"operator"}))
UKR = Actor("ukr-partner", "UKR", frozenset({"subscriber"}))


def commitment(**changes: object) -> CapacityCommitment:
    base = CapacityCommitment(
        key="unterluess-155",
        product="155mm artillery round",
        capability_area="munitions",
        site="Unterluess",
        site_country="DEU",
        unit="rounds",
        baseline_per_month=4_000,
        current_per_month=8_000,
        target_per_month=20_000,
        ramp=(RampStep(date(2026, 1, 1), 12_000), RampStep(date(2027, 1, 1), 20_000)),
        surge_per_month=25_000,
        surge_days=90,
        lead_time_days=540,
        operator=Operator("Rheinmetall Waffe Munition", sme=False),
        bottlenecks=(BottleneckInput("nitrocellulose", "energetics", ("CHN",), True, 60),),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def plan(
    content: PlanContent | None = None, scope: ReleasabilityScope = ReleasabilityScope.ALLIES
) -> NationalPlan:
    return NationalPlan.draft(
        id="p1",
        actor=DEU,
        title="155 mm",
        period_start=date(2025, 1, 1),
        period_end=date(2029, 12, 31),
        capability_areas=("munitions",),
        release_scope=scope,
        release_nations=(),
        now=NOW,
        content=content if content is not None else PlanContent(commitments=(commitment(),)),
    )


def accepted(p: NationalPlan | None = None) -> NationalPlan:
    p = p or plan()
    return p.submit(DEU, NOW).start_review(REVIEWER, NOW).accept(REVIEWER, NOW)


def test_the_happy_path_to_acceptance_bumps_the_version_each_step() -> None:
    p = accepted()
    assert p.status is PlanStatus.ACCEPTED and p.version == 4
    assert [h[0] for h in p.history] == ["draft", "submitted", "under_review", "accepted"]


def test_return_needs_reasons_and_redraft_makes_it_editable_again() -> None:
    submitted = plan().submit(DEU, NOW)
    with pytest.raises(Unprocessable):
        submitted.return_(REVIEWER, ("  ",), NOW)
    returned = submitted.return_(REVIEWER, ("ramp dates missing",), NOW)
    assert returned.status is PlanStatus.RETURNED and returned.returned_reasons == ("ramp dates missing",)
    with pytest.raises(IllegalTransition):
        returned.edit(DEU, title="x")
    draft = returned.redraft(DEU, NOW)
    assert draft.edit(DEU, title="better").title == "better"
    under_review = plan().submit(DEU, NOW).start_review(REVIEWER, NOW)
    assert under_review.return_(REVIEWER, ("no",), NOW).status is PlanStatus.RETURNED


@pytest.mark.parametrize(
    ("who", "action"),
    [
        (FRA, lambda p: p.submit(FRA, NOW)),
        (DEU, lambda p: p.start_review(DEU, NOW)),
        (NATO_PLANNER_ONLY, lambda p: p.start_review(NATO_PLANNER_ONLY, NOW)),
        (DEU, lambda p: p.accept(DEU, NOW)),
        (DEU, lambda p: p.return_(DEU, ("x",), NOW)),
        (REVIEWER, lambda p: p.withdraw(REVIEWER, NOW)),
        (REVIEWER, lambda p: p.edit(REVIEWER, title="x")),
        (FRA, lambda p: p.release(FRA, Releasability(owner="DEU"), None)),
    ],
)
def test_each_action_belongs_to_one_role(who: Actor, action: object) -> None:
    with pytest.raises(Forbidden):
        action(plan())  # type: ignore[operator]


def test_withdraw_from_draft_or_submitted_only() -> None:
    assert plan().withdraw(DEU, NOW).status is PlanStatus.WITHDRAWN
    assert plan().submit(DEU, NOW).withdraw(DEU, NOW).status is PlanStatus.WITHDRAWN
    with pytest.raises(IllegalTransition) as err:
        accepted().withdraw(DEU, NOW)
    assert err.value.extensions["current_state"] == "accepted"


def test_only_drafts_are_edited() -> None:
    for p in (plan().submit(DEU, NOW), accepted()):
        with pytest.raises(IllegalTransition):
            p.edit(DEU, title="x")


def test_a_newer_accepted_plan_of_the_same_period_supersedes() -> None:
    old = accepted()
    new = accepted(replace(plan(), id="p2"))
    assert new.supersedes(old)
    assert not new.supersedes(new)
    assert not new.supersedes(replace(old, period_end=date(2030, 12, 31)))
    assert not new.supersedes(replace(old, nation="FRA"))
    gone = old.supersede(new, NOW)
    assert gone.status is PlanStatus.SUPERSEDED and gone.superseded_by == "p2"
    with pytest.raises(IllegalTransition):
        gone.supersede(new, NOW)


def test_content_rules_name_the_field() -> None:
    cases = {
        "body.content.commitments.1.key": PlanContent(commitments=(commitment(), commitment())),
        "body.content.commitments.0.target_per_month": PlanContent(
            commitments=(commitment(target_per_month=1),)
        ),
        "body.content.commitments.0.surge_per_month": PlanContent(
            commitments=(commitment(surge_per_month=1),)
        ),
        "body.content.commitments.0.surge_days": PlanContent(commitments=(commitment(surge_days=None),)),
        "body.content.commitments.0.ramp.1.on": PlanContent(
            commitments=(commitment(ramp=(RampStep(date(2026, 1, 1), 1), RampStep(date(2026, 1, 1), 2))),)
        ),
        "body.content.commitments.0.ramp.0.on": PlanContent(
            commitments=(commitment(ramp=(RampStep(date(2031, 1, 1), 1),)),)
        ),
        "body.content.commitments.0.bottlenecks.0.source_countries": PlanContent(
            commitments=(
                commitment(bottlenecks=(BottleneckInput("TNT", "energetics", ("POL", "USA"), True, None),)),
            )
        ),
        "body.content.measures.0.completes": PlanContent(
            measures=(Measure(MeasureKind.LEGISLATION, "x", date(2026, 1, 1), date(2025, 1, 1)),)
        ),
    }
    for location, content in cases.items():
        with pytest.raises(Unprocessable) as err:
            plan(content)
        assert err.value.extensions["errors"][0]["location"] == location


def test_ramp_gives_the_planned_output_per_month_and_year() -> None:
    c = commitment()
    assert c.planned_rate(date(2025, 6, 1)) == 8_000  # before the first step: the current rate
    assert c.planned_rate(date(2026, 1, 1)) == 12_000
    assert c.planned_rate(date(2027, 3, 1)) == 20_000
    assert c.planned_in_year(2025, date(2025, 1, 1), date(2029, 12, 31)) == 96_000
    assert c.planned_in_year(2026, date(2025, 1, 1), date(2029, 12, 31)) == 144_000
    # Only months within the plan's period count.
    assert c.planned_in_year(2029, date(2025, 1, 1), date(2029, 6, 30)) == 120_000
    assert c.planned_in_year(2030, date(2025, 1, 1), date(2029, 12, 31)) == 0


def test_shortfall_when_actual_falls_short_by_more_than_the_threshold() -> None:
    p = accepted()
    ok = report_progress(p, DEU, "unterluess-155", date(2026, 3, 15), 10_800, 0.1)
    assert (ok.month, ok.expected_output, ok.shortfall) == (date(2026, 3, 1), 12_000, False)
    short = report_progress(p, DEU, "unterluess-155", date(2026, 3, 1), 10_799, 0.1)
    assert short.shortfall
    with pytest.raises(Unprocessable):
        report_progress(p, DEU, "nope", date(2026, 3, 1), 1, 0.1)
    with pytest.raises(Unprocessable):
        report_progress(p, DEU, "unterluess-155", date(2031, 3, 1), 1, 0.1)
    with pytest.raises(Forbidden):
        report_progress(p, FRA, "unterluess-155", date(2026, 3, 1), 1, 0.1)
    with pytest.raises(IllegalTransition):
        report_progress(plan(), DEU, "unterluess-155", date(2026, 3, 1), 1, 0.1)


def test_who_sees_the_plan_at_each_step() -> None:
    d = plan()
    assert d.visible_to("DEU") and not d.visible_to("NATO")
    assert d.event_releasability() == Releasability(owner="DEU")
    s = d.submit(DEU, NOW)
    # NATO staff read what was submitted to NATO, whatever their role (only reviewers act on it).
    assert s.visible_to("NATO")
    assert not s.visible_to("FRA")
    assert s.event_releasability().marking() == "DEU,NATO"
    a = s.start_review(REVIEWER, NOW).accept(REVIEWER, NOW)
    assert a.visible_to("FRA") and not a.visible_to("UKR")
    assert a.event_releasability().marking() == "ALLIES"
    # Withdrawn straight from draft: NATO never learns of it.
    assert not d.withdraw(DEU, NOW).visible_to("NATO")
    assert d.withdraw(DEU, NOW).event_releasability() == Releasability(owner="DEU")
    assert s.withdraw(DEU, NOW).visible_to("NATO")


def test_capacity_figures_can_be_released_wider_than_the_plan() -> None:
    national = accepted(plan(scope=ReleasabilityScope.NATIONS))
    assert not national.visible_to("FRA")
    wider = national.release(
        DEU,
        Releasability(owner="DEU", scope=ReleasabilityScope.NATIONS, nations=("POL",)),
        Releasability(owner="DEU", scope=ReleasabilityScope.ALLIES_PARTNERS, nations=("UKR",)),
    )
    assert wider.visible_to("POL") and not wider.visible_to("FRA")
    assert wider.capacity_visible_to("FRA") and wider.capacity_visible_to("UKR")
    assert not wider.capacity_visible_to("JPN")
    assert wider.capacity_event_releasability().marking() == "ALLIES,UKR"
    # Before acceptance the capacity release changes nothing.
    d = plan().release(
        DEU, Releasability(owner="DEU"), Releasability(owner="DEU", scope=ReleasabilityScope.ALLIES)
    )
    assert not d.capacity_visible_to("FRA")
    with pytest.raises(IllegalTransition):
        plan().withdraw(DEU, NOW).release(DEU, Releasability(owner="DEU"), None)


def test_the_widest_release_is_the_union() -> None:
    a = Releasability(owner="DEU", scope=ReleasabilityScope.NATIONS, nations=("FRA",))
    b = Releasability(owner="DEU", scope=ReleasabilityScope.NATIONS, nations=("POL",))
    assert union("DEU", a, b).nations == ("FRA", "POL")
    assert union("DEU", a, Releasability(owner="DEU")) == a
    assert (
        union("DEU", a, Releasability(owner="DEU", scope=ReleasabilityScope.ALLIES)).scope
        is ReleasabilityScope.ALLIES
    )


def test_only_nato_staff_set_capability_targets() -> None:
    check_target_setter(REVIEWER)
    for who in (DEU, NATO_PLANNER_ONLY, UKR):
        with pytest.raises(Forbidden):
            check_target_setter(who)


@given(
    steps=st.lists(
        st.tuples(st.dates(date(2025, 1, 1), date(2029, 12, 31)), st.integers(0, 10_000)), max_size=6
    ),
    current=st.integers(0, 10_000),
    year=st.integers(2024, 2030),
    end=st.dates(date(2025, 1, 1), date(2029, 12, 31)),
)
def test_yearly_sum_equals_the_monthly_rates(
    steps: list[tuple[date, int]], current: int, year: int, end: date
) -> None:
    ramp = tuple(RampStep(on, out) for on, out in sorted(dict(steps).items()))
    c = commitment(ramp=ramp, current_per_month=current)
    start = date(2025, 3, 15)
    months = [
        date(year, m, 1)
        for m in range(1, 13)
        if date(year, m, 1) <= end and (date(year, m, 1).year, m) >= (start.year, start.month)
    ]
    assert c.planned_in_year(year, start, end) == sum(c.planned_rate(m) for m in months)


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        (date(2030, 1, 1), date(2029, 1, 1), "body.period_end"),
        (date(1900, 1, 1), date(1905, 1, 1), "body.period_start"),
        (date(2099, 1, 1), date(2101, 1, 1), "body.period_start"),
        (date(2000, 1, 1), date(2040, 1, 1), "body.period_end"),
    ],
)
def test_the_period_is_bounded(start: date, end: date, field: str) -> None:
    with pytest.raises(Unprocessable) as err:
        check_period(start, end)
    assert field in repr(err.value.extensions)
    check_period(date(2025, 1, 1), date(2029, 12, 31))
