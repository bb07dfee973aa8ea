"""The table of standard editions."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field

from icep.platform.db import UtcDateTime
from icep.standards.base import StandardsTable


class StandardRow(StandardsTable, table=True):
    """One edition of a NATO standard."""

    __tablename__ = "standards"
    __table_args__ = (UniqueConstraint("kind", "number", "edition", name="uq_standard_edition"),)

    id: str = Field(primary_key=True, max_length=36)
    kind: str = Field(max_length=10)
    number: str = Field(index=True, max_length=40)
    edition: int
    title: str = Field(max_length=400)
    covering_publications: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    domain: str = Field(max_length=100)
    capability_areas: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    levels: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(index=True, max_length=20)
    version: int
    supersedes: str | None = Field(default=None, max_length=36)
    superseded_by: str | None = Field(default=None, max_length=36)
    promulgated_on: date | None = None
    cancellation_reason: str | None = Field(default=None, max_length=2000)
    release_scope: str = Field(max_length=20)
    release_nations: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    readers: str = Field(default="", max_length=400)
    history: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
