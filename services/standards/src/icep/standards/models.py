"""The standards service's tables: for now only the platform's outbox and inbox."""

from __future__ import annotations

from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from icep.platform.tables import platform_tables


class StandardsTable(SQLModel, registry=registry()):
    pass


metadata = StandardsTable.metadata
tables = platform_tables(metadata)
