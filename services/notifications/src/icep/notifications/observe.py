"""Webhook gauges for operators, counted from the tables apart from the dispatcher (which may be busy,
standing by, or stuck): what waits to be delivered, how old the oldest of it is, and the subscriptions by
state. Labels are the service and fixed state words only, never subscription or event ids."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from prometheus_client import Gauge
from sqlalchemy import func, select
from sqlmodel import col

from icep.notifications.deliveries.model import DeliveryStatus
from icep.notifications.deliveries.rows import DeliveryRow
from icep.notifications.settings import NotificationsSettings
from icep.notifications.subscriptions.model import SubscriptionStatus
from icep.notifications.subscriptions.rows import SubscriptionRow
from icep.platform.app import Runtime
from icep.platform.db import Database
from icep.platform.observe import Transitions, age_seconds

log = logging.getLogger("icep.notifications.observe")

PENDING = Gauge("icep_webhook_deliveries_pending", "Webhook deliveries not yet settled", ["service"])
OLDEST_PENDING = Gauge(
    "icep_webhook_oldest_pending_age_seconds", "Age of the oldest pending webhook delivery", ["service"]
)
SUBSCRIPTIONS = Gauge("icep_webhook_subscriptions", "Webhook subscriptions by state", ["service", "state"])


async def observe_webhooks(db: Database, service: str) -> tuple[int, float, dict[str, int]]:
    """Count once and set the gauges; returns (pending, oldest age in seconds, subscriptions by state)."""
    async with db.sessions() as session:
        pending, oldest = (
            await session.execute(
                select(func.count(), func.min(col(DeliveryRow.created_at))).where(
                    col(DeliveryRow.status) == DeliveryStatus.PENDING.value
                )
            )
        ).one()
        by_state = {
            str(state): int(n)
            for state, n in (
                await session.execute(
                    select(col(SubscriptionRow.status), func.count()).group_by(col(SubscriptionRow.status))
                )
            ).tuples()
        }
    age = age_seconds(oldest, datetime.now(UTC))
    PENDING.labels(service).set(pending)
    OLDEST_PENDING.labels(service).set(age)
    states = {state.value: by_state.get(state.value, 0) for state in SubscriptionStatus}
    for state, n in states.items():
        SUBSCRIPTIONS.labels(service, state).set(n)
    return int(pending), age, states


async def keep_observing(runtime: Runtime) -> None:
    """The background loop (`webhook-observer`), every `webhook_observe_seconds`."""
    assert runtime.db is not None
    settings = runtime.settings_as(NotificationsSettings)
    failing = Transitions(f"{settings.service_name}: webhook observation (database)")
    while True:
        try:
            await observe_webhooks(runtime.db, settings.service_name)
            failing.note(True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failing.note(False, type(exc).__name__)
        await asyncio.sleep(settings.webhook_observe_seconds)
