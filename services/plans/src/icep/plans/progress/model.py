"""Progress reports: a month's actual output against a commitment of an accepted plan, in plain Python.

Actuals belong to the plan's lineage (`NationalPlan.lineage`: its nation and period) and the commitment's
key, not to one version of the plan: when a newer version is accepted, what was reported stays. A month
reported again is a correction: the new figure stands, and every report before it is kept with who made
it, when, and the figure it replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from icep.plans.plans.model import Actor, CapacityCommitment, NationalPlan, PlanStatus
from icep.platform.domain import Aggregate, DomainEvent, invalid
from icep.platform.errors import IllegalTransition


@dataclass(frozen=True, kw_only=True)
class ProgressReported(DomainEvent):
    by: str
    #: The figure this report corrects (None: the month's first report) and the report's number.
    previous_output: int | None = None
    revision: int = 1


@dataclass(frozen=True, kw_only=True)
class ShortfallDetected(DomainEvent):
    #: The shortfall threshold the report was measured with.
    threshold: float


@dataclass(frozen=True)
class StandingFigure:
    """A month's figure as it stands in the lineage: its latest report."""

    actual_output: int
    revision: int


@dataclass(frozen=True, kw_only=True)
class ProgressReport(Aggregate):
    """A month's report; a later report of the same month and commitment in the lineage corrects it."""

    #: The plan (at the version the reporter read) whose commitment the report is measured against.
    plan: NationalPlan
    commitment: CapacityCommitment
    month: date
    actual_output: int
    expected_output: int
    shortfall: bool
    reported_by: str
    reported_at: datetime
    #: 1 for the month's first report, then one more per correction.
    revision: int = 1
    #: The figure a correction replaced; None for a first report.
    previous_output: int | None = None

    @property
    def plan_id(self) -> str:
        return self.plan.id

    @property
    def lineage(self) -> str:
        return self.plan.lineage

    @property
    def commitment_key(self) -> str:
        return self.commitment.key

    @property
    def is_correction(self) -> bool:
        return self.revision > 1


def report_progress(
    plan: NationalPlan,
    actor: Actor,
    commitment_key: str,
    month: date,
    actual: int,
    threshold: float,
    now: datetime | None = None,
    standing: StandingFigure | None = None,
) -> ProgressReport:
    """The owner reports actual output of a month; a shortfall when actual < expected * (1 - threshold).
    `standing` is the month's figure in the lineage so far: the report then corrects it."""
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
    revision = 1 if standing is None else standing.revision + 1
    previous = None if standing is None else standing.actual_output
    reported: tuple[DomainEvent, ...] = (
        ProgressReported(by=actor.id, at=at, previous_output=previous, revision=revision),
    )
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
        revision=revision,
        previous_output=previous,
        events=reported,
    )


# --- the history of a month ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Correction:
    """A later report of a month: who changed the figure, when, from what to what."""

    revision: int
    previous_output: int
    actual_output: int
    reported_by: str
    reported_at: datetime
    plan_id: str


@dataclass(frozen=True)
class MonthHistory:
    """A month of a commitment in a lineage: the figure as it stands, its first report, its corrections."""

    month: date
    actual_output: int
    planned_output: int
    shortfall: bool
    plan_id: str
    reported_by: str
    reported_at: datetime
    first_reported_by: str
    first_reported_at: datetime
    corrections: tuple[Correction, ...]
