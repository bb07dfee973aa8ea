"""The initiatives table: an initiative kept whole as its JSON `document`, with the columns searched,
filtered and locked on beside it, and `readers` (reader tokens) for releasability in SQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field

from icep.platform.db import UtcDateTime
from icep.procurement.tables import ProcurementTable


class InitiativeRow(ProcurementTable, table=True):
    __tablename__ = "initiatives"

    id: str = Field(primary_key=True, max_length=36)
    ocid: str = Field(unique=True, max_length=64)
    lead_nation: str = Field(index=True, max_length=8)
    title: str = Field(max_length=300)
    product: str = Field(index=True, max_length=200)
    capability_area: str = Field(max_length=100)
    status: str = Field(index=True, max_length=30)
    version: int
    readers: str = Field(default="", max_length=400)
    document: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
