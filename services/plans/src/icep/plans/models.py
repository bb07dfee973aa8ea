"""The plans service's tables (its own metadata: nothing of another service lives here).

Each aggregate keeps its table classes in its own folder (`plans/rows.py`, ...); importing them here puts
them all in one metadata, the one migrations/env.py and the app use."""

from __future__ import annotations

from icep.plans.plans.rows import PlanRow, PlanVersionRow
from icep.plans.progress.rows import ProgressActualRow, ProgressRevisionRow
from icep.plans.rows import PlansTable
from icep.plans.targets.rows import CapabilityTargetRow
from icep.platform.tables import platform_tables

__all__ = [
    "CapabilityTargetRow",
    "PlanRow",
    "PlanVersionRow",
    "PlansTable",
    "ProgressActualRow",
    "ProgressRevisionRow",
    "metadata",
    "tables",
]

metadata = PlansTable.metadata
tables = platform_tables(metadata)
