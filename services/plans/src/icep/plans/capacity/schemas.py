"""What the capacity summary and dependencies answer."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field


class SummaryLineOut(BaseModel):
    capability_area: str
    product: str
    unit: str
    year: int
    requirement: int | None
    committed: int
    actual: int | None
    actual_through: date | None
    gap: int | None = Field(description="requirement - committed; positive means not yet covered")
    nations: list[str]
    commitments: int


class SummaryOut(BaseModel):
    items: list[SummaryLineOut]


class DependencyOut(BaseModel):
    input: str
    category: str
    commitments: int
    single_sourced: int
    by_country: dict[str, int]
    dependents: list[dict[str, str]]


class DependenciesOut(BaseModel):
    items: list[DependencyOut]


class TimelinePointOut(BaseModel):
    month: str = Field(description="The month, `YYYY-MM`", examples=["2026-03"])
    requirement: float | None = Field(
        description="The Alliance requirement as a monthly rate: the year's capability target / 12 (the "
        "yearly figures are in the series' `requirements`); null without a target for the year, and on a "
        "nation's series (targets are Alliance-wide)"
    )
    committed: int | None = Field(
        description="Planned output of the month: the ramps of the commitments of each lineage's accepted "
        "plan (`planned_rate`); null when no accepted plan covers the month"
    )
    actual: int | None = Field(
        description="Reported output of the month: the sum of each commitment's latest (corrected) figure; "
        "null when nothing was reported"
    )
    reports: int = Field(description="How many commitments' reports `actual` sums")


class YearRequirementOut(BaseModel):
    year: int
    required_quantity: int = Field(description="The capability target for the year, as NATO set it")


class TimelineSeriesOut(BaseModel):
    capability_area: str
    product: str
    unit: str
    nation: str | None = Field(
        description="null: every nation whose capacity figures you may see, with the requirement; else "
        "that nation's figures alone"
    )
    requirements: list[YearRequirementOut]
    points: list[TimelinePointOut]


class TimelineOut(BaseModel):
    from_: str = Field(serialization_alias="from", description="The first month, `YYYY-MM`")
    to: str = Field(description="The last month, `YYYY-MM`")
    series: list[TimelineSeriesOut] = Field(
        description="Per product (ordered by capability area and product): the series over every nation "
        "you may see, then one per nation"
    )
