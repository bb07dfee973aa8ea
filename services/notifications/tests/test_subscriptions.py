"""Subscription use cases against a real database and real receivers on 127.0.0.1: filters and
entitlement in the fan-out, If-Match, pause and resume, disable and re-enable (with their events),
deletion, secret rotation and ping."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from standardwebhooks import Webhook

from icep.notifications.deliveries import use_cases as deliveries
from icep.notifications.deliveries.dispatcher import WebhookDispatcher
from icep.notifications.deliveries.model import DeliveryStatus
from icep.notifications.domain import PING_EVENT_TYPE
from icep.notifications.read_models.fan_out import fan_out
from icep.notifications.settings import NotificationsSettings
from icep.notifications.subscriptions import use_cases as subscriptions
from icep.notifications.subscriptions.model import Subscriber, SubscriptionAction
from icep.platform.errors import IllegalTransition, NotFound, PreconditionFailed, PreconditionRequired
from icep.platform.events import ReceivedEvent, utcnow
from icep.platform.ids import new_id
from icep.platform.testing import WebhookReceiver

Dispatchers = Callable[..., WebhookDispatcher]

DEU = Subscriber("deu-subscriber", "DEU", frozenset({"subscriber"}))
DEU_OTHER = Subscriber("deu-planner", "DEU", frozenset({"planner", "subscriber"}))
UKR = Subscriber("ukr-partner", "UKR", frozenset({"subscriber"}))
SETTINGS = NotificationsSettings(allow_loopback_endpoints=True, retry_schedule_seconds=[0.05])


def event(
    type: str = "icep.plans.capacity.committed.v1",
    *,
    subject: str = "plan-1",
    nation: str = "DEU",
    releasable_to: str = "ALLIES",
    **data: Any,
) -> ReceivedEvent:
    return ReceivedEvent(
        id=new_id(),
        type=type,
        source="/icep/test",
        subject=subject,
        time=utcnow(),
        nation=nation,
        releasable_to=releasable_to,
        data=data,
    )


async def subscribe(store: Any, who: Subscriber, url: str, **filters: Any) -> Any:
    return await subscriptions.create_subscription(
        store.uow,
        SETTINGS,
        who,
        subscriptions.NewSubscription(
            url=url, description="test", event_types=filters.pop("event_types", ["*"]), **filters
        ),
    )


async def fan(store: Any, e: ReceivedEvent) -> int:
    async with store.db.transaction() as session:
        return await fan_out(session, e)


async def delivered_ids(store: Any, who: Subscriber, sub_id: str) -> list[str]:
    return [d.event_id for d, _ in await deliveries.list_deliveries(store.db, who, sub_id, 50)]


async def test_fan_out_applies_filters_and_entitlement(
    store: Any, receivers: Callable[[], WebhookReceiver]
) -> None:
    url = receivers().url
    by_product = await subscribe(store, DEU, url, products=["155mm Artillery Round"])
    by_area = await subscribe(store, DEU, url, capability_areas=["air defence"])
    by_nation = await subscribe(store, DEU, url, nations=["FRA"], event_types=["icep.plans.*"])
    ukr_narrowing = await subscribe(store, UKR, url, nations=["DEU"])
    shell = {"product": "155mm artillery round", "capability_area": "munitions"}

    german = event(**shell)
    french_air = event(nation="FRA", product="IRIS-T missile", capability_area="air defence")
    no_fields = event("icep.plans.plan.submitted.v1", plan_id="plan-1")
    for_ukr = event(releasable_to="ALLIES,UKR", **shell)
    assert await fan(store, german) == 1  # by_product; UKR may not see it, whatever its filter says
    assert await fan(store, french_air) == 2  # by_area, by_nation
    assert await fan(store, no_fields) == 0  # no product or area to match; DEU-owned for by_nation
    assert await fan(store, for_ukr) == 2  # by_product, and UKR now that it is released to it

    assert await delivered_ids(store, DEU, by_product.id) == [for_ukr.id, german.id]
    assert await delivered_ids(store, DEU, by_area.id) == [french_air.id]
    assert await delivered_ids(store, DEU, by_nation.id) == [french_air.id]
    assert await delivered_ids(store, UKR, ukr_narrowing.id) == [for_ukr.id]


async def test_changes_need_the_current_version_and_the_owner(
    store: Any, receivers: Callable[[], WebhookReceiver]
) -> None:
    sub = await subscribe(store, DEU, receivers().url)
    changes = subscriptions.SubscriptionChanges(products=["155mm artillery round"], description="shells")
    with pytest.raises(PreconditionRequired):
        await subscriptions.update_subscription(store.uow, SETTINGS, DEU, sub.id, None, changes)
    with pytest.raises(PreconditionFailed):
        await subscriptions.update_subscription(store.uow, SETTINGS, DEU, sub.id, 2, changes)
    with pytest.raises(NotFound):
        await subscriptions.update_subscription(store.uow, SETTINGS, DEU_OTHER, sub.id, 1, changes)
    changed = await subscriptions.update_subscription(store.uow, SETTINGS, DEU, sub.id, 1, changes)
    assert (changed.version, changed.products, changed.description) == (
        2,
        ["155mm artillery round"],
        "shells",
    )
    # The same values again change nothing, not even the version.
    same = await subscriptions.update_subscription(store.uow, SETTINGS, DEU, sub.id, 2, changes)
    assert same.version == 2
    stored = await store.subscription(sub.id)
    assert (stored.version, stored.products, stored.event_types) == (2, ["155mm artillery round"], ["*"])

    with pytest.raises(PreconditionRequired):
        await subscriptions.change_status(store.uow, DEU, sub.id, None, SubscriptionAction.DELETE)
    with pytest.raises(PreconditionFailed):
        await subscriptions.change_status(store.uow, DEU, sub.id, 1, SubscriptionAction.DELETE)


async def test_paused_deliveries_wait_and_go_in_order_on_resume(
    store: Any, receivers: Callable[[], WebhookReceiver], dispatchers: Dispatchers
) -> None:
    receiver = receivers()
    sub = await subscribe(store, DEU, receiver.url)
    paused = await subscriptions.change_status(store.uow, DEU, sub.id, None, SubscriptionAction.PAUSE)
    assert paused.status == "paused" and paused.version == 2
    with pytest.raises(IllegalTransition):
        await subscriptions.change_status(store.uow, DEU, sub.id, None, SubscriptionAction.PAUSE)
    events = [event(subject="plan-1", step=i) for i in range(3)]
    for e in events:
        assert await fan(store, e) == 1
    dispatcher = dispatchers()
    assert await dispatcher.dispatch_once() == 0 and receiver.received() == []

    await subscriptions.change_status(store.uow, DEU, sub.id, 2, SubscriptionAction.RESUME)
    for _ in events:
        assert await dispatcher.dispatch_once() == 1
    assert [r.headers["webhook-id"] for r in receiver.received()] == [e.id for e in events]


async def test_disabling_settles_what_waits_and_re_enabling_is_announced(
    store: Any, receivers: Callable[[], WebhookReceiver], dispatchers: Dispatchers
) -> None:
    receiver = receivers()
    sub = await subscribe(store, DEU, receiver.url)
    waiting = event()
    await subscriptions.change_status(store.uow, DEU, sub.id, None, SubscriptionAction.PAUSE)
    await fan(store, waiting)
    disabled = await subscriptions.change_status(
        store.uow, DEU, sub.id, None, SubscriptionAction.DISABLE, "  moving   the endpoint "
    )
    assert (disabled.status, disabled.disabled_reason) == ("disabled", "moving the endpoint")
    [(delivery, _)] = await deliveries.list_deliveries(store.db, DEU, sub.id, 10)
    assert delivery.status == DeliveryStatus.FAILED.value
    assert delivery.last_error == "not sent: the subscription was disabled (moving the endpoint)"
    assert await fan(store, event()) == 0  # a disabled subscription gets nothing

    enabled = await subscriptions.change_status(store.uow, DEU, sub.id, None, SubscriptionAction.RESUME)
    assert (enabled.status, enabled.disabled_reason) == ("active", None)
    assert await fan(store, event()) == 1
    assert await dispatchers().dispatch_once() == 1 and len(receiver.received()) == 1

    outbox = {r["type"]: r for r in await store.outbox()}
    off = json.loads(outbox["icep.notifications.subscription.disabled.v1"]["data"])
    assert (off["cause"], off["reason"], off["owner"]) == ("owner", "moving the endpoint", DEU.client_id)
    on = json.loads(outbox["icep.notifications.subscription.reenabled.v1"]["data"])
    assert (on["subscription_id"], on["reenabled_by"]) == (sub.id, DEU.client_id)
    assert outbox["icep.notifications.subscription.reenabled.v1"]["releasable_to"] == "DEU"


async def test_deleted_subscriptions_are_gone_and_get_nothing(
    store: Any, receivers: Callable[[], WebhookReceiver]
) -> None:
    sub = await subscribe(store, DEU, receivers().url)
    await fan(store, event())
    await subscriptions.change_status(store.uow, DEU, sub.id, 1, SubscriptionAction.DELETE)
    with pytest.raises(NotFound):
        await subscriptions.get_subscription(store.db, DEU, sub.id)
    assert await subscriptions.list_subscriptions(store.db, DEU) == []
    assert await fan(store, event()) == 0
    stored = await store.subscription(sub.id)  # kept, with its history
    assert stored.status == "deleted"
    with pytest.raises(NotFound):
        await subscriptions.change_status(store.uow, DEU, sub.id, None, SubscriptionAction.RESUME)


async def test_after_a_rotation_deliveries_verify_with_either_secret(
    store: Any, receivers: Callable[[], WebhookReceiver], dispatchers: Dispatchers
) -> None:
    receiver = receivers()
    sub = await subscribe(store, DEU, receiver.url)
    old = sub.secret
    rotated = await subscriptions.rotate_secret(store.uow, SETTINGS, DEU, sub.id, 1)
    assert rotated.secret != old and rotated.previous_secret == old and rotated.version == 2
    await fan(store, event())
    dispatcher = dispatchers()  # one: on PostgreSQL only the lock's holder sends
    assert await dispatcher.dispatch_once() == 1
    [hook] = receiver.received()
    assert len(hook.headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old).verify(hook.body, hook.headers) == Webhook(rotated.secret).verify(
        hook.body, hook.headers
    )

    # Without a grace period the old secret stops at once.
    instant = NotificationsSettings(allow_loopback_endpoints=True, secret_grace_seconds=0)
    again = await subscriptions.rotate_secret(store.uow, instant, DEU, sub.id, None)
    assert again.previous_secret is None
    await fan(store, event())
    assert await dispatcher.dispatch_once() == 1
    last = receiver.received()[-1]
    assert " " not in last.headers["webhook-signature"]
    Webhook(again.secret).verify(last.body, last.headers)


async def test_ping_reports_the_endpoints_answer(
    store: Any, receivers: Callable[[], WebhookReceiver], black_hole: Any
) -> None:
    receiver = receivers()
    sub = await subscribe(store, DEU, receiver.url)
    result = await subscriptions.ping(store.db, store.uow, SETTINGS, DEU, sub.id)
    assert result.ok and result.status_code == 204 and result.error is None
    [hook] = receiver.received()
    body = Webhook(sub.secret).verify(hook.body, hook.headers)
    assert body["type"] == PING_EVENT_TYPE and hook.headers["webhook-id"] == result.message_id
    assert await deliveries.list_deliveries(store.db, DEU, sub.id, 10) == []  # nothing stored

    receiver.script = [500]
    failed = await subscriptions.ping(store.db, store.uow, SETTINGS, DEU, sub.id)
    assert not failed.ok and failed.status_code == 500

    # The same checks as a delivery: a loopback endpoint is refused when loopback is not allowed...
    strict = NotificationsSettings(allow_loopback_endpoints=False)
    refused = await subscriptions.ping(store.db, store.uow, strict, DEU, sub.id)
    assert refused.status_code is None and "not acceptable" in (refused.error or "")
    assert len(receiver.received()) == 2
    # ...and the same time limit.
    hole = await subscribe(store, DEU, black_hole.url)
    quick = NotificationsSettings(allow_loopback_endpoints=True, request_timeout_seconds=0.3)
    timed_out = await subscriptions.ping(store.db, store.uow, quick, DEU, hole.id)
    assert timed_out.status_code is None and "no answer" in (timed_out.error or "")
    with pytest.raises(NotFound):
        await subscriptions.ping(store.db, store.uow, SETTINGS, UKR, sub.id)
