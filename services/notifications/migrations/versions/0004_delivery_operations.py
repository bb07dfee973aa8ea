"""delivery operations: failing subscriptions, redelivery, replays (a generation per event), listing index

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        # Existing deliveries are the ones made when their event came: generation 0.
        batch_op.add_column(
            sa.Column("generation", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch_op.add_column(sa.Column("replay_of", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("redelivery_requested_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_constraint("uq_delivery_event", type_="unique")
        batch_op.create_unique_constraint(
            "uq_delivery_event_generation", ["subscription_id", "event_id", "generation"]
        )
        batch_op.create_index("ix_deliveries_listing", ["subscription_id", "status", "id"], unique=False)


def downgrade() -> None:
    # Replays have no place in the older schema (one delivery per event): their rows and attempts go.
    deliveries = sa.table("deliveries", sa.column("id"), sa.column("generation"))
    attempts = sa.table("delivery_attempts", sa.column("delivery_id"))
    replays = sa.select(deliveries.c.id).where(deliveries.c.generation > 0)
    op.execute(attempts.delete().where(attempts.c.delivery_id.in_(replays)))
    op.execute(deliveries.delete().where(deliveries.c.generation > 0))
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_listing")
        batch_op.drop_constraint("uq_delivery_event_generation", type_="unique")
        batch_op.create_unique_constraint("uq_delivery_event", ["subscription_id", "event_id"])
        batch_op.drop_column("redelivery_requested_at")
        batch_op.drop_column("replay_of")
        batch_op.drop_column("generation")

    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_column("failing_since")
