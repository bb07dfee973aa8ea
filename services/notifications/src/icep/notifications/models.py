"""The notifications service's tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, Index, Integer, Text, UniqueConstraint, text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from icep.platform.db import UtcDateTime
from icep.platform.secrets import Sealed
from icep.platform.tables import BigId, platform_tables


class NotificationsTable(SQLModel, registry=registry()):
    pass


metadata = NotificationsTable.metadata
tables = platform_tables(metadata)
#: A sealed `whsec_` secret (50 characters) is about 180; room for a longer secret or a newer format.
SEALED_SECRET_LENGTH = 400


class SubscriptionRow(NotificationsTable, table=True):
    __tablename__ = "subscriptions"

    id: str = Field(primary_key=True, max_length=36)
    owner: str = Field(index=True, max_length=200)
    nation: str = Field(max_length=8)
    url: str = Field(max_length=2000)
    description: str = Field(default="", max_length=500)
    event_types: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    #: Filters besides the event types (empty: any): owning nations, capability areas, products.
    nations: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default=text("'[]'"))
    )
    capability_areas: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default=text("'[]'"))
    )
    products: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default=text("'[]'"))
    )
    status: str = Field(max_length=20)
    disabled_reason: str | None = Field(default=None, max_length=500)
    #: Sealed at rest (`icep.platform.secrets`): the database holds `icep-sealed:v1:...`, never `whsec_`.
    secret: str = Field(sa_column=Column(Sealed(SEALED_SECRET_LENGTH), nullable=False))
    #: After a rotation the previous secret also signs, until it expires (the grace period). Sealed too.
    previous_secret: str | None = Field(default=None, sa_column=Column(Sealed(SEALED_SECRET_LENGTH)))
    previous_secret_expires_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    version: int
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    #: When the current run of failed attempts began (None while answers come): it is disabled when
    #: that lasts longer than `disable_after_failing_seconds`.
    failing_since: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))


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


class EventLogRow(NotificationsTable, table=True):
    """Every event the service consumed, in the order it was logged: the catch-up feed and the stream.

    `position` is the feed's cursor. It only grows, and rows commit in position order (see `feed.append`),
    so a reader that has seen position N never later finds a new row below N. AUTOINCREMENT on SQLite, so
    a position is never handed out twice, not even after a purge emptied the table.
    """

    __tablename__ = "event_log"
    __table_args__ = (
        UniqueConstraint("event_id", name="uq_event_log_event_id"),
        Index("ix_event_log_recorded_at", "recorded_at"),
        {"sqlite_autoincrement": True},
    )

    position: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    event_id: str = Field(max_length=36)
    event_type: str = Field(max_length=200)
    subject: str = Field(max_length=200)
    nation: str = Field(max_length=8)
    releasable_to: str = Field(max_length=400)
    #: The event's reader tokens, encoded (`,ALLIES,DEU,`), so entitlement is a SQL condition.
    readers: str = Field(max_length=400)
    #: The capability areas and products the event's data names (`domain.event_terms`), as JSON lists:
    #: SQL narrows a filtered read with them, `SubscriptionFilters.accepts` decides.
    capability_areas: str = Field(sa_column=Column(Text, nullable=False))
    products: str = Field(sa_column=Column(Text, nullable=False))
    #: The event as subscribers see it (`ReceivedEvent.body()`), JSON.
    body: str = Field(sa_column=Column(Text, nullable=False))
    recorded_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class EventLogHorizonRow(NotificationsTable, table=True):
    """The highest position the retention purge removed (one row): a cursor below it is gone."""

    __tablename__ = "event_log_horizon"

    id: int = Field(primary_key=True)
    purged_through: int = Field(sa_column=Column(BigId, nullable=False))
    purged_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
