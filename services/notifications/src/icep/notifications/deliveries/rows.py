"""The tables of deliveries and their attempts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Integer, Text, UniqueConstraint, text
from sqlmodel import Field

from icep.notifications.tables import NotificationsTable
from icep.platform.db import UtcDateTime


class DeliveryRow(NotificationsTable, table=True):
    __tablename__ = "deliveries"
    __table_args__ = (
        # One delivery per event and subscription, and one more per replay of it.
        UniqueConstraint("subscription_id", "event_id", "generation", name="uq_delivery_event_generation"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        # The dispatcher's "is an older delivery of this subscription and aggregate still pending?"
        Index("ix_deliveries_head", "subscription_id", "subject", "status", "id"),
        # Listing a subscription's deliveries by status, newest first.
        Index("ix_deliveries_listing", "subscription_id", "status", "id"),
    )

    id: str = Field(primary_key=True, max_length=36)
    subscription_id: str = Field(foreign_key="subscriptions.id", index=True, max_length=36)
    event_id: str = Field(max_length=36)
    event_type: str = Field(max_length=200)
    subject: str = Field(max_length=200)
    body: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(max_length=20)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    traceparent: str | None = Field(default=None, max_length=100)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    delivered_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    #: 0 for the delivery made when the event came; n for its n-th replay (a new row, the same event id).
    generation: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default=text("0")))
    #: The delivery a replay sends again.
    replay_of: str | None = Field(default=None, max_length=36)
    #: Someone asked for one more attempt now (`redeliver`): it is one attempt, not a new retry schedule.
    redelivery_requested_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))


class AttemptRow(NotificationsTable, table=True):
    __tablename__ = "delivery_attempts"

    id: str = Field(primary_key=True, max_length=36)
    delivery_id: str = Field(foreign_key="deliveries.id", index=True, max_length=36)
    attempted_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    status_code: int | None = None
    error: str | None = Field(default=None, sa_column=Column(Text))
    response_body: str | None = Field(default=None, sa_column=Column(Text))
    latency_ms: float
