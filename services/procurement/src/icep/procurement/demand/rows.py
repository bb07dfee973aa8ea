"""The demand signals table: a signal kept whole as its JSON `document`, with its reader tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field

from icep.platform.db import UtcDateTime
from icep.procurement.tables import ProcurementTable


class DemandSignalRow(ProcurementTable, table=True):
    __tablename__ = "demand_signals"

    id: str = Field(primary_key=True, max_length=36)
    nation: str = Field(index=True, max_length=8)
    product: str = Field(index=True, max_length=200)
    version: int
    readers: str = Field(default="", max_length=400)
    document: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
