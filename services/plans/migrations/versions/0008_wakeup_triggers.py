"""wake-up triggers (PostgreSQL): an INSERT into outbox sends the NOTIFY that wakes every
replica's loops, instead of a statement of the application's before each commit. Frozen: the channel names
are written out here.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from icep.platform.tables import create_wakeup_triggers_v1, drop_wakeup_triggers_v1

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNELS = {
    "outbox": "icep_plans_outbox",
}


def upgrade() -> None:
    create_wakeup_triggers_v1(CHANNELS)


def downgrade() -> None:
    drop_wakeup_triggers_v1(list(CHANNELS))
