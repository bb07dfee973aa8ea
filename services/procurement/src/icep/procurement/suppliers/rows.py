"""The suppliers table: a supplier kept whole as its JSON `document`, with the columns searched on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field

from icep.platform.db import UtcDateTime
from icep.procurement.tables import ProcurementTable


class SupplierRow(ProcurementTable, table=True):
    __tablename__ = "suppliers"
    __table_args__ = (UniqueConstraint("nation", "organisation_id", name="uq_supplier_organisation"),)

    id: str = Field(primary_key=True, max_length=36)
    nation: str = Field(max_length=8)
    organisation_id: str = Field(max_length=100)
    #: `organisation_id` as compared (`model.organisation_key`): blocks and duplicates ignore case.
    organisation_key: str = Field(index=True, max_length=100)
    name: str = Field(max_length=300)
    screening: str = Field(index=True, max_length=30)
    lists_version: str | None = Field(default=None, max_length=32)
    version: int
    readers: str = Field(default="", max_length=400)
    document: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
