"""OCDS releases as stored: immutable rows, one per published change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field

from icep.platform.db import UtcDateTime
from icep.procurement.tables import ProcurementTable


class OcdsReleaseRow(ProcurementTable, table=True):
    """One OCDS release: immutable once written; `position` orders an ocid's releases."""

    __tablename__ = "ocds_releases"

    id: str = Field(primary_key=True, max_length=100)
    ocid: str = Field(index=True, max_length=64)
    position: int
    date: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    release: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
