"""The table of conformance claims."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field

from icep.standards.base import StandardsTable


class ConformanceRow(StandardsTable, table=True):
    """A product's claim of conformance to a standard edition (and level)."""

    __tablename__ = "conformance_claims"

    id: str = Field(primary_key=True, max_length=36)
    nation: str = Field(index=True, max_length=8)
    manufacturer: str = Field(max_length=200)
    product_code: str = Field(index=True, max_length=100)
    product_name: str = Field(max_length=200)
    standard_id: str = Field(index=True, max_length=36)
    level: str | None = Field(default=None, max_length=40)
    status: str = Field(index=True, max_length=20)
    evidence: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    #: Indexed: the expiry schedule looks for verified claims whose date has come.
    expires_on: date | None = Field(default=None, index=True)
    rejection_reason: str | None = Field(default=None, max_length=2000)
    version: int
    release_scope: str = Field(max_length=20)
    release_nations: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    readers: str = Field(default="", max_length=400)
    history: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
