"""outbox parking and inbox retention (platform schema v2): parked_at and parked_reason on the outbox, an
index on the inbox's processed_at for the retention purge. Frozen: plain column definitions, no live helper.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("parked_reason", sa.String(500), nullable=True))
    op.create_index("ix_inbox_processed_at", "inbox", ["processed_at"])


def downgrade() -> None:
    op.drop_index("ix_inbox_processed_at", table_name="inbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("parked_reason")
        batch.drop_column("parked_at")
