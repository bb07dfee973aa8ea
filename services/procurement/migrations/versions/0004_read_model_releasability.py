"""the standards read models keep the releasability of what they copy (owner nation, `releasableto`
marking, reader tokens) and a claim's manufacturer

Rows copied before this revision carry no releasability: they get none (empty reader tokens, so no award
counts them) until the next event of their standard or claim brings it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("nation", 8),
    ("releasable_to", 400),
    ("readers", 400),
)


def upgrade() -> None:
    for table in ("known_standards", "known_conformance"):
        with op.batch_alter_table(table) as batch:
            for name, length in COLUMNS:
                batch.add_column(sa.Column(name, sa.String(length), nullable=False, server_default=""))
    with op.batch_alter_table("known_conformance") as batch:
        batch.add_column(sa.Column("manufacturer", sa.String(300), nullable=False, server_default=""))
    # The defaults only fill the rows already there; the service always writes the columns.
    for table, names in (
        ("known_standards", [n for n, _ in COLUMNS]),
        ("known_conformance", [*(n for n, _ in COLUMNS), "manufacturer"]),
    ):
        with op.batch_alter_table(table) as batch:
            for name in names:
                batch.alter_column(name, server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("known_conformance") as batch:
        batch.drop_column("manufacturer")
    for table in ("known_conformance", "known_standards"):
        with op.batch_alter_table(table) as batch:
            for name, _ in reversed(COLUMNS):
                batch.drop_column(name)
