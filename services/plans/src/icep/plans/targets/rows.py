"""The table of capability targets."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, UniqueConstraint
from sqlmodel import Field

from icep.plans.rows import PlansTable
from icep.platform.db import UtcDateTime


class CapabilityTargetRow(PlansTable, table=True):
    """NATO's Alliance requirement for a product in a year."""

    __tablename__ = "capability_targets"
    __table_args__ = (UniqueConstraint("capability_area", "product", "year", name="uq_capability_target"),)

    id: str = Field(primary_key=True, max_length=36)
    capability_area: str = Field(max_length=100)
    product: str = Field(index=True, max_length=200)
    year: int
    required_quantity: int
    unit: str = Field(max_length=50)
    set_by: str = Field(max_length=200)
    set_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    #: Bumped on each correction: the `ETag` a change must name in `If-Match`.
    version: int = 1
