"""plan content, parts releasability, reader tokens, versions, progress reports, capability targets

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.add_column(sa.Column("content", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("capacity_scope", sa.String(20), nullable=True))
        batch.add_column(sa.Column("capacity_nations", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("returned_reasons", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("superseded_by", sa.String(36), nullable=True))
        batch.add_column(sa.Column("readers", sa.String(400), nullable=False, server_default=""))
        batch.add_column(sa.Column("capacity_readers", sa.String(400), nullable=False, server_default=""))
    # Plans of the skeleton were drafts or submitted: the owner reads them, NATO's reviewers once submitted.
    op.execute("UPDATE plans SET readers = ',' || nation || ',' WHERE status = 'draft'")
    op.execute("UPDATE plans SET readers = ',' || nation || ',NATO:reviewer,' WHERE status <> 'draft'")
    op.execute("UPDATE plans SET capacity_readers = readers")
    op.create_table(
        "plan_versions",
        sa.Column("plan_id", sa.String(36), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
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
    op.create_table(
        "capability_targets",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("capability_area", sa.String(100), nullable=False),
        sa.Column("product", sa.String(200), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("required_quantity", sa.Integer(), nullable=False),
        sa.Column("unit", sa.String(50), nullable=False),
        sa.Column("set_by", sa.String(200), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("capability_area", "product", "year", name="uq_capability_target"),
    )
    op.create_index("ix_capability_targets_product", "capability_targets", ["product"])


def downgrade() -> None:
    op.drop_index("ix_capability_targets_product", table_name="capability_targets")
    op.drop_table("capability_targets")
    op.drop_table("progress_reports")
    op.drop_table("plan_versions")
    with op.batch_alter_table("plans") as batch:
        for column in (
            "capacity_readers",
            "readers",
            "superseded_by",
            "returned_reasons",
            "capacity_nations",
            "capacity_scope",
            "content",
        ):
            batch.drop_column(column)
