"""Events published by the plans service on `icep.plans.events`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import ClassVar

from pydantic import Field

from icep.contracts.base import SAME_AS_AGGREGATE, Audience, EventPayload, MoneyAmount, Subject


class _CapacityEvent(EventPayload):
    """About a plan's capacity figures, which the owner may release more widely than the plan: so
    these events carry the figures and the plan's id and period, never its title or other content."""

    aggregate: ClassVar[str] = "plan"
    subject: ClassVar[Subject] = Subject(
        "{plan_id}",
        "/v1/plans/{plan_id}",
        note=(
            "A nation that reads the plan's capacity figures only (its wider capacity release) gets 404 "
            "there: it reads the figures in `GET /v1/capacity/summary`."
        ),
    )
    audience: ClassVar[Audience] = Audience.wider(
        "capacity figures",
        "the owner may release a plan's capacity figures (commitments, progress, shortfalls) more widely "
        "than the plan (`capacity_releasability`): they go to the plan's readers and that wider release",
    )

    plan_id: str
    nation: str
    period_start: date
    period_end: date
    version: int


class _PlanEvent(_CapacityEvent):
    audience: ClassVar[Audience] = SAME_AS_AGGREGATE
    subject: ClassVar[Subject] = Subject("{plan_id}", "/v1/plans/{plan_id}")

    title: str


class PlanCreated(_PlanEvent):
    event_type: ClassVar[str] = "icep.plans.plan.created.v1"

    created_by: str
    created_at: datetime


class PlanSubmitted(_PlanEvent):
    event_type: ClassVar[str] = "icep.plans.plan.submitted.v1"

    submitted_by: str
    submitted_at: datetime


class PlanReviewStarted(_PlanEvent):
    event_type: ClassVar[str] = "icep.plans.plan.review_started.v1"

    reviewer: str
    started_at: datetime


class PlanReturned(_PlanEvent):
    event_type: ClassVar[str] = "icep.plans.plan.returned.v1"

    returned_by: str
    returned_at: datetime
    reasons: list[str]


class PlanAccepted(_PlanEvent):
    event_type: ClassVar[str] = "icep.plans.plan.accepted.v1"

    accepted_by: str
    accepted_at: datetime
    commitments: int


class PlanWithdrawn(_PlanEvent):
    event_type: ClassVar[str] = "icep.plans.plan.withdrawn.v1"

    withdrawn_by: str
    withdrawn_at: datetime


class PlanSuperseded(_PlanEvent):
    event_type: ClassVar[str] = "icep.plans.plan.superseded.v1"

    #: The accepted newer version; absent when it is not released to everyone who may see this event.
    superseded_by: str | None
    superseded_at: datetime


class PlanReleased(_PlanEvent):
    """The owner changed who may see the plan (`releasable_to`) or its capacity figures."""

    event_type: ClassVar[str] = "icep.plans.plan.released.v1"

    released_by: str
    released_at: datetime
    #: Who may now read the plan, and its capacity figures, as STANAG 4774-style markings (the
    #: `releasableto` of the plan's events and of its capacity events), e.g. `ALLIES`, `DEU,FRA,NATO`.
    releasable_to: str
    capacity_releasable_to: str


class RampStepFigure(EventPayload):
    on: date
    output_per_month: int


class CapacityCommitted(_CapacityEvent):
    """One per commitment when a plan is accepted, with its figures."""

    event_type: ClassVar[str] = "icep.plans.capacity.committed.v1"

    commitment_key: str
    product: str
    capability_area: str
    site: str
    site_country: str
    unit: str
    baseline_per_month: int
    current_per_month: int
    target_per_month: int
    ramp: list[RampStepFigure]
    surge_per_month: int | None
    surge_days: int | None
    lead_time_days: int | None
    operator: str
    operator_is_sme: bool
    investment_amount: MoneyAmount | None
    investment_currency: str | None


class ProgressReported(_CapacityEvent):
    """A month's actual output against a commitment; a later report of the same month and commitment in
    the lineage corrects it (`revision` > 1, `previous_output` set): keep the latest per lineage, commitment
    and month."""

    event_type: ClassVar[str] = "icep.plans.progress.reported.v1"

    commitment_key: str
    product: str
    month: date
    actual_output: int
    planned_output: int
    reported_by: str
    reported_at: datetime
    lineage: str | None = Field(
        default=None,
        description="The plan lineage the actual belongs to, `<nation>/<period_start>/<period_end>`: the "
        "plans of one nation for one period. A newer accepted version keeps the lineage's actuals.",
    )
    revision: int = Field(
        default=1,
        description="The report's number in its month: 1 for the first report, then one more per correction",
    )
    previous_output: int | None = Field(
        default=None,
        description="On a correction, the figure it replaced; null on a month's first report",
    )


class ShortfallDetected(_CapacityEvent):
    """Actual output fell short of the ramp by more than the configured share."""

    event_type: ClassVar[str] = "icep.plans.shortfall.detected.v1"

    commitment_key: str
    product: str
    month: date
    actual_output: int
    planned_output: int
    shortfall: int
    threshold: float


class CapabilityTargetSet(EventPayload):
    """NATO recorded the Alliance requirement for a product in a year."""

    event_type: ClassVar[str] = "icep.plans.capability_target.set.v1"
    aggregate: ClassVar[str] = "capability_target"
    subject: ClassVar[Subject] = Subject("{target_id}", "/v1/capacity/targets/{target_id}")

    target_id: str
    capability_area: str
    product: str
    year: int
    required_quantity: int
    unit: str
    set_by: str
    set_at: datetime


def planned_in_year(
    current_per_month: int,
    ramp: Sequence[tuple[date, int]],
    period_start: date,
    period_end: date,
    year: int,
) -> int:
    """Planned output of a capacity commitment over the months of `year` within the plan's period: the
    current rate until the first ramp step, then each step's rate from its month on (steps in date order).

    The one reading of a commitment's ramp, shared by plans (the Alliance summary) and any consumer of
    `CapacityCommitted` (procurement's demand against capacity). Summed per ramp segment.
    """
    first = max(year * 12, _month_index(period_start))
    last = min(year * 12 + 11, _month_index(period_end))
    if last < first:
        return 0
    total, rate, cursor = 0, current_per_month, first
    for on, output_per_month in ramp:
        starts = _month_index(on)
        if starts > last:
            break
        if starts > cursor:
            total += rate * (starts - cursor)
            cursor = starts
        rate = output_per_month
    return total + rate * (last - cursor + 1)


def _month_index(day: date) -> int:
    return day.year * 12 + day.month - 1
