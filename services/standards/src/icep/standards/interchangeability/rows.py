"""The table of interchangeability clearances."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field

from icep.platform.db import UtcDateTime
from icep.standards.base import StandardsTable


class ClearanceRow(StandardsTable, table=True):
    """An interchangeability clearance: an item for a platform, for some nations, recorded by `owner`."""

    __tablename__ = "interchangeability"
    __table_args__ = (UniqueConstraint("owner", "item", "platform", name="uq_clearance"),)

    id: str = Field(primary_key=True, max_length=36)
    owner: str = Field(max_length=8)
    item: str = Field(index=True, max_length=200)
    platform: str = Field(index=True, max_length=200)
    nations: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(max_length=30)
    basis_kind: str = Field(max_length=20)
    basis_reference: str = Field(max_length=200)
    restrictions: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    version: int
    release_scope: str = Field(max_length=20)
    release_nations: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    readers: str = Field(default="", max_length=400)
    history: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
