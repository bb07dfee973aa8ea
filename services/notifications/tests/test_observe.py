"""The webhook gauges are counted from the tables: what waits, how old the oldest is, subscriptions by
state; labels carry the service and fixed state words, never an id."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from icep.notifications.observe import observe_webhooks
from icep.notifications.subscriptions.model import SubscriptionStatus


async def test_pending_deliveries_and_subscriptions_are_counted(store: Any) -> None:
    assert await observe_webhooks(store.db, "notifications-test") == (
        0,
        0.0,
        {"active": 0, "paused": 0, "disabled": 0, "deleted": 0},
    )
    active = await store.add_subscription("https://partner.test/hooks")
    await store.add_subscription("https://partner.test/paused", status=SubscriptionStatus.PAUSED)
    await store.add_subscription("https://partner.test/off", status=SubscriptionStatus.DISABLED)
    first = await store.add_delivery(active, "plan-1")
    await store.add_delivery(active, "plan-2")
    pending, age, states = await observe_webhooks(store.db, "notifications-test")
    assert pending == 2 and age >= 0
    assert states == {"active": 1, "paused": 1, "disabled": 1, "deleted": 0}
    get = REGISTRY.get_sample_value
    assert get("icep_webhook_deliveries_pending", {"service": "notifications-test"}) == 2
    assert get("icep_webhook_subscriptions", {"service": "notifications-test", "state": "disabled"}) == 1

    async with store.db.transaction() as session:
        row = await session.get(type(first), first.id)
        row.status = "delivered"
    assert (await observe_webhooks(store.db, "notifications-test"))[0] == 1
    # Attempt outcomes are exported from the start, so a failure ratio is computable at once.
    for outcome in ("delivered", "failed", "exhausted", "gone", "disabled", "late"):
        assert get("icep_webhook_attempts_total", {"outcome": outcome}) is not None
