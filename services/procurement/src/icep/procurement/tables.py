"""The procurement service's own table metadata: each aggregate's rows subclass `ProcurementTable`, so no
table of another service lives here; `models.py` gathers them all."""

from __future__ import annotations

from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from icep.platform.tables import platform_tables


class ProcurementTable(SQLModel, registry=registry()):
    pass


metadata = ProcurementTable.metadata
tables = platform_tables(metadata)
