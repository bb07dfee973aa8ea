"""subscription filters (nations, capability areas, products) and the previous secret of a rotation

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILTERS = ("nations", "capability_areas", "products")


def upgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        for name in FILTERS:
            # Existing subscriptions filter on nothing more than before: an empty list.
            batch_op.add_column(sa.Column(name, sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        batch_op.add_column(sa.Column("previous_secret", sa.String(length=100), nullable=True))
        batch_op.add_column(
            sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_column("previous_secret_expires_at")
        batch_op.drop_column("previous_secret")
        for name in reversed(FILTERS):
            batch_op.drop_column(name)
