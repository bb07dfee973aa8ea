"""What the capability targets API takes and answers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from icep.plans.plans.schemas import Count, StrictIn


class TargetIn(StrictIn):
    capability_area: str = Field(min_length=1, max_length=100, examples=["munitions"])
    product: str = Field(min_length=1, max_length=200, examples=["155mm artillery round"])
    year: int = Field(ge=2000, le=2100)
    required_quantity: Count
    unit: str = Field(min_length=1, max_length=50, examples=["rounds"])


class TargetOut(BaseModel):
    id: str
    capability_area: str
    product: str
    year: int
    required_quantity: int
    unit: str
    set_by: str
    set_at: datetime
    version: int = Field(description="Bumped on each correction; the ETag a correction names in If-Match")


class TargetList(BaseModel):
    items: list[TargetOut]
