"""National plan rules, without web, database or Kafka."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icep.contracts import ReleasabilityScope
from icep.plans.plans.model import TRANSITIONS, Actor, NationalPlan, PlanStatus, next_status
from icep.platform.errors import Forbidden, IllegalTransition, Unprocessable

NOW = datetime(2026, 11, 28, tzinfo=UTC)
DEU_PLANNER = Actor("deu-planner", "DEU", frozenset({"planner"}))
FRA_PLANNER = Actor("fra-planner", "FRA", frozenset({"planner"}))
NATO_REVIEWER = Actor("nato-reviewer", "NATO", frozenset({"reviewer"}))


def draft(actor: Actor = DEU_PLANNER, scope: ReleasabilityScope = ReleasabilityScope.ALLIES) -> NationalPlan:
    return NationalPlan.draft(
        id="p1",
        actor=actor,
        title=" 155 mm ramp-up ",
        period_start=date(2025, 1, 1),
        period_end=date(2029, 12, 31),
        capability_areas=("munitions",),
        release_scope=scope,
        release_nations=(),
        now=NOW,
    )


def test_a_draft_belongs_to_the_planners_nation() -> None:
    plan = draft()
    assert (plan.nation, plan.status, plan.version, plan.title) == (
        "DEU",
        PlanStatus.DRAFT,
        1,
        "155 mm ramp-up",
    )
    assert plan.releasability.owner == "DEU"


@pytest.mark.parametrize("actor", [NATO_REVIEWER, Actor("deu-sub", "DEU", frozenset({"subscriber"}))])
def test_only_national_planners_draft(actor: Actor) -> None:
    with pytest.raises(Forbidden):
        draft(actor)


def test_period_must_not_run_backwards() -> None:
    with pytest.raises(Unprocessable):
        NationalPlan.draft(
            id="p",
            actor=DEU_PLANNER,
            title="t",
            period_start=date(2030, 1, 1),
            period_end=date(2029, 1, 1),
            capability_areas=(),
            release_scope=ReleasabilityScope.NATIONAL,
            release_nations=(),
            now=NOW,
        )


def test_submit_moves_draft_to_submitted_and_bumps_version() -> None:
    submitted = draft().submit(DEU_PLANNER, NOW)
    assert (
        submitted.status is PlanStatus.SUBMITTED and submitted.version == 2 and submitted.submitted_at == NOW
    )
    assert [h[0] for h in submitted.history] == ["draft", "submitted"]
    with pytest.raises(IllegalTransition) as err:
        submitted.submit(DEU_PLANNER, NOW)
    assert err.value.extensions["current_state"] == "submitted"


def test_another_nation_cannot_submit() -> None:
    with pytest.raises(Forbidden):
        draft().submit(FRA_PLANNER, NOW)


LIFE = [
    ("submit", PlanStatus.DRAFT, PlanStatus.SUBMITTED),
    ("start_review", PlanStatus.SUBMITTED, PlanStatus.UNDER_REVIEW),
    ("accept", PlanStatus.UNDER_REVIEW, PlanStatus.ACCEPTED),
    ("return", PlanStatus.SUBMITTED, PlanStatus.RETURNED),
    ("return", PlanStatus.UNDER_REVIEW, PlanStatus.RETURNED),
    ("redraft", PlanStatus.RETURNED, PlanStatus.DRAFT),
    ("withdraw", PlanStatus.DRAFT, PlanStatus.WITHDRAWN),
    ("withdraw", PlanStatus.SUBMITTED, PlanStatus.WITHDRAWN),
    ("supersede", PlanStatus.ACCEPTED, PlanStatus.SUPERSEDED),
]


@pytest.mark.parametrize(("action", "before", "after"), LIFE)
def test_the_plan_life_cycle(action: str, before: PlanStatus, after: PlanStatus) -> None:
    assert next_status(action, before) is after


@given(action=st.sampled_from(sorted({a for a, _, _ in LIFE})), state=st.sampled_from(list(PlanStatus)))
def test_every_other_move_is_illegal(action: str, state: PlanStatus) -> None:
    legal = {(a, b) for a, b, _ in LIFE}
    if (action, state) not in legal:
        with pytest.raises(IllegalTransition) as err:
            next_status(action, state)
        assert err.value.extensions["current_state"] == state.value


def test_terminal_states_have_no_way_out() -> None:
    for state in (PlanStatus.WITHDRAWN, PlanStatus.SUPERSEDED):
        assert not [a for (a, s) in TRANSITIONS if s is state]


def test_visibility_before_and_after_acceptance() -> None:
    plan = draft()
    assert not plan.event_releasability().allows("NATO")  # not even NATO learns of a draft
    assert plan.visible_to("DEU")
    assert not plan.visible_to("FRA")
    assert not plan.visible_to("NATO")  # a draft is the nation's own business
    submitted = plan.submit(DEU_PLANNER, NOW)
    assert submitted.visible_to("NATO")
    assert not submitted.visible_to("FRA")
    assert submitted.event_releasability().allows("NATO") and not submitted.event_releasability().allows(
        "FRA"
    )
