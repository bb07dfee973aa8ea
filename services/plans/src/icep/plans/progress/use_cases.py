"""Reporting progress: a month's actual output against a commitment of an accepted plan."""

from __future__ import annotations

from datetime import date

from icep.plans.plans.model import Actor
from icep.plans.plans.repository import PlanRepository
from icep.plans.progress.model import ProgressReport, report_progress
from icep.plans.progress.repository import ProgressRepository
from icep.platform.events import utcnow
from icep.platform.outbox import UnitOfWorkFactory


async def record_progress(
    uow: UnitOfWorkFactory,
    actor: Actor,
    plan_id: str,
    commitment_key: str,
    month: date,
    actual_output: int,
    threshold: float,
    expected_version: int | None = None,
) -> ProgressReport:
    """Report a month's output against a commitment of the plan at `expected_version` (the plan the
    reporter read: its commitment sets the planned output the report is measured against)."""
    async with uow() as tx:
        plan = await PlanRepository(tx).get_for_update(actor, plan_id, expected_version)
        report = report_progress(plan, actor, commitment_key, month, actual_output, threshold, utcnow())
        await ProgressRepository(tx).save(report)
    return report
