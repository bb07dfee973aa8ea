"""The event log's tables: every consumed event in order, and how far the retention purge went."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field

from icep.notifications.tables import NotificationsTable
from icep.platform.db import UtcDateTime
from icep.platform.tables import BigId


class EventLogRow(NotificationsTable, table=True):
    """Every event the service consumed, in the order it was logged: the catch-up feed and the stream.

    `position` is the feed's cursor. It only grows, and rows commit in position order (see `log.append`),
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
    #: The capability areas and products the event's data names (`subscriptions.filters.event_terms`), as
    #: JSON lists: SQL narrows a filtered read with them, `SubscriptionFilters.accepts` decides.
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
