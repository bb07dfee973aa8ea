"""Reporting progress: a month's actual output against a commitment of an accepted plan; and the history
of the months reported on a commitment (in its lineage: every version of the plan)."""

from __future__ import annotations

from datetime import date

from icep.plans.plans.model import Actor
from icep.plans.plans.repository import PlanRepository
from icep.plans.progress.model import MonthHistory, ProgressReport, report_progress
from icep.plans.progress.repository import ProgressRepository, month_histories, plan_of_capacity
from icep.platform.db import Database
from icep.platform.errors import NotFound
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
    reporter read: its commitment sets the planned output the report is measured against). A month the
    lineage already has a figure for is corrected: the report says which figure it replaces."""
    async with uow() as tx:
        plan = await PlanRepository(tx).get_for_update(actor, plan_id, expected_version)
        progress = ProgressRepository(tx)
        standing = await progress.standing(plan.lineage, commitment_key, month)
        report = report_progress(
            plan, actor, commitment_key, month, actual_output, threshold, utcnow(), standing
        )
        await progress.save(report)
    return report


async def progress_history(
    db: Database, actor: Actor, plan_id: str, commitment_key: str
) -> tuple[str, list[MonthHistory]]:
    """The plan's lineage and the months reported on the commitment in it, each with its corrections."""
    plan = await plan_of_capacity(db, actor, plan_id)
    months = await month_histories(db, plan.lineage, commitment_key)
    if not months and plan.content.commitment(commitment_key) is None:
        raise NotFound(f"plan {plan_id} has no commitment {commitment_key}")
    return plan.lineage, months
