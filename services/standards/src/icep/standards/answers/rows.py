"""The table of national answers."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field

from icep.standards.base import StandardsTable


class ResponseRow(StandardsTable, table=True):
    """A nation's answer to one standard edition; `history` keeps every change."""

    __tablename__ = "national_responses"

    standard_id: str = Field(primary_key=True, max_length=36)
    nation: str = Field(primary_key=True, max_length=8)
    status: str = Field(index=True, max_length=30)
    reservations: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    implementation_forecast: date | None = None
    implemented_on: date | None = None
    version: int
    readers: str = Field(default="", max_length=400)
    history: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
