"""The tables of national plans: the plan as it is now, and every version it had."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field

from icep.plans.rows import PlansTable
from icep.platform.db import UtcDateTime


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
