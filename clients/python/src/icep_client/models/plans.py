"""National plans, their progress reports and the Alliance capacity picture."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import ConfigDict, Field

from icep_client.models.base import IcepModel, Versioned

__all__ = [
    "Correction",
    "MonthProgress",
    "Plan",
    "PlanReleasability",
    "Progress",
    "ProgressHistory",
    "SummaryLine",
    "Timeline",
    "TimelinePoint",
    "TimelineSeries",
    "YearRequirement",
]


class PlanReleasability(IcepModel):
    __schema__ = "PlanReleasabilityOut"
    scope: str
    nations: list[str]


class Plan(Versioned):
    """A national plan: `status` is draft, submitted, under_review, accepted, returned, withdrawn or
    superseded."""

    __schema__ = "PlanOut"
    id: str
    nation: str
    title: str
    period_start: date
    period_end: date
    capability_areas: list[str]
    releasability: PlanReleasability
    capacity_releasability: PlanReleasability | None
    status: str
    created_by: str
    created_at: datetime
    submitted_at: datetime | None
    returned_reasons: list[str]
    superseded_by: str | None
    content: dict[str, Any]


class Progress(IcepModel):
    __schema__ = "PlansProgressOut"
    plan_id: str
    commitment_key: str
    month: date
    actual_output: int
    planned_output: int
    shortfall: bool
    #: The plan lineage (`<nation>/<period_start>/<period_end>`) the actuals belong to.
    lineage: str
    #: 1 for the month's first report, then one more per correction.
    revision: int
    #: The figure this report corrected; None for the month's first report.
    previous_output: int | None


class SummaryLine(IcepModel):
    """One line of the Alliance capacity summary: a product in a year."""

    __schema__ = "SummaryLineOut"
    capability_area: str
    product: str
    unit: str
    year: int
    requirement: int | None
    committed: int
    actual: int | None
    actual_through: date | None
    gap: int | None
    nations: list[str]
    commitments: int


class Correction(IcepModel):
    """A later report of a month that changed its figure: who, when, and the figure before."""

    __schema__ = "CorrectionOut"
    revision: int
    plan_id: str
    actual_output: int
    previous_output: int
    corrected_by: str
    corrected_at: datetime


class MonthProgress(IcepModel):
    """A reported month of a commitment: the figure that stands, who first reported it, its corrections."""

    __schema__ = "MonthProgressOut"
    month: date
    actual_output: int
    planned_output: int
    shortfall: bool
    plan_id: str
    reported_by: str
    reported_at: datetime
    first_reported_by: str
    first_reported_at: datetime
    corrections: list[Correction]


class ProgressHistory(IcepModel):
    """Every month reported against a commitment, across the versions of the plan's lineage."""

    __schema__ = "ProgressHistoryOut"
    plan_id: str
    commitment_key: str
    lineage: str
    items: list[MonthProgress]


class YearRequirement(IcepModel):
    __schema__ = "YearRequirementOut"
    year: int
    required_quantity: int


class TimelinePoint(IcepModel):
    """One month: the requirement as a monthly rate, the committed ramp and the reported actuals."""

    __schema__ = "TimelinePointOut"
    month: str
    requirement: float | None
    committed: int | None
    actual: int | None
    reports: int


class TimelineSeries(IcepModel):
    """A product month by month, over every nation the caller may see (`nation` None) or one nation."""

    __schema__ = "TimelineSeriesOut"
    capability_area: str
    product: str
    unit: str
    nation: str | None
    requirements: list[YearRequirement]
    points: list[TimelinePoint]


class Timeline(IcepModel):
    """`GET /v1/capacity/timeline`: the months asked for (`YYYY-MM`) and a series per product and nation."""

    __schema__ = "TimelineOut"
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)
    first: str = Field(alias="from")
    last: str = Field(alias="to")
    series: list[TimelineSeries]
