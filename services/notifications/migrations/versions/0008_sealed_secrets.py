"""signing secrets sealed at rest: room for the sealed form (`icep-sealed:v1:<Fernet token>`)

Existing plaintext secrets stay readable as they are (legacy values carry no prefix); the service seals
them at start (`icep.notifications.subscriptions.sealing.reseal_secrets`), with its key, which this
migration does not need.

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
    with op.batch_alter_table("subscriptions") as batch:
        batch.alter_column(
            "secret", existing_type=sa.String(100), type_=sa.String(400), existing_nullable=False
        )
        batch.alter_column(
            "previous_secret", existing_type=sa.String(100), type_=sa.String(400), existing_nullable=True
        )


def downgrade() -> None:
    # Only where every secret is plaintext again (sealed values do not fit): a downgrade is for development.
    with op.batch_alter_table("subscriptions") as batch:
        batch.alter_column(
            "secret", existing_type=sa.String(400), type_=sa.String(100), existing_nullable=False
        )
        batch.alter_column(
            "previous_secret", existing_type=sa.String(400), type_=sa.String(100), existing_nullable=True
        )
