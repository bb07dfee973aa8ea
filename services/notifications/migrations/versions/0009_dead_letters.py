"""dead letters and the inbox's origin (platform schema v2), written out here (frozen)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("inbox", sa.Column("origin_topic", sa.String(255), nullable=True))
    op.add_column("inbox", sa.Column("origin_partition", sa.Integer(), nullable=True))
    op.add_column("inbox", sa.Column("origin_offset", sa.BigInteger(), nullable=True))
    op.create_index(
        "ix_inbox_origin", "inbox", ["consumer", "origin_topic", "origin_partition", "origin_offset"]
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("consumer", sa.String(200), nullable=False),
        sa.Column("event_id", sa.String(300), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=True),
        sa.Column("owner_nation", sa.String(8), nullable=True),
        sa.Column("origin_topic", sa.String(255), nullable=False),
        sa.Column("origin_partition", sa.Integer(), nullable=False),
        sa.Column("origin_offset", sa.BigInteger(), nullable=False),
        sa.Column("dlq_topic", sa.String(255), nullable=False),
        sa.Column("dlq_partition", sa.Integer(), nullable=False),
        sa.Column("dlq_offset", sa.BigInteger(), nullable=False),
        sa.Column("record_key", sa.LargeBinary(), nullable=True),
        sa.Column("record_value", sa.LargeBinary(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("dead_lettered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("redriven_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("redrive_count", sa.Integer(), nullable=False, server_default="0"),
        sa.UniqueConstraint("consumer", "event_id", name="uq_dead_letters_consumer_event"),
    )
    op.create_index("ix_dead_letters_status", "dead_letters", ["status", "dlq_topic"])


def downgrade() -> None:
    op.drop_index("ix_dead_letters_status", table_name="dead_letters")
    op.drop_table("dead_letters")
    op.drop_index("ix_inbox_origin", table_name="inbox")
    with op.batch_alter_table("inbox") as batch:
        batch.drop_column("origin_offset")
        batch.drop_column("origin_partition")
        batch.drop_column("origin_topic")
