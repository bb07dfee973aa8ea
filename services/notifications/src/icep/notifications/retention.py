"""What the notifications service keeps only for a while, besides the platform's inbox and outbox
(`icep.platform.retention` runs these rules on schedule and from `icep retention purge notifications`):

- **Webhook deliveries and their attempts**, once finished: delivered (by `delivered_at`), or failed for
  good (by their last activity: creation, last attempt, last redelivery request). A pending delivery is
  never purged: it is work still to do, and it holds its subscription's per-aggregate order. A failed one
  with recent activity stays, so a redelivery an operator just asked for keeps its history.
- **The event log** (the catch-up feed and the stream), by `recorded_at`, as one cut in position order.
  A cursor from before the cut is answered 410 Gone (a problem naming `purged_through`): the subscriber
  starts again without a cursor (from the oldest event kept) or resyncs otherwise; it is never silently
  moved past events it did not see.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import sqlalchemy as sa

from icep.notifications.deliveries.model import DeliveryStatus
from icep.notifications.deliveries.rows import AttemptRow, DeliveryRow
from icep.notifications.read_models.feed import log as feed
from icep.notifications.settings import NotificationsSettings
from icep.platform.db import Database
from icep.platform.retention import RetentionRule
from icep.platform.settings import ServiceSettings

_deliveries: sa.Table = DeliveryRow.__table__  # type: ignore[attr-defined]
_attempts: sa.Table = AttemptRow.__table__  # type: ignore[attr-defined]


def finished_before(cutoff: datetime) -> sa.ColumnElement[bool]:
    """Deliveries that finished before `cutoff` and saw nothing since; never a pending one."""
    d = _deliveries.c
    recent_attempt = sa.exists().where(_attempts.c.delivery_id == d.id, _attempts.c.attempted_at >= cutoff)
    delivered = sa.and_(d.status == DeliveryStatus.DELIVERED.value, d.delivered_at < cutoff)
    failed = sa.and_(
        d.status == DeliveryStatus.FAILED.value,
        d.created_at < cutoff,
        sa.or_(d.redelivery_requested_at.is_(None), d.redelivery_requested_at < cutoff),
        ~recent_attempt,
    )
    return sa.or_(delivered, failed)


async def purge_deliveries(db: Database, cutoff: datetime, batch: int, dry_run: bool) -> Mapping[str, int]:
    """Finished deliveries before `cutoff` with their attempts, `batch` deliveries per transaction."""
    condition = finished_before(cutoff)
    if dry_run:
        async with db.sessions() as session:
            chosen = sa.select(_deliveries.c.id).where(condition)
            deliveries = (await session.execute(sa.select(sa.func.count()).where(condition))).scalar_one()
            attempts = (
                await session.execute(sa.select(sa.func.count()).where(_attempts.c.delivery_id.in_(chosen)))
            ).scalar_one()
        return {"deliveries": int(deliveries), "delivery_attempts": int(attempts)}
    counts = {"deliveries": 0, "delivery_attempts": 0}
    while True:
        async with db.transaction() as session:
            # Locked (PostgreSQL; SQLite's transaction holds the one write lock): a redelivery asked for
            # meanwhile waits, and finds the delivery gone, rather than losing its attempts.
            chosen = (
                sa.select(_deliveries.c.id).where(condition).limit(batch).with_for_update(skip_locked=True)
            )
            ids = list((await session.execute(chosen)).scalars())
            if ids:
                gone = await session.execute(sa.delete(_attempts).where(_attempts.c.delivery_id.in_(ids)))
                counts["delivery_attempts"] += int(getattr(gone, "rowcount", 0) or 0)
                done = await session.execute(sa.delete(_deliveries).where(_deliveries.c.id.in_(ids)))
                counts["deliveries"] += int(getattr(done, "rowcount", 0) or 0)
        if len(ids) < batch:
            return counts


async def purge_event_log(db: Database, cutoff: datetime, batch: int, dry_run: bool) -> Mapping[str, int]:
    return {"event_log": await feed.purge_before(db, cutoff, batch, dry_run)}


def _settings(settings: ServiceSettings) -> NotificationsSettings:
    assert isinstance(settings, NotificationsSettings)
    return settings


RULES: list[RetentionRule] = [
    RetentionRule(
        "deliveries",
        lambda s: timedelta(days=_settings(s).delivery_retention_days),
        purge_deliveries,
        also=("delivery_attempts",),
    ),
    RetentionRule("event_log", lambda s: timedelta(days=_settings(s).feed_retention_days), purge_event_log),
]
