"""Progress reports: a month's actual output against a commitment of an accepted plan, in plain Python."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from icep.plans.plans.model import Actor, CapacityCommitment, NationalPlan, PlanStatus
from icep.platform.domain import Aggregate, DomainEvent, invalid
from icep.platform.errors import IllegalTransition


@dataclass(frozen=True, kw_only=True)
class ProgressReported(DomainEvent):
    by: str


@dataclass(frozen=True, kw_only=True)
class ShortfallDetected(DomainEvent):
    #: The shortfall threshold the report was measured with.
    threshold: float


@dataclass(frozen=True, kw_only=True)
class ProgressReport(Aggregate):
    """A month's report; a later report of the same month and commitment corrects it."""

    #: The plan (at the version the reporter read) whose commitment the report is measured against.
    plan: NationalPlan
    commitment: CapacityCommitment
    month: date
    actual_output: int
    expected_output: int
    shortfall: bool
    reported_by: str
    reported_at: datetime

    @property
    def plan_id(self) -> str:
        return self.plan.id

    @property
    def commitment_key(self) -> str:
        return self.commitment.key


def report_progress(
    plan: NationalPlan,
    actor: Actor,
    commitment_key: str,
    month: date,
    actual: int,
    threshold: float,
    now: datetime | None = None,
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
    at = now if now is not None else datetime.now(UTC)
    shortfall = actual < expected * (1 - threshold)
    reported: tuple[DomainEvent, ...] = (ProgressReported(by=actor.id, at=at),)
    if shortfall:
        reported += (ShortfallDetected(threshold=threshold, at=at),)
    return ProgressReport(
        plan=plan,
        commitment=commitment,
        month=first,
        actual_output=actual,
        expected_output=expected,
        shortfall=shortfall,
        reported_by=actor.id,
        reported_at=at,
        events=reported,
    )
