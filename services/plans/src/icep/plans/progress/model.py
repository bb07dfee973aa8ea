"""Progress reports: a month's actual output against a commitment of an accepted plan, in plain Python."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from icep.plans.plans.model import Actor, NationalPlan, PlanStatus
from icep.platform.domain import invalid
from icep.platform.errors import IllegalTransition


@dataclass(frozen=True)
class ProgressReport:
    plan_id: str
    commitment_key: str
    month: date
    actual_output: int
    expected_output: int
    shortfall: bool


def report_progress(
    plan: NationalPlan, actor: Actor, commitment_key: str, month: date, actual: int, threshold: float
) -> ProgressReport:
    """The owner reports actual output of a month; a shortfall when actual < expected * (1 - threshold)."""
    plan._check_owner_planner(actor, "report progress on")
    if plan.status is not PlanStatus.ACCEPTED:
        raise IllegalTransition("plan", "report progress on", plan.status.value)
    commitment = plan.content.commitment(commitment_key)
    if commitment is None:
        raise invalid("path.commitment_key", f"the plan has no commitment {commitment_key!r}")
    if actual < 0:
        raise invalid("body.actual_output", "actual output cannot be negative")
    first = month.replace(day=1)
    if not plan.period_start.replace(day=1) <= first <= plan.period_end:
        raise invalid("body.month", "the month lies outside the plan's period")
    expected = commitment.planned_rate(first)
    return ProgressReport(
        plan_id=plan.id,
        commitment_key=commitment_key,
        month=first,
        actual_output=actual,
        expected_output=expected,
        shortfall=actual < expected * (1 - threshold),
    )
