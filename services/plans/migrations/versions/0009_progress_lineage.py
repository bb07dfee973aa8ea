"""progress belongs to the plan lineage, and every report of a month is kept

Actuals were keyed by one plan version (`progress_reports`: plan id, commitment key, month), so a newer
accepted version of a nation's plan for the same period lost them, and a re-report overwrote a month with no
trace. They move to `progress_actuals` (the standing figure per lineage, commitment key and month, with the
commitment's product, area and unit) and `progress_revisions` (every report, with the figure it replaced).
The lineage key is `<nation>/<period_start>/<period_end>` of the plan the row was reported against. Rows of
several versions for one month of a lineage become that month's revisions in the order they were reported;
the latest stands. Frozen: the content format read here is written out.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from collections.abc import Sequence
from datetime import date
from typing import Any

import sqlalchemy as sa
from alembic import op

from icep.platform.db import UtcDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_plans = sa.table(
    "plans",
    sa.column("id", sa.String()),
    sa.column("nation", sa.String()),
    sa.column("period_start", sa.Date()),
    sa.column("period_end", sa.Date()),
    sa.column("content", sa.JSON()),
)


def _reports_table() -> sa.TableClause:
    return sa.table(
        "progress_reports",
        sa.column("plan_id", sa.String()),
        sa.column("commitment_key", sa.String()),
        sa.column("month", sa.Date()),
        sa.column("actual_output", sa.Integer()),
        sa.column("planned_output", sa.Integer()),
        sa.column("shortfall", sa.Boolean()),
        sa.column("reported_by", sa.String()),
        sa.column("reported_at", UtcDateTime()),
    )


def _create_reports() -> None:
    op.create_table(
        "progress_reports",
        sa.Column("plan_id", sa.String(36), primary_key=True),
        sa.Column("commitment_key", sa.String(100), primary_key=True),
        sa.Column("month", sa.Date(), primary_key=True),
        sa.Column("actual_output", sa.Integer(), nullable=False),
        sa.Column("planned_output", sa.Integer(), nullable=False),
        sa.Column("shortfall", sa.Boolean(), nullable=False),
        sa.Column("reported_by", sa.String(200), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
    )


def upgrade() -> None:
    op.create_table(
        "progress_actuals",
        sa.Column("lineage", sa.String(60), primary_key=True),
        sa.Column("commitment_key", sa.String(100), primary_key=True),
        sa.Column("month", sa.Date(), primary_key=True),
        sa.Column("nation", sa.String(8), nullable=False),
        sa.Column("plan_id", sa.String(36), nullable=False),
        sa.Column("product", sa.String(200), nullable=False),
        sa.Column("capability_area", sa.String(100), nullable=False),
        sa.Column("unit", sa.String(50), nullable=False),
        sa.Column("actual_output", sa.Integer(), nullable=False),
        sa.Column("planned_output", sa.Integer(), nullable=False),
        sa.Column("shortfall", sa.Boolean(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("reported_by", sa.String(200), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_progress_actuals_product", "progress_actuals", ["product"])
    op.create_table(
        "progress_revisions",
        sa.Column("lineage", sa.String(60), primary_key=True),
        sa.Column("commitment_key", sa.String(100), primary_key=True),
        sa.Column("month", sa.Date(), primary_key=True),
        sa.Column("revision", sa.Integer(), primary_key=True),
        sa.Column("plan_id", sa.String(36), nullable=False),
        sa.Column("actual_output", sa.Integer(), nullable=False),
        sa.Column("planned_output", sa.Integer(), nullable=False),
        sa.Column("previous_output", sa.Integer(), nullable=True),
        sa.Column("shortfall", sa.Boolean(), nullable=False),
        sa.Column("reported_by", sa.String(200), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
    )
    _move_reports()
    op.drop_table("progress_reports")


def _typed(name: str, *columns: str) -> sa.TableClause:
    """A table of this revision for reading and writing rows, with the types their values need."""
    types: dict[str, Any] = {
        "month": sa.Date(),
        "reported_at": UtcDateTime(),
        "shortfall": sa.Boolean(),
        "content": sa.JSON(),
        "period_start": sa.Date(),
        "period_end": sa.Date(),
    }
    numbers = {"revision", "actual_output", "planned_output", "previous_output"}
    return sa.table(
        name,
        *(sa.column(c, types.get(c, sa.Integer() if c in numbers else sa.String())) for c in columns),
    )


_STANDING = (
    "lineage",
    "commitment_key",
    "month",
    "nation",
    "plan_id",
    "product",
    "capability_area",
    "unit",
    "actual_output",
    "planned_output",
    "shortfall",
    "revision",
    "reported_by",
    "reported_at",
)
_KEPT = (
    "lineage",
    "commitment_key",
    "month",
    "revision",
    "plan_id",
    "actual_output",
    "planned_output",
    "previous_output",
    "shortfall",
    "reported_by",
    "reported_at",
)


def _move_reports() -> None:
    """Each existing report into its lineage: reports of one month in one lineage (several versions) are
    that month's revisions in the order reported, the latest standing."""
    bind = op.get_bind()
    reports = _reports_table()
    rows = bind.execute(
        sa.select(reports, _plans.c.nation, _plans.c.period_start, _plans.c.period_end, _plans.c.content)
        .select_from(reports.join(_plans, _plans.c.id == reports.c.plan_id))
        .order_by(reports.c.reported_at, reports.c.plan_id)
    ).all()
    months: dict[tuple[str, str, date], list[Any]] = {}
    for r in rows:
        lineage = f"{r.nation}/{r.period_start.isoformat()}/{r.period_end.isoformat()}"
        months.setdefault((lineage, r.commitment_key, r.month), []).append(r)
    standing: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    for (lineage, key, month), reported in months.items():
        previous: int | None = None
        for number, r in enumerate(reported, start=1):
            kept.append(
                {
                    "lineage": lineage,
                    "commitment_key": key,
                    "month": month,
                    "revision": number,
                    "plan_id": r.plan_id,
                    "actual_output": r.actual_output,
                    "planned_output": r.planned_output,
                    "previous_output": previous,
                    "shortfall": r.shortfall,
                    "reported_by": r.reported_by,
                    "reported_at": r.reported_at,
                }
            )
            previous = r.actual_output
        last = reported[-1]
        found = next(
            (c for c in (last.content or {}).get("commitments", []) if c.get("key") == key),
            {},
        )
        standing.append(
            {
                "lineage": lineage,
                "commitment_key": key,
                "month": month,
                "nation": last.nation,
                "plan_id": last.plan_id,
                "product": str(found.get("product", key)),
                "capability_area": str(found.get("capability_area", "")),
                "unit": str(found.get("unit", "")),
                "actual_output": last.actual_output,
                "planned_output": last.planned_output,
                "shortfall": last.shortfall,
                "revision": len(reported),
                "reported_by": last.reported_by,
                "reported_at": last.reported_at,
            }
        )
    if standing:
        op.bulk_insert(_typed("progress_actuals", *_STANDING), standing)
        op.bulk_insert(_typed("progress_revisions", *_KEPT), kept)


