"""The base of the notifications service's tables: one metadata of its own, and the platform's tables
(outbox, inbox, dead letters, ...) in it. Every aggregate's row classes derive from `NotificationsTable`."""

from __future__ import annotations

from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from icep.platform.tables import platform_tables


class NotificationsTable(SQLModel, registry=registry()):
    pass


metadata = NotificationsTable.metadata
tables = platform_tables(metadata)
