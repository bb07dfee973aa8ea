"""Reporting progress: a month's actual output against a commitment of an accepted plan."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from icep.contracts.plans import ProgressReported, ShortfallDetected
from icep.plans.events import capacity_fields, publish
from icep.plans.plans.model import Actor, NationalPlan
from icep.plans.plans.repository import load_for_update, to_domain
from icep.plans.progress.model import report_progress
from icep.plans.progress.rows import ProgressRow
from icep.platform.domain import check_version
from icep.platform.events import utcnow
from icep.platform.outbox import UnitOfWorkFactory


@dataclass(frozen=True)
class Progress:
    plan: NationalPlan
    commitment_key: str
    month: date
    actual_output: int
    planned_output: int
    shortfall: bool


async def record_progress(
    uow: UnitOfWorkFactory,
    actor: Actor,
    plan_id: str,
    commitment_key: str,
    month: date,
    actual_output: int,
    threshold: float,
    expected_version: int | None = None,
) -> Progress:
    """Report a month's output against a commitment of the plan at `expected_version` (the plan the
    reporter read: its commitment sets the planned output the report is measured against)."""
    async with uow() as tx:
        row = await load_for_update(tx.session, actor, plan_id)
        plan = to_domain(row)
        check_version("plan", plan.version, expected_version)
        report = report_progress(plan, actor, commitment_key, month, actual_output, threshold)
        now = utcnow()
        existing = await tx.session.get(ProgressRow, (plan.id, commitment_key, report.month))
        if existing is None:
            tx.session.add(
                ProgressRow(
                    plan_id=plan.id,
                    commitment_key=commitment_key,
                    month=report.month,
                    actual_output=report.actual_output,
                    planned_output=report.expected_output,
                    shortfall=report.shortfall,
                    reported_by=actor.id,
                    reported_at=now,
                )
            )
        else:
            existing.actual_output = report.actual_output
            existing.planned_output = report.expected_output
            existing.shortfall = report.shortfall
            existing.reported_by = actor.id
            existing.reported_at = now
        commitment = plan.content.commitment(commitment_key)
        assert commitment is not None  # report_progress checked it
        common = {
            **capacity_fields(plan),
            "commitment_key": commitment_key,
            "product": commitment.product,
            "month": report.month,
            "actual_output": report.actual_output,
            "planned_output": report.expected_output,
        }
        publish(tx, plan, ProgressReported(**common, reported_by=actor.id, reported_at=now), capacity=True)
        if report.shortfall:
            publish(
                tx,
                plan,
                ShortfallDetected(
                    **common, shortfall=report.expected_output - report.actual_output, threshold=threshold
                ),
                capacity=True,
            )
    return Progress(
        plan, commitment_key, report.month, report.actual_output, report.expected_output, report.shortfall
    )
