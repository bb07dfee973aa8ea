"""the event log behind the catch-up feed and the live stream, and its purge horizon

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from icep.platform.tables import BigId

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_log",
        # INTEGER PRIMARY KEY AUTOINCREMENT on SQLite: a position is never handed out twice.
        sa.Column("position", BigId, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("nation", sa.String(length=8), nullable=False),
        sa.Column("releasable_to", sa.String(length=400), nullable=False),
        sa.Column("readers", sa.String(length=400), nullable=False),
        sa.Column("capability_areas", sa.Text(), nullable=False),
        sa.Column("products", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("event_id", name="uq_event_log_event_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_event_log_recorded_at", "event_log", ["recorded_at"], unique=False)
    op.create_table(
        "event_log_horizon",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("purged_through", BigId, nullable=False),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("event_log_horizon")
    op.drop_index("ix_event_log_recorded_at", table_name="event_log")
    op.drop_table("event_log")
