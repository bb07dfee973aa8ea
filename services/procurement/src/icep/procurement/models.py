"""The procurement service's tables (its own metadata: nothing of another service lives here).

An initiative and a supplier are each kept whole as a JSON `document` (the domain record, nested parts
and history included), with the columns searched, filtered and locked on beside it; `readers` holds the
reader tokens (`,ALLIES,DEU,`) so lists and aggregates filter by releasability in SQL. OCDS releases are
immutable rows, one per published change. The read models (`capacity_commitments`, `capacity_shortfalls`,
`ended_plans`, `known_standards`, `known_conformance`) are local copies built from other services' events.
"""

from __future__ import annotations

from icep.procurement.demand.rows import DemandSignalRow
from icep.procurement.initiatives.rows import InitiativeRow
from icep.procurement.ocds.rows import OcdsReleaseRow
from icep.procurement.read_models.rows import (
    CapacityRow,
    EndedPlanRow,
    KnownConformanceRow,
    KnownStandardRow,
    ShortfallRow,
)
from icep.procurement.suppliers.rows import SupplierRow
from icep.procurement.tables import ProcurementTable, metadata, tables

#: Every table of the service, each aggregate's from its own folder: importing this module is what puts
#: them all in `metadata` (the migrations' target).
__all__ = [
    "CapacityRow",
    "DemandSignalRow",
    "EndedPlanRow",
    "InitiativeRow",
    "KnownConformanceRow",
    "KnownStandardRow",
    "OcdsReleaseRow",
    "ProcurementTable",
    "ShortfallRow",
    "SupplierRow",
    "metadata",
    "tables",
]