def downgrade() -> None:
    """Back to one row per plan version and month: the standing figure of each month, under the plan it was
    last reported against (the corrections before it cannot be kept there)."""
    _create_reports()
    actuals = sa.table(
        "progress_actuals",
        sa.column("plan_id", sa.String()),
        sa.column("commitment_key", sa.String()),
        sa.column("month", sa.Date()),
        sa.column("actual_output", sa.Integer()),
        sa.column("planned_output", sa.Integer()),
        sa.column("shortfall", sa.Boolean()),
        sa.column("reported_by", sa.String()),
        sa.column("reported_at", UtcDateTime()),
    )
    op.execute(
        sa.insert(_reports_table()).from_select(
            [
                "plan_id",
                "commitment_key",
                "month",
                "actual_output",
                "planned_output",
                "shortfall",
                "reported_by",
                "reported_at",
            ],
            sa.select(
                actuals.c.plan_id,
                actuals.c.commitment_key,
                actuals.c.month,
                actuals.c.actual_output,
                actuals.c.planned_output,
                actuals.c.shortfall,
                actuals.c.reported_by,
                actuals.c.reported_at,
            ),
        )
    )
    op.drop_table("progress_revisions")
    op.drop_index("ix_progress_actuals_product", table_name="progress_actuals")
    op.drop_table("progress_actuals")
