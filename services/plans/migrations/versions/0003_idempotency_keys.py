"""idempotency keys of POST requests (platform schema v1); capability targets get a version (ETag)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from icep.platform.tables import create_idempotency_table_v1, drop_idempotency_table_v1

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_idempotency_table_v1()
    with op.batch_alter_table("capability_targets") as batch:
        # Every target recorded so far is at its first version.
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("capability_targets") as batch:
        batch.drop_column("version")
    drop_idempotency_table_v1()
