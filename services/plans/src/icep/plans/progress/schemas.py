"""What the progress API takes and answers."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from icep.plans.plans.schemas import Count, StrictIn
from icep.plans.progress.model import MonthHistory, ProgressReport

LINEAGE = (
    "The plan lineage the actuals belong to: the plans of one nation for one period, as "
    "`<nation>/<period_start>/<period_end>`; a newer accepted version keeps them"
)


class ProgressIn(StrictIn):
    month: date = Field(description="Any day of the month reported")
    actual_output: Count


class ProgressOut(BaseModel):
    plan_id: str
    commitment_key: str
    month: date
    actual_output: int
    planned_output: int
    shortfall: bool
    lineage: str = Field(description=LINEAGE)
    revision: int = Field(description="1 for the month's first report, then one more per correction")
    previous_output: int | None = Field(
        description="The figure this report corrected; null for the month's first report"
    )

    @classmethod
    def of(cls, p: ProgressReport) -> ProgressOut:
        return cls(
            plan_id=p.plan.id,
            commitment_key=p.commitment_key,
            month=p.month,
            actual_output=p.actual_output,
            planned_output=p.expected_output,
            shortfall=p.shortfall,
            lineage=p.lineage,
            revision=p.revision,
            previous_output=p.previous_output,
        )


class CorrectionOut(BaseModel):
    revision: int = Field(description="The report's number in the month: 2 for the first correction")
    previous_output: int = Field(description="The figure before this correction")
    actual_output: int = Field(description="The figure this correction set")
    corrected_by: str
    corrected_at: datetime
    plan_id: str = Field(description="The plan version the correction was reported against")


class MonthProgressOut(BaseModel):
    month: date
    actual_output: int = Field(description="The figure as it stands (its latest report)")
    planned_output: int = Field(description="The ramp's planned output of the month, when last reported")
    shortfall: bool
    plan_id: str = Field(description="The plan version the standing figure was reported against")
    reported_by: str = Field(description="Who reported the standing figure")
    reported_at: datetime
    first_reported_by: str
    first_reported_at: datetime
    corrections: list[CorrectionOut] = Field(description="Every correction of the month, oldest first")

    @classmethod
    def of(cls, m: MonthHistory) -> MonthProgressOut:
        return cls(
            month=m.month,
            actual_output=m.actual_output,
            planned_output=m.planned_output,
            shortfall=m.shortfall,
            plan_id=m.plan_id,
            reported_by=m.reported_by,
            reported_at=m.reported_at,
            first_reported_by=m.first_reported_by,
            first_reported_at=m.first_reported_at,
            corrections=[
                CorrectionOut(
                    revision=c.revision,
                    previous_output=c.previous_output,
                    actual_output=c.actual_output,
                    corrected_by=c.reported_by,
                    corrected_at=c.reported_at,
                    plan_id=c.plan_id,
                )
                for c in m.corrections
            ],
        )


class ProgressHistoryOut(BaseModel):
    plan_id: str
    lineage: str = Field(description=LINEAGE)
    commitment_key: str
    items: list[MonthProgressOut] = Field(description="The months reported, oldest first")
