"""The declarative base of the standards service's tables: its own registry, so its own metadata (nothing
of another service lives there)."""

from __future__ import annotations

from sqlalchemy.orm import registry
from sqlmodel import SQLModel


class StandardsTable(SQLModel, registry=registry()):
    pass


metadata = StandardsTable.metadata
