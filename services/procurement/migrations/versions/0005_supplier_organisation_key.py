"""suppliers: `organisation_key`, the organisation id as compared (case-folded), so a block on `ACME-1`
also reaches the record of `acme-1`

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("suppliers", sa.Column("organisation_key", sa.String(100), nullable=True))
    suppliers = sa.table(
        "suppliers",
        sa.column("id", sa.String()),
        sa.column("organisation_id", sa.String()),
        sa.column("organisation_key", sa.String()),
    )
    conn = op.get_bind()
    # In Python, not SQL: `str.casefold` is what the service compares with (SQLite's lower() is ASCII only).
    for row in conn.execute(sa.select(suppliers.c.id, suppliers.c.organisation_id)).all():
        conn.execute(
            suppliers.update()
            .where(suppliers.c.id == row.id)
            .values(organisation_key=row.organisation_id.strip().casefold())
        )
    with op.batch_alter_table("suppliers") as batch:
        batch.alter_column("organisation_key", existing_type=sa.String(100), nullable=False)
    op.create_index("ix_suppliers_organisation_key", "suppliers", ["organisation_key"])


def downgrade() -> None:
    op.drop_index("ix_suppliers_organisation_key", table_name="suppliers")
    with op.batch_alter_table("suppliers") as batch:
        batch.drop_column("organisation_key")
