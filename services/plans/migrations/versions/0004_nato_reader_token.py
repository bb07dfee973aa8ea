"""one visibility rule: NATO staff read a submitted plan by nation (token `NATO`), as its events are marked

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rename(old: str, new: str) -> None:
    for column in ("readers", "capacity_readers"):
        op.execute(f"UPDATE plans SET {column} = REPLACE({column}, ',{old},', ',{new},')")


def upgrade() -> None:
    _rename("NATO:reviewer", "NATO")


def downgrade() -> None:
    _rename("NATO", "NATO:reviewer")
