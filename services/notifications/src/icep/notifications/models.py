"""The notifications service's tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, DateTime, Index, Text, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from icep.platform.tables import platform_tables


class NotificationsTable(SQLModel, registry=registry()):
    pass


metadata = NotificationsTable.metadata
tables = platform_tables(metadata)


class SubscriptionRow(NotificationsTable, table=True):
    __tablename__ = "subscriptions"

    id: str = Field(primary_key=True, max_length=36)
    owner: str = Field(index=True, max_length=200)
    nation: str = Field(max_length=8)
    url: str = Field(max_length=2000)
    description: str = Field(default="", max_length=500)
    event_types: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(max_length=20)
    disabled_reason: str | None = Field(default=None, max_length=500)
    secret: str = Field(max_length=100)
    version: int
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class DeliveryRow(NotificationsTable, table=True):
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id", name="uq_delivery_event"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        # The dispatcher's "is an older delivery of this subscription and aggregate still pending?"
        Index("ix_deliveries_head", "subscription_id", "subject", "status", "id"),
    )

    id: str = Field(primary_key=True, max_length=36)
    subscription_id: str = Field(foreign_key="subscriptions.id", index=True, max_length=36)
    event_id: str = Field(max_length=36)
    event_type: str = Field(max_length=200)
    subject: str = Field(max_length=200)
    body: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(max_length=20)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    traceparent: str | None = Field(default=None, max_length=100)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    delivered_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class AttemptRow(NotificationsTable, table=True):
    __tablename__ = "delivery_attempts"

    id: str = Field(primary_key=True, max_length=36)
    delivery_id: str = Field(foreign_key="deliveries.id", index=True, max_length=36)
    attempted_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    status_code: int | None = None
    error: str | None = Field(default=None, sa_column=Column(Text))
    response_body: str | None = Field(default=None, sa_column=Column(Text))
    latency_ms: float
