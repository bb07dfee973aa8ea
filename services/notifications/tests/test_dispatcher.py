"""The webhook dispatcher against a real database (SQLite or PostgreSQL, migrated by the service's own
migrations) and real HTTP receivers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from standardwebhooks import Webhook

from icep.notifications.deliveries.dispatcher import WebhookDispatcher
from icep.notifications.deliveries.model import DeliveryStatus
from icep.notifications.read_models.fan_out import fan_out
from icep.notifications.subscriptions.model import SubscriptionStatus
from icep.platform.events import ReceivedEvent, utcnow
from icep.platform.ids import new_id
from icep.platform.testing import WebhookReceiver, wait_for

Dispatchers = Callable[..., WebhookDispatcher]
Running = Callable[[WebhookDispatcher], "asyncio.Task[None]"]

LATER = timedelta(hours=1)


def ids_received(receiver: WebhookReceiver) -> list[str]:
    return [r.headers["webhook-id"] for r in receiver.received()]


async def test_fanned_out_events_arrive_signed_with_the_event_as_body(
    store: Any, receivers: Callable[[], WebhookReceiver], dispatchers: Dispatchers
) -> None:
    deu, fra, other_types = receivers(), receivers(), receivers()
    deu_sub = await store.add_subscription(deu.url, nation="DEU", event_types=["icep.plans.*"])
    await store.add_subscription(fra.url, nation="FRA")  # not entitled: the event is German only
    await store.add_subscription(other_types.url, nation="DEU", event_types=["icep.standards.*"])
    await store.add_subscription(deu.url, nation="DEU", status=SubscriptionStatus.DISABLED)
    event = ReceivedEvent(
        id=new_id(),
        type="icep.plans.plan.submitted.v1",
        source="/icep/plans",
        subject="plan-1",
        time=utcnow(),
        nation="DEU",
        releasable_to="DEU",
        data={"plan_id": "plan-1"},
    )
    async with store.db.transaction() as session:
        assert await fan_out(session, event) == 1

    assert await dispatchers().dispatch_once() == 1

    [request] = deu.received()
    assert fra.received() == [] and other_types.received() == []
    assert request.headers["webhook-id"] == event.id
    assert Webhook(deu_sub.secret).verify(request.body, request.headers) == event.body()
    assert json.loads(request.body)["data"] == {"plan_id": "plan-1"}
    with pytest.raises(Exception, match="signature"):
        Webhook(deu_sub.secret).verify(request.body.replace(b"plan-1", b"plan-2"), request.headers)


async def test_one_aggregate_stays_in_order_while_other_aggregates_go(
    store: Any, receivers: Callable[[], WebhookReceiver], dispatchers: Dispatchers
) -> None:
    receiver = receivers()
    sub = await store.add_subscription(receiver.url)
    # Aggregate a's oldest delivery waits for a retry an hour away; its later ones must wait with it.
    a1 = await store.add_delivery(sub, "a", next_attempt_at=utcnow() + LATER)
    a2 = await store.add_delivery(sub, "a")
    a3 = await store.add_delivery(sub, "a")
    b1 = await store.add_delivery(sub, "b")
    b2 = await store.add_delivery(sub, "b")
    dispatcher = dispatchers()

    assert await dispatcher.dispatch_once() == 1
    assert await dispatcher.dispatch_once() == 1
    assert await dispatcher.dispatch_once() == 0
    assert ids_received(receiver) == [b1.event_id, b2.event_id]
    for waiting in (a1, a2, a3):
        assert await store.status_of(waiting.id) == DeliveryStatus.PENDING

    await store.set_due_now(a1.id)
    while await dispatcher.dispatch_once():
        pass
    assert ids_received(receiver)[2:] == [a1.event_id, a2.event_id, a3.event_id]


async def test_a_failing_head_holds_back_only_its_own_aggregate(
    store: Any,
    receivers: Callable[[], WebhookReceiver],
    dispatchers: Dispatchers,
    running: Running,
) -> None:
    flaky, steady = receivers(), receivers()
    flaky.script = [500, 503]
    flaky_sub = await store.add_subscription(flaky.url)
    steady_sub = await store.add_subscription(steady.url)
    a = [await store.add_delivery(flaky_sub, "a") for _ in range(3)]
    b = [await store.add_delivery(steady_sub, "b") for _ in range(3)]
    running(dispatchers(retry_schedule_seconds=[1.0, 0.3]))

    await wait_for(lambda: len(flaky.received()) == 5 and len(steady.received()) == 3, what="all sent")
    # The first of aggregate a was tried three times before the second went.
    assert ids_received(flaky) == [a[0].event_id] * 3 + [a[1].event_id, a[2].event_id]
    assert ids_received(steady) == [d.event_id for d in b]
    # ... and aggregate b did not wait for a's retries.
    assert steady.received()[-1].at < flaky.received()[1].at
    await wait_for(lambda: store.has_status(a[2].id, DeliveryStatus.DELIVERED), what="the last recorded")
    assert [(await store.delivery(d.id)).attempts for d in a] == [3, 1, 1]


async def test_not_due_and_paused_rows_do_not_crowd_out_due_ones(
    store: Any, receiver: WebhookReceiver, dispatchers: Dispatchers
) -> None:
    sub = await store.add_subscription(receiver.url)
    paused = await store.add_subscription(receiver.url, status=SubscriptionStatus.PAUSED)
    later = utcnow() + LATER
    now = utcnow()

    def row(owner: Any, subject: str, due: Any) -> dict[str, Any]:
        return {
            "id": new_id(),
            "subscription_id": owner.id,
            "event_id": new_id(),
            "event_type": "icep.plans.plan.submitted.v1",
            "subject": subject,
            "body": "{}",
            "status": DeliveryStatus.PENDING.value,
            "attempts": 1,
            "next_attempt_at": due,
            "created_at": now,
        }

    # 600 older rows that may not go now: not due; due but behind one that is not; due but paused.
    await store.add_deliveries([row(sub, f"w-{n}", later) for n in range(200)])
    await store.add_deliveries([row(sub, f"w-{n}", now) for n in range(200)])
    await store.add_deliveries([row(paused, f"p-{n}", now) for n in range(200)])
    due = await store.add_delivery(sub, "fresh")

    assert await dispatchers(dispatch_concurrency=5).dispatch_once() == 1
    assert ids_received(receiver) == [due.event_id]
    assert await store.status_of(due.id) == DeliveryStatus.DELIVERED


async def test_a_slow_endpoint_holds_up_nobody_and_a_stop_leaves_its_delivery_pending(
    store: Any,
    receiver: WebhookReceiver,
    black_hole: Any,
    dispatchers: Dispatchers,
    running: Running,
    stop_task: Callable[[asyncio.Task[None]], Any],
) -> None:
    slow_sub = await store.add_subscription(black_hole.url)
    fast_sub = await store.add_subscription(receiver.url)
    stuck = await store.add_delivery(slow_sub, "a")
    fast = [await store.add_delivery(fast_sub, "b") for _ in range(3)]
    dispatcher = dispatchers(request_timeout_seconds=60.0)
    task = running(dispatcher)

    # Three deliveries of one aggregate take three rounds; none waits for the endpoint that never answers.
    await wait_for(lambda: len(receiver.received()) == 3, timeout=10, what="the fast endpoint's deliveries")
    assert ids_received(receiver) == [d.event_id for d in fast]
    # (the last fast one may still be recording its answer)
    await wait_for(lambda: dispatcher.in_flight == {stuck.id}, timeout=10, what="only the stuck one left")
    assert black_hole.connections == 1

    # A new event for the fast endpoint goes at once too (woken, not polled).
    later = await store.add_delivery(fast_sub, "c")
    dispatcher.wake()
    await wait_for(lambda: len(receiver.received()) == 4, timeout=10, what="the next delivery")
    assert ids_received(receiver)[-1] == later.event_id

    await stop_task(task)
    assert dispatcher.in_flight == frozenset()
    stuck_now = await store.delivery(stuck.id)
    assert stuck_now.status == DeliveryStatus.PENDING and stuck_now.attempts == 0
    assert await store.attempts(stuck.id) == []


async def test_gone_disables_the_subscription_and_fails_what_waits_for_it(
    store: Any, receivers: Callable[[], WebhookReceiver], dispatchers: Dispatchers
) -> None:
    gone, other = receivers(), receivers()
    gone.script = [410]
    gone_sub = await store.add_subscription(gone.url)
    other_sub = await store.add_subscription(other.url)
    first = await store.add_delivery(gone_sub, "a")
    behind = await store.add_delivery(gone_sub, "a")
    not_due = await store.add_delivery(gone_sub, "b", next_attempt_at=utcnow() + LATER)
    unaffected = await store.add_delivery(other_sub, "a")

    assert await dispatchers().dispatch_once() == 2

    sub = await store.subscription(gone_sub.id)
    assert sub.status == SubscriptionStatus.DISABLED
    assert sub.disabled_reason and "410" in sub.disabled_reason
    assert sub.version == 2
    head = await store.delivery(first.id)
    assert (head.status, head.attempts, head.last_status_code) == (DeliveryStatus.FAILED, 1, 410)
    for waiting in (behind, not_due):
        row = await store.delivery(waiting.id)
        assert row.status == DeliveryStatus.FAILED and row.next_attempt_at is None
        assert row.attempts == 0 and row.last_error and "disabled" in row.last_error
    assert await store.status_of(unaffected.id) == DeliveryStatus.DELIVERED
    assert len(gone.received()) == 1
    # Nothing is left for the disabled subscription, so no later round sends anything to it.
    assert await dispatchers().dispatch_once() == 0


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_retry_after_pushes_the_next_attempt_back(
    status: int, form: str, store: Any, receiver: WebhookReceiver, dispatchers: Dispatchers
) -> None:
    asked = 600
    before = utcnow()
    receiver.script = [status]
    http_date = format_datetime(before + timedelta(seconds=asked + 1), usegmt=True)
    receiver.retry_after = str(asked) if form == "seconds" else http_date
    sub = await store.add_subscription(receiver.url)
    delivery = await store.add_delivery(sub, "a")

    assert await dispatchers(retry_schedule_seconds=[0.05]).dispatch_once() == 1

    row = await store.delivery(delivery.id)
    assert row.status == DeliveryStatus.PENDING
    assert (row.attempts, row.last_status_code) == (1, status)
    assert row.next_attempt_at is not None
    # An HTTP-date has whole seconds, so allow for the one the test may have started into.
    assert row.next_attempt_at >= before + timedelta(seconds=asked - 1)
    assert row.next_attempt_at <= utcnow() + timedelta(seconds=asked + 2)


async def test_an_absurd_retry_after_is_capped_at_a_day(
    store: Any, receiver: WebhookReceiver, dispatchers: Dispatchers
) -> None:
    receiver.script = [429]
    receiver.retry_after = "9" * 40
    sub = await store.add_subscription(receiver.url)
    delivery = await store.add_delivery(sub, "a")

    assert await dispatchers().dispatch_once() == 1

    row = await store.delivery(delivery.id)
    assert row.next_attempt_at is not None
    assert timedelta(hours=23) < row.next_attempt_at - utcnow() <= timedelta(hours=24)


async def test_a_bad_endpoint_is_its_delivery_s_failed_attempt_and_the_others_go(
    store: Any, receiver: WebhookReceiver, dispatchers: Dispatchers, running: Running
) -> None:
    bad_port = await store.add_subscription("https://example.org:99999/h")
    bad_syntax = await store.add_subscription("https://[::1/x")
    private = await store.add_subscription("https://10.0.0.1/h")
    bad_secret = await store.add_subscription(receiver.url, secret="whsec_not base64!")
    good = await store.add_subscription(receiver.url)
    broken = [
        await store.add_delivery(bad_port, "a"),
        await store.add_delivery(bad_syntax, "a"),
        await store.add_delivery(private, "a"),
        await store.add_delivery(bad_secret, "a"),
    ]
    sent = await store.add_delivery(good, "a")
    dispatcher = dispatchers(retry_schedule_seconds=[3600.0])
    task = running(dispatcher)

    await wait_for(lambda: store.has_status(sent.id, DeliveryStatus.DELIVERED), what="delivered")

    async def all_tried() -> bool:
        return [(await store.delivery(d.id)).attempts for d in broken] == [1] * len(broken)

    await wait_for(all_tried, what="each broken delivery to have one failed attempt")
    errors = []
    for d in broken:
        row = await store.delivery(d.id)
        assert row.status == DeliveryStatus.PENDING and row.next_attempt_at is not None
        [attempt] = await store.attempts(d.id)
        assert attempt.status_code is None and attempt.error
        assert row.last_error == attempt.error
        errors.append(attempt.error)
    assert "port" in errors[0].lower()
    assert "not acceptable" in errors[1]
    assert "public" in errors[2]
    assert errors[3]  # whatever the signing library said about the secret

    # The loop is still alive and sends what comes next.
    assert not task.done()
    more = await store.add_delivery(good, "b")
    dispatcher.wake()
    await wait_for(lambda: store.has_status(more.id, DeliveryStatus.DELIVERED), what="the next delivery")
    assert ids_received(receiver) == [sent.event_id, more.event_id]


async def test_running_out_of_retries_fails_the_delivery_and_publishes_it(
    store: Any, receiver: WebhookReceiver, dispatchers: Dispatchers, running: Running
) -> None:
    receiver.script = [500, 502, 500]
    sub = await store.add_subscription(receiver.url, nation="FRA")
    delivery = await store.add_delivery(sub, "a")
    running(dispatchers(retry_schedule_seconds=[0.05, 0.05]))

    await wait_for(lambda: store.has_status(delivery.id, DeliveryStatus.FAILED), what="failed for good")

    row = await store.delivery(delivery.id)
    assert (row.attempts, row.last_status_code, row.next_attempt_at) == (3, 500, None)
    assert [a.status_code for a in await store.attempts(delivery.id)] == [500, 502, 500]
    assert len(receiver.received()) == 3
    assert {r.headers["webhook-id"] for r in receiver.received()} == {delivery.event_id}
    [event] = [r for r in await store.outbox() if r["type"] == "icep.notifications.delivery.failed.v1"]
    assert event["key"] == sub.id and event["nation"] == "FRA" and event["sent_at"] is None
    data = json.loads(event["data"])
    assert data["delivery_id"] == delivery.id and data["event_id"] == delivery.event_id
    assert data["attempts"] == 3 and data["last_status_code"] == 500


async def test_a_pending_delivery_survives_a_restart(
    store: Any,
    receiver: WebhookReceiver,
    dispatchers: Dispatchers,
    running: Running,
    stop_task: Callable[[asyncio.Task[None]], Any],
) -> None:
    receiver.script = [503]
    sub = await store.add_subscription(receiver.url)
    delivery = await store.add_delivery(sub, "a")
    first = dispatchers(retry_schedule_seconds=[1.0])
    task = running(first)
    await wait_for(lambda: len(receiver.received()) == 1, what="the first attempt")

    async def attempt_recorded() -> bool:
        return bool((await store.delivery(delivery.id)).attempts == 1)

    await wait_for(attempt_recorded, what="the first attempt to be recorded")
    await stop_task(task)
    await first.aclose()
    row = await store.delivery(delivery.id)
    assert (row.status, row.attempts) == (DeliveryStatus.PENDING, 1)

    # Another process: a new connection to the same database and a new dispatcher.
    second = dispatchers(db=store.another_connection(), retry_schedule_seconds=[1.0])
    running(second)
    await wait_for(lambda: store.has_status(delivery.id, DeliveryStatus.DELIVERED), what="delivered")
    assert ids_received(receiver) == [delivery.event_id, delivery.event_id]
    assert (await store.delivery(delivery.id)).attempts == 2


async def test_dispatchers_share_the_database_by_shard(
    store: Any,
    receiver: WebhookReceiver,
    dispatchers: Dispatchers,
    running: Running,
    stop_task: Callable[[asyncio.Task[None]], Any],
) -> None:
    first = dispatchers(db=store.another_connection())
    second = dispatchers(db=store.another_connection())
    sub = await store.add_subscription(receiver.url)

    assert await first.leadership.hold()
    if not store.db.is_postgres:
        # SQLite is one process's file: every dispatcher on it holds every shard (`icep.platform.shards`).
        assert await second.leadership.hold()
        assert await first.leadership.hold()
        return

    # PostgreSQL: the second holds no shard while the first holds them all, and sends nothing.
    assert not await second.leadership.hold()
    standby_delivery = await store.add_delivery(sub, "a")
    assert await second.dispatch_once() == 0
    assert not second.active and receiver.received() == []
    running(second)

    # Both loops running: every delivery is sent exactly once (the first holds the subscription's shard,
    # or lets it go to the second at a rebalance, stopping what it sends first).
    first_task = running(first)
    deliveries = [standby_delivery] + [await store.add_delivery(sub, f"k{n % 4}") for n in range(12)]
    first.wake()
    await wait_for(lambda: len(receiver.received()) >= len(deliveries), what="all sent")
    assert sorted(ids_received(receiver)) == sorted(d.event_id for d in deliveries)

    # The leader stops and its session ends: the standby takes over.
    await stop_task(first_task)
    await first.aclose()
    taken_over = await store.add_delivery(sub, "after")
    await wait_for(lambda: second.active, what="the other to take over")
    await wait_for(lambda: len(second.leadership.held) == second.leadership.shards, what="every shard")
    await wait_for(lambda: store.has_status(taken_over.id, DeliveryStatus.DELIVERED), what="delivered")
    assert ids_received(receiver).count(taken_over.event_id) == 1
