"""Progress in the database: the standing figure of each month of a lineage, every report kept, and the
queries of a month's history."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from icep.plans.plans.model import Actor, NationalPlan, PlanStatus
from icep.plans.plans.repository import to_domain
from icep.plans.plans.rows import PlanRow
from icep.plans.progress.model import Correction, MonthHistory, ProgressReport, StandingFigure
from icep.plans.progress.rows import ProgressActualRow, ProgressRevisionRow
from icep.platform import audit
from icep.platform.db import Database
from icep.platform.errors import NotFound
from icep.platform.outbox import UnitOfWork


class ProgressRepository:
    def __init__(self, tx: UnitOfWork) -> None:
        self._tx = tx
        self._rows: dict[tuple[str, str, date], ProgressActualRow] = {}

    async def standing(self, lineage: str, commitment_key: str, month: date) -> StandingFigure | None:
        """The month's figure as it stands in the lineage (its latest report), locked for this
        transaction; None when the month was never reported."""
        key = (lineage, commitment_key, month.replace(day=1))
        row = (
            await self._tx.session.execute(
                select(ProgressActualRow)
                .where(
                    col(ProgressActualRow.lineage) == key[0],
                    col(ProgressActualRow.commitment_key) == key[1],
                    col(ProgressActualRow.month) == key[2],
                )
                .with_for_update()
            )
        ).scalar_one_or_none()
        if row is None:
            return None
        self._rows[key] = row
        return StandingFigure(actual_output=row.actual_output, revision=row.revision)

    async def save(self, report: ProgressReport) -> None:
        """The month's report: it becomes the standing figure, and is kept with the reports before it."""
        session = self._tx.session
        c = report.commitment
        figures: dict[str, Any] = {
            "nation": report.plan.nation,
            "plan_id": report.plan_id,
            "product": c.product,
            "capability_area": c.capability_area,
            "unit": c.unit,
            "actual_output": report.actual_output,
            "planned_output": report.expected_output,
            "shortfall": report.shortfall,
            "revision": report.revision,
            "reported_by": report.reported_by,
            "reported_at": report.reported_at,
        }
        existing = self._rows.get((report.lineage, report.commitment_key, report.month))
        if existing is None:
            session.add(
                ProgressActualRow(
                    lineage=report.lineage,
                    commitment_key=report.commitment_key,
                    month=report.month,
                    **figures,
                )
            )
        else:
            for name, value in figures.items():
                setattr(existing, name, value)
        session.add(
            ProgressRevisionRow(
                lineage=report.lineage,
                commitment_key=report.commitment_key,
                month=report.month,
                revision=report.revision,
                plan_id=report.plan_id,
                actual_output=report.actual_output,
                planned_output=report.expected_output,
                previous_output=report.previous_output,
                shortfall=report.shortfall,
                reported_by=report.reported_by,
                reported_at=report.reported_at,
            )
        )
        self._tx.collect(report)


# --- queries ------------------------------------------------------------------------------------------------


async def plan_of_capacity(db: Database, actor: Actor, plan_id: str) -> NationalPlan:
    """A plan whose capacity figures the caller may read, and the lineage's accepted version lets them
    read too (the lineage's actuals follow its accepted version's release, as in the Alliance summary);
    404 otherwise, exactly as for a plan that does not exist."""
    async with db.sessions() as session:
        row = await session.get(PlanRow, plan_id)
        plan = None if row is None else to_domain(row)
        if plan is None or not plan.capacity_visible_to(actor.nation):
            raise NotFound(f"no plan {plan_id}")
        accepted = (
            (
                await session.execute(
                    select(PlanRow).where(
                        col(PlanRow.nation) == plan.nation,
                        col(PlanRow.period_start) == plan.period_start,
                        col(PlanRow.period_end) == plan.period_end,
                        col(PlanRow.status) == PlanStatus.ACCEPTED.value,
                    )
                )
            )
            .scalars()
            .all()
        )
    if any(not to_domain(r).capacity_visible_to(actor.nation) for r in accepted):
        raise NotFound(f"no plan {plan_id}")
    audit.read("plan", plan.id, plan.nation)
    return plan


async def month_histories(db: Database, lineage: str, commitment_key: str) -> list[MonthHistory]:
    """Every reported month of a commitment in a lineage, oldest first: the standing figure, who first
    reported it, and each correction."""
    async with db.sessions() as session:
        standing = (
            (
                await session.execute(
                    select(ProgressActualRow)
                    .where(
                        col(ProgressActualRow.lineage) == lineage,
                        col(ProgressActualRow.commitment_key) == commitment_key,
                    )
                    .order_by(col(ProgressActualRow.month))
                )
            )
            .scalars()
            .all()
        )
        revisions = (
            (
                await session.execute(
                    select(ProgressRevisionRow)
                    .where(
                        col(ProgressRevisionRow.lineage) == lineage,
                        col(ProgressRevisionRow.commitment_key) == commitment_key,
                    )
                    .order_by(col(ProgressRevisionRow.month), col(ProgressRevisionRow.revision))
                )
            )
            .scalars()
            .all()
        )
    by_month: dict[date, list[ProgressRevisionRow]] = {}
    for r in revisions:
        by_month.setdefault(r.month, []).append(r)
    answer = []
    for s in standing:
        kept = by_month.get(s.month, [])
        first = kept[0] if kept else None
        answer.append(
            MonthHistory(
                month=s.month,
                actual_output=s.actual_output,
                planned_output=s.planned_output,
                shortfall=s.shortfall,
                plan_id=s.plan_id,
                reported_by=s.reported_by,
                reported_at=s.reported_at,
                first_reported_by=first.reported_by if first else s.reported_by,
                first_reported_at=first.reported_at if first else s.reported_at,
                corrections=tuple(
                    Correction(
                        revision=r.revision,
                        previous_output=r.previous_output,
                        actual_output=r.actual_output,
                        reported_by=r.reported_by,
                        reported_at=r.reported_at,
                        plan_id=r.plan_id,
                    )
                    for r in kept
                    if r.revision > 1 and r.previous_output is not None
                ),
            )
        )
    return answer
