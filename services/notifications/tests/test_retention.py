"""Retention of webhook deliveries and the event log, on the service's migrated database: only finished
deliveries past retention go, with their attempts, in batches; a pending one never, nor a failed one an
operator just asked to redeliver; the event log is cut as the feed's 410 expects."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from icep.notifications.deliveries.model import DeliveryStatus
from icep.notifications.deliveries.rows import AttemptRow, DeliveryRow
from icep.notifications.models import tables
from icep.notifications.read_models.feed import log as feed
from icep.notifications.read_models.feed.rows import EventLogRow
from icep.notifications.retention import RULES
from icep.notifications.settings import NotificationsSettings
from icep.platform import retention
from icep.platform.events import ReceivedEvent, utcnow
from icep.platform.ids import new_id

_deliveries = DeliveryRow.__table__  # type: ignore[attr-defined]
_attempts = AttemptRow.__table__  # type: ignore[attr-defined]


def delivery(
    subscription_id: str, label: str, status: DeliveryStatus, days_ago: float, **kw: Any
) -> dict[str, Any]:
    at = utcnow() - timedelta(days=days_ago)
    return {
        "id": new_id(),
        "subscription_id": subscription_id,
        "event_id": new_id(),
        "event_type": "icep.plans.plan.submitted.v1",
        "subject": label,
        "body": "{}",
        "status": status.value,
        "attempts": 1,
        "next_attempt_at": at if status == DeliveryStatus.PENDING else None,
        "created_at": at,
        "delivered_at": at if status == DeliveryStatus.DELIVERED else None,
        "generation": 0,
        "redelivery_requested_at": None,  # every row names the same columns (one INSERT for all)
        **kw,
    }


def attempt(delivery_id: str, days_ago: float) -> dict[str, Any]:
    return {
        "id": new_id(),
        "delivery_id": delivery_id,
        "attempted_at": utcnow() - timedelta(days=days_ago),
        "status_code": 500,
        "latency_ms": 1.0,
    }


async def test_only_finished_deliveries_past_retention_go_with_their_attempts(store: Any) -> None:
    sub = await store.add_subscription("https://hooks.example/x")
    rows = [
        delivery(sub.id, "delivered-old", DeliveryStatus.DELIVERED, 40),
        delivery(sub.id, "delivered-new", DeliveryStatus.DELIVERED, 1),
        delivery(sub.id, "failed-old", DeliveryStatus.FAILED, 40),
        delivery(sub.id, "failed-old-2", DeliveryStatus.FAILED, 35),
        delivery(sub.id, "failed-recent-attempt", DeliveryStatus.FAILED, 40),
        delivery(
            sub.id, "failed-redelivery-asked", DeliveryStatus.FAILED, 40, redelivery_requested_at=utcnow()
        ),
        delivery(sub.id, "pending-old", DeliveryStatus.PENDING, 60),
    ]
    await store.add_deliveries(rows)
    by = {r["subject"]: r["id"] for r in rows}
    async with store.db.transaction() as s:
        await s.execute(
            sa.insert(_attempts),
            [
                attempt(by["delivered-old"], 40),
                attempt(by["failed-old"], 40),
                attempt(by["failed-old"], 39),
                attempt(by["failed-old-2"], 35),
                attempt(by["failed-recent-attempt"], 1),
                attempt(by["pending-old"], 59),
            ],
        )
    settings = NotificationsSettings(delivery_retention_days=30, retention_batch_size=2)
    [rule] = [r for r in RULES if r.table == "deliveries"]
    cutoff = utcnow() - timedelta(days=30)
    assert await rule.purge(store.db, cutoff, 2, True) == {"deliveries": 3, "delivery_attempts": 4}
    done = await retention.purge_once(store.db, "notifications", settings, [rule])
    assert done[0].rows == {"deliveries": 3, "delivery_attempts": 4}
    async with store.db.sessions() as s:
        left = sorted((await s.execute(sa.select(_deliveries.c.subject))).scalars().all())
        attempts_left = (await s.execute(sa.select(sa.func.count()).select_from(_attempts))).scalar_one()
    assert left == ["delivered-new", "failed-recent-attempt", "failed-redelivery-asked", "pending-old"]
    assert attempts_left == 2


async def test_the_event_log_is_cut_and_older_cursors_are_gone(store: Any) -> None:
    positions = []
    for i in range(5):
        async with store.db.transaction() as s:
            positions.append(
                await feed.append(
                    s,
                    ReceivedEvent(
                        id=new_id(),
                        type="icep.plans.plan.submitted.v1",
                        source="/icep/plans",
                        subject=f"p{i}",
                        time=utcnow(),
                        nation="DEU",
                        releasable_to="ALLIES",
                        data={},
                        topic="icep.plans.events",
                        partition=0,
                        offset=i,
                    ),
                )
            )
    async with store.db.transaction() as s:
        await s.execute(
            sa.update(EventLogRow.__table__)  # type: ignore[attr-defined]
            .where(EventLogRow.__table__.c.position.in_(positions[:3]))  # type: ignore[attr-defined]
            .values(recorded_at=utcnow() - timedelta(days=40))
        )
    settings = NotificationsSettings(feed_retention_days=30, retention_batch_size=2)
    rules = retention.rules_for(tables, RULES)
    assert [r.table for r in rules] == ["inbox", "outbox", "deliveries", "event_log"]
    dry = await retention.purge_once(store.db, "notifications", settings, rules, dry_run=True)
    assert {p.rule: p.rows for p in dry}["event_log"] == {"event_log": 3}
    done = await retention.purge_once(store.db, "notifications", settings, rules)
    assert {p.rule: p.rows for p in done}["event_log"] == {"event_log": 3}
    assert await feed.horizon(store.db) == positions[2]
    reader = feed.FeedReader("deu-subscriber", "DEU", frozenset({"subscriber"}))
    with pytest.raises(feed.CursorGone):
        await feed.read_page(
            store.db, reader, feed.SubscriptionFilters(), after=positions[0], limit=10, scan_limit=100
        )


def test_the_older_setting_names_still_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICEP_NOTIFICATIONS_FEED_RETENTION_DAYS", "12")
    monkeypatch.setenv("ICEP_NOTIFICATIONS_FEED_PURGE_INTERVAL_SECONDS", "7")
    monkeypatch.setenv("ICEP_NOTIFICATIONS_DELIVERY_RETENTION_DAYS", "9")
    settings = NotificationsSettings()
    assert (settings.feed_retention_days, settings.retention_purge_seconds) == (12, 7)
    assert settings.delivery_retention_days == 9
    monkeypatch.setenv("ICEP_NOTIFICATIONS_EVENT_LOG_RETENTION_DAYS", "20")
    monkeypatch.setenv("ICEP_NOTIFICATIONS_RETENTION_PURGE_SECONDS", "5")
    settings = NotificationsSettings()
    assert (settings.feed_retention_days, settings.retention_purge_seconds) == (20, 5)
