"""The plans service's tables (its own metadata: nothing of another service lives here)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

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
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    submitted_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    history: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
