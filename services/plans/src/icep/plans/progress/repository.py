"""Progress reports in the database: one row per plan, commitment and month."""

from __future__ import annotations

from icep.plans.progress.model import ProgressReport
from icep.plans.progress.rows import ProgressRow
from icep.platform.outbox import UnitOfWork


class ProgressRepository:
    def __init__(self, tx: UnitOfWork) -> None:
        self._tx = tx

    async def save(self, report: ProgressReport) -> None:
        """The month's report, new or correcting the one before, and what it recorded."""
        session = self._tx.session
        existing = await session.get(ProgressRow, (report.plan_id, report.commitment_key, report.month))
        if existing is None:
            session.add(
                ProgressRow(
                    plan_id=report.plan_id,
                    commitment_key=report.commitment_key,
                    month=report.month,
                    actual_output=report.actual_output,
                    planned_output=report.expected_output,
                    shortfall=report.shortfall,
                    reported_by=report.reported_by,
                    reported_at=report.reported_at,
                )
            )
        else:
            existing.actual_output = report.actual_output
            existing.planned_output = report.expected_output
            existing.shortfall = report.shortfall
            existing.reported_by = report.reported_by
            existing.reported_at = report.reported_at
        self._tx.collect(report)
