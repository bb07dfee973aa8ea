"""The plans service's tables (its own metadata: nothing of another service lives here)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from icep.platform.db import UtcDateTime
from icep.platform.tables import platform_tables


class PlansTable(SQLModel, registry=registry()):
    pass


metadata = PlansTable.metadata
tables = platform_tables(metadata)


class PlanRow(PlansTable, table=True):
    __tablename__ = "plans"

    id: str = Field(primary_key=True, max_length=36)
    nation: str = Field(index=True, max_length=8)
    title: str = Field(max_length=300)
    period_start: date
    period_end: date
    capability_areas: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    release_scope: str = Field(max_length=20)
    release_nations: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(index=True, max_length=20)
    version: int
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    submitted_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    history: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    content: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    capacity_scope: str | None = Field(default=None, max_length=20)
    capacity_nations: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    returned_reasons: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    superseded_by: str | None = Field(default=None, max_length=36)
    #: Reader tokens (`,DEU,ALLIES,NATO:reviewer,`), kept by the domain, so lists filter in SQL.
    readers: str = Field(default="", max_length=400)
    capacity_readers: str = Field(default="", max_length=400)


class PlanVersionRow(PlansTable, table=True):
    """Every version of every plan, as the API showed it: nothing is overwritten silently."""

    __tablename__ = "plan_versions"

    plan_id: str = Field(primary_key=True, max_length=36)
    version: int = Field(primary_key=True)
    snapshot: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    recorded_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class ProgressRow(PlansTable, table=True):
    """Actual output of one month against one commitment; a later report of the month corrects it."""

    __tablename__ = "progress_reports"

    plan_id: str = Field(primary_key=True, max_length=36)
    commitment_key: str = Field(primary_key=True, max_length=100)
    month: date = Field(primary_key=True)
    actual_output: int
    planned_output: int
    shortfall: bool
    reported_by: str = Field(max_length=200)
    reported_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


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
