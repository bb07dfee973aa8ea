"""The tables of progress: the figure of each month as it stands, and every report that made it."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column
from sqlmodel import Field

from icep.plans.rows import PlansTable
from icep.platform.db import UtcDateTime


class ProgressActualRow(PlansTable, table=True):
    """Actual output of one month against one commitment of a plan lineage, as it stands (its latest
    report). Keyed by the lineage, not the plan version, so a newer accepted version keeps it; the
    commitment's product, area and unit are kept so the Alliance picture groups it without the plan."""

    __tablename__ = "progress_actuals"

    lineage: str = Field(primary_key=True, max_length=60)
    commitment_key: str = Field(primary_key=True, max_length=100)
    month: date = Field(primary_key=True)
    nation: str = Field(max_length=8)
    #: The plan version the standing figure was reported against.
    plan_id: str = Field(max_length=36)
    product: str = Field(index=True, max_length=200)
    capability_area: str = Field(max_length=100)
    unit: str = Field(max_length=50)
    actual_output: int
    planned_output: int
    shortfall: bool
    #: How many reports the month had: 1, then one more per correction.
    revision: int
    reported_by: str = Field(max_length=200)
    reported_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class ProgressRevisionRow(PlansTable, table=True):
    """Every report of a month, kept (append-only): the first, then each correction with the figure it
    replaced."""

    __tablename__ = "progress_revisions"

    lineage: str = Field(primary_key=True, max_length=60)
    commitment_key: str = Field(primary_key=True, max_length=100)
    month: date = Field(primary_key=True)
    revision: int = Field(primary_key=True)
    plan_id: str = Field(max_length=36)
    actual_output: int
    planned_output: int
    previous_output: int | None = None
    shortfall: bool
    reported_by: str = Field(max_length=200)
    reported_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
