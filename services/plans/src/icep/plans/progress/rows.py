"""The table of progress reports."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column
from sqlmodel import Field

from icep.plans.rows import PlansTable
from icep.platform.db import UtcDateTime


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
