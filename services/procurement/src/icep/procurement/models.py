"""The procurement service's tables (its own metadata: nothing of another service lives here).

An initiative and a supplier are each kept whole as a JSON `document` (the domain record, nested parts
and history included), with the columns searched, filtered and locked on beside it; `readers` holds the
reader tokens (`,ALLIES,DEU,`) so lists and aggregates filter by releasability in SQL. OCDS releases are
immutable rows, one per published change. The read models (`capacity_commitments`, `capacity_shortfalls`,
`ended_plans`, `known_standards`, `known_conformance`) are local copies built from other services' events.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from icep.platform.db import UtcDateTime
from icep.platform.tables import platform_tables


class ProcurementTable(SQLModel, registry=registry()):
    pass


metadata = ProcurementTable.metadata
tables = platform_tables(metadata)


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


class OcdsReleaseRow(ProcurementTable, table=True):
    """One OCDS release: immutable once written; `position` orders an ocid's releases."""

    __tablename__ = "ocds_releases"

    id: str = Field(primary_key=True, max_length=100)
    ocid: str = Field(index=True, max_length=64)
    position: int
    date: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    release: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class DemandSignalRow(ProcurementTable, table=True):
    __tablename__ = "demand_signals"

    id: str = Field(primary_key=True, max_length=36)
    nation: str = Field(index=True, max_length=8)
    product: str = Field(index=True, max_length=200)
    version: int
    readers: str = Field(default="", max_length=400)
    document: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class SupplierRow(ProcurementTable, table=True):
    __tablename__ = "suppliers"
    __table_args__ = (UniqueConstraint("nation", "organisation_id", name="uq_supplier_organisation"),)

    id: str = Field(primary_key=True, max_length=36)
    nation: str = Field(max_length=8)
    organisation_id: str = Field(max_length=100)
    #: `organisation_id` as compared (`domain.organisation_key`): blocks and duplicates ignore case.
    organisation_key: str = Field(index=True, max_length=100)
    name: str = Field(max_length=300)
    screening: str = Field(index=True, max_length=30)
    lists_version: str | None = Field(default=None, max_length=32)
    version: int
    readers: str = Field(default="", max_length=400)
    document: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class CapacityRow(ProcurementTable, table=True):
    """Read model: one capacity commitment of an accepted plan, its planned output per year."""

    __tablename__ = "capacity_commitments"

    plan_id: str = Field(primary_key=True, max_length=36)
    commitment_key: str = Field(primary_key=True, max_length=100)
    nation: str = Field(max_length=8)
    product: str = Field(index=True, max_length=200)
    unit: str = Field(max_length=50)
    plan_version: int
    yearly: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    #: The `releasableto` marking of the event it came from, and the reader tokens derived from it.
    releasable_to: str = Field(max_length=400)
    readers: str = Field(default="", max_length=400)
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class EndedPlanRow(ProcurementTable, table=True):
    """Read model: a plan superseded or withdrawn (for good), so a capacity commitment or shortfall of it
    arriving late (a redriven dead letter, a replay under a new event id) is not counted again."""

    __tablename__ = "ended_plans"

    plan_id: str = Field(primary_key=True, max_length=36)
    version: int
    ended_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class ShortfallRow(ProcurementTable, table=True):
    """Read model: a month's shortfall of a capacity commitment against its ramp, as the plans service last
    reported it (a later report of the same month replaces it)."""

    __tablename__ = "capacity_shortfalls"

    plan_id: str = Field(primary_key=True, max_length=36)
    commitment_key: str = Field(primary_key=True, max_length=100)
    month: date = Field(primary_key=True)
    nation: str = Field(max_length=8)
    product: str = Field(index=True, max_length=200)
    #: The commitment's unit, when its capacity is known here.
    unit: str | None = Field(default=None, max_length=50)
    planned_output: int
    actual_output: int
    shortfall: int
    plan_version: int
    #: When the plans service reported it (the event's time): an older report never replaces a newer one.
    reported_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    #: The `releasableto` marking of the event it came from, and the reader tokens derived from it.
    releasable_to: str = Field(max_length=400)
    readers: str = Field(default="", max_length=400)
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class KnownStandardRow(ProcurementTable, table=True):
    """Read model: a standard edition as the standards service last announced it."""

    __tablename__ = "known_standards"

    id: str = Field(primary_key=True, max_length=36)
    kind: str = Field(max_length=10)
    number: str = Field(index=True, max_length=40)
    edition: int
    status: str = Field(max_length=20)
    version: int
    #: The owner nation and `releasableto` marking of the event it came from, and the reader tokens.
    nation: str = Field(default="", max_length=8)
    releasable_to: str = Field(default="", max_length=400)
    readers: str = Field(default="", max_length=400)
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class KnownConformanceRow(ProcurementTable, table=True):
    """Read model: a product's conformance claim as the standards service last announced it, with who may
    read it (an award counts a claim only when every reader of the initiative may read it)."""

    __tablename__ = "known_conformance"

    claim_id: str = Field(primary_key=True, max_length=36)
    #: The product as the claim names it: its manufacturer and code.
    manufacturer: str = Field(default="", max_length=300)
    product_code: str = Field(index=True, max_length=100)
    standard_id: str = Field(max_length=36)
    level: str | None = Field(default=None, max_length=40)
    status: str = Field(max_length=20)
    expires_on: date | None = None
    version: int
    #: The owner nation and `releasableto` marking of the event it came from, and the reader tokens.
    nation: str = Field(default="", max_length=8)
    releasable_to: str = Field(default="", max_length=400)
    readers: str = Field(default="", max_length=400)
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
