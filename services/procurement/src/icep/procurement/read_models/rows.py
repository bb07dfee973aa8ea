"""The read models' tables, built from the plans and standards services' events."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field

from icep.platform.db import UtcDateTime
from icep.procurement.tables import ProcurementTable


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
