"""The standards service's tables, gathered from every aggregate into one metadata (the migrations read it).

Each table keeps the domain record whole (history as JSON) plus the columns searched and filtered in
SQL; `readers` holds the reader tokens (`,ALLIES,DEU,`) so lists filter by releasability in the query.
"""

from __future__ import annotations

from icep.platform.tables import platform_tables
from icep.standards.answers.rows import ResponseRow
from icep.standards.base import StandardsTable, metadata
from icep.standards.conformance.rows import ConformanceRow
from icep.standards.interchangeability.rows import ClearanceRow
from icep.standards.standards.rows import StandardRow

tables = platform_tables(metadata)

__all__ = [
    "ClearanceRow",
    "ConformanceRow",
    "ResponseRow",
    "StandardRow",
    "StandardsTable",
    "metadata",
    "tables",
]
