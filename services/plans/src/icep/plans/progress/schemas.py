"""What the progress API takes and answers."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from icep.plans.plans.schemas import Count, StrictIn


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
