"""The standards service's tables (its own metadata: nothing of another service lives here).

Each table keeps the domain record whole (history as JSON) plus the columns searched and filtered in
SQL; `readers` holds the reader tokens (`,ALLIES,DEU,`) so lists filter by releasability in the query.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from icep.platform.db import UtcDateTime
from icep.platform.tables import platform_tables


class StandardsTable(SQLModel, registry=registry()):
    pass


metadata = StandardsTable.metadata
tables = platform_tables(metadata)


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
