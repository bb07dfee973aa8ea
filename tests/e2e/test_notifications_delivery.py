"""Webhook delivery end to end: plans written through the gateway, events over Kafka, signed webhooks at
real local receivers that fail, recover, say they are gone or ask to wait; restarts in the middle of
retries; endpoints that resolve to where they must not; and what subscribers and operators see and do.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from standardwebhooks import Webhook

from icep.platform.events import ReceivedEvent, decode
from icep.platform.testing import ReceivedRequest, WebhookReceiver, read_records, wait_for

CREATED = "icep.plans.plan.created.v1"
SUBMITTED = "icep.plans.plan.submitted.v1"
DISABLED = "icep.notifications.subscription.disabled.v1"
DELIVERY_FAILED = "icep.notifications.delivery.failed.v1"
DISABLED_METRIC = "icep_webhook_subscriptions_disabled_total"
Clients = dict[str, httpx.AsyncClient]


# --- helpers ----------------------------------------------------------------------------------------


def port_of(receiver: WebhookReceiver) -> int:
    port = urlsplit(receiver.url).port
    assert port is not None
    return port


def partner_url(receiver: WebhookReceiver) -> str:
    """The receiver under a partner's host name (the platform's development `static_hosts`)."""
    return f"http://partner.test:{port_of(receiver)}/hooks"


async def subscribe(client: httpx.AsyncClient, url: str, types: list[str]) -> dict[str, Any]:
    r = await client.post("/v1/subscriptions", json={"url": url, "event_types": types})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def new_plan(
    client: httpx.AsyncClient, plan_body: Callable[..., dict[str, Any]], *, submit: bool = False
) -> dict[str, Any]:
    created = await client.post("/v1/plans", json=plan_body())
    assert created.status_code == 201, created.text
    plan: dict[str, Any] = created.json()
    if submit:
        r = await client.post(f"/v1/plans/{plan['id']}/submit", headers={"If-Match": created.headers["ETag"]})
        assert r.status_code == 200, r.text
    return plan


async def deliveries(client: httpx.AsyncClient, sub_id: str, **params: Any) -> list[dict[str, Any]]:
    r = await client.get(f"/v1/subscriptions/{sub_id}/deliveries", params={"limit": 200, **params})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def counted(n: int, items: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    return items if len(items) == n else None


def ids(hooks: list[ReceivedRequest]) -> list[str]:
    return [h.headers["webhook-id"] for h in hooks]


async def notifications_events(platform: Any, type: str, subject: str) -> list[ReceivedEvent]:
    """The notifications service's events of one type about one subscription, read back from Kafka."""
    records = await read_records(platform.bootstrap, platform.topic("icep.notifications.events"), timeout=5)
    found = [decode(r.key, r.value, r.headers) for r in records]
    return [e for e in found if e.type == type and e.subject == subject]


async def status_of_subscription(client: httpx.AsyncClient, sub_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/subscriptions/{sub_id}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.fixture
async def tidy(clients: Clients) -> AsyncIterator[list[str]]:
    """Subscriptions the test made on the shared platform (as deu-planner): disabled afterwards, so
    later tests' events do not go to receivers that are gone."""
    made: list[str] = []
    yield made
    for sub_id in made:
        await clients["deu"].post(
            f"/v1/subscriptions/{sub_id}/disable", json={"reason": "test over"}, headers={"If-Match": "*"}
        )


# --- on one shared platform (short retry schedule, loopback endpoints, partner.test -> 127.0.0.1) ------


async def test_a_receiver_that_fails_then_recovers_gets_every_event_once_and_in_order(
    platform: Any,
    clients: Clients,
    plan_body: Callable[..., dict[str, Any]],
    receiver: WebhookReceiver,
    tidy: list[str],
) -> None:
    deu = clients["deu"]
    await platform.settled()
    receiver.script = [500, 503, 500]
    sub = await subscribe(deu, partner_url(receiver), [CREATED, SUBMITTED])
    tidy.append(sub["id"])

    plans = [await new_plan(deu, plan_body, submit=True) for _ in range(3)]

    delivered = await wait_for(
        lambda: _delivered(deu, sub["id"], 6), timeout=60, what="six deliveries marked delivered"
    )
    hooks = receiver.received()
    answered = hooks[3:]  # the first three got 500, 503, 500; every one after them a 204
    # Every event once (per delivery, whose webhook-id is the event id), and nothing else.
    assert sorted(ids(answered)) == sorted(d["event_id"] for d in delivered)
    assert len(set(ids(answered))) == 6
    assert sum(d["attempts"] for d in delivered) == len(hooks) == 9
    for plan in plans:
        about = [h for h in hooks if h.json()["subject"] == plan["id"]]
        types = [h.json()["type"] for h in about]
        # In the aggregate's order: no submitted before its created was delivered (the last try of it).
        assert types[-1] == SUBMITTED and set(types[: types.index(SUBMITTED)]) == {CREATED}
        answered_types = [h.json()["type"] for h in answered if h.json()["subject"] == plan["id"]]
        assert answered_types == [CREATED, SUBMITTED]
    # Called by the partner's host name (dialled at the checked local address), signed.
    assert {h.headers["host"] for h in hooks} == {f"partner.test:{port_of(receiver)}"}
    for hook in answered:
        assert Webhook(sub["secret"]).verify(hook.body, hook.headers)["id"] == hook.headers["webhook-id"]


async def _delivered(client: httpx.AsyncClient, sub_id: str, n: int) -> list[dict[str, Any]] | None:
    return counted(n, await deliveries(client, sub_id, status="delivered"))


async def test_gone_disables_the_subscription_and_its_owner_is_told_on_kafka(
    platform: Any,
    clients: Clients,
    plan_body: Callable[..., dict[str, Any]],
    receiver: WebhookReceiver,
    tidy: list[str],
) -> None:
    deu = clients["deu"]
    await platform.settled()
    receiver.script = [410]
    sub = await subscribe(deu, receiver.url, [CREATED])
    tidy.append(sub["id"])

    await new_plan(deu, plan_body)

    async def disabled() -> dict[str, Any] | None:
        found = await status_of_subscription(deu, sub["id"])
        return found if found["status"] == "disabled" else None

    found = await wait_for(disabled, timeout=30, what="the subscription to be disabled")
    assert found["disabled_reason"] == "the endpoint answered 410 Gone"
    [event] = await wait_for(
        lambda: notifications_events(platform, DISABLED, sub["id"]), timeout=30, what="SubscriptionDisabled"
    )
    assert event.data["cause"] == "gone" and event.data["owner"] == "deu-planner"
    assert event.nation == "DEU"
    assert await platform.metric("notifications", DISABLED_METRIC, cause="gone") >= 1

    # Nothing more goes to it.
    await new_plan(deu, plan_body)
    await platform.settled()
    assert len(receiver.received()) == 1
    [delivery] = await deliveries(deu, sub["id"])
    assert delivery["status"] == "failed" and delivery["last_status_code"] == 410


async def test_a_delivery_that_fails_for_good_is_announced_and_can_be_redelivered(
    platform: Any,
    clients: Clients,
    plan_body: Callable[..., dict[str, Any]],
    receiver: WebhookReceiver,
    tidy: list[str],
) -> None:
    deu, fra, operator = clients["deu"], clients["fra"], clients["nato"]
    await platform.settled()
    receiver.script = [500] * 4  # the first try and all three retries
    sub = await subscribe(deu, receiver.url, [CREATED, SUBMITTED])
    tidy.append(sub["id"])
    failed_before = await platform.metric("notifications", "icep_webhook_deliveries_total", outcome="failed")

    plan = await new_plan(deu, plan_body)  # a draft: its creation is released to DEU alone

    [failed] = await wait_for(
        lambda: _with_status(deu, sub["id"], "failed"), timeout=30, what="the delivery to fail for good"
    )
    assert failed["attempts"] == 4 and failed["next_attempt_at"] is None
    assert [a["status_code"] for a in failed["attempt_log"]] == [500] * 4
    [announced] = await wait_for(
        lambda: notifications_events(platform, DELIVERY_FAILED, sub["id"]), timeout=30, what="DeliveryFailed"
    )
    assert announced.data["delivery_id"] == failed["id"] and announced.data["attempts"] == 4
    assert (
        await platform.metric("notifications", "icep_webhook_deliveries_total", outcome="failed")
        >= failed_before + 1
    )

    one = f"/v1/subscriptions/{sub['id']}/deliveries/{failed['id']}"
    # Another subscriber does not even see it; nor does NATO's operator, as NATO may not know of a draft.
    for other in (fra, operator):
        assert (await other.get(one)).status_code == 404
        assert (await other.post(f"{one}/redeliver", headers={"If-Match": "*"})).status_code == 404
    assert (await fra.get(f"/v1/subscriptions/{sub['id']}/deliveries")).status_code == 404
    assert await deliveries(operator, sub["id"]) == []
    # Submitted, the plan is NATO's to know of: NATO's operator sees that delivery and acts on it.
    r = await deu.post(f"/v1/plans/{plan['id']}/submit", headers={"If-Match": "*"})
    assert r.status_code == 200, r.text
    [submitted] = await wait_for(lambda: _delivered(deu, sub["id"], 1), timeout=30, what="the submission")
    assert submitted["event_type"] == SUBMITTED
    assert [d["id"] for d in await deliveries(operator, sub["id"])] == [submitted["id"]]
    two = f"/v1/subscriptions/{sub['id']}/deliveries/{submitted['id']}"
    seen = await operator.get(two)
    assert seen.status_code == 200 and seen.json()["attempts"] == 1
    asked = await operator.post(f"{two}/redeliver", headers={"If-Match": "*"})
    assert asked.status_code == 202, asked.text
    assert asked.json()["status"] == "pending"
    # The draft's failed delivery is DEU's to redeliver.
    asked = await deu.post(f"{one}/redeliver", headers={"If-Match": "*"})
    assert asked.status_code == 202, asked.text

    async def delivered_again(path: str, attempts: int) -> dict[str, Any] | None:
        found: dict[str, Any] = (await deu.get(path)).json()
        return found if found["status"] == "delivered" and found["attempts"] == attempts else None

    found = await wait_for(lambda: delivered_again(one, 5), timeout=30, what="the redelivery")
    assert found["attempt_log"][-1]["status_code"] == 204
    await wait_for(lambda: delivered_again(two, 2), timeout=30, what="the operator's redelivery")
    hooks = ids(receiver.received())
    assert sorted(hooks) == sorted([failed["event_id"]] * 5 + [submitted["event_id"]] * 2)


async def _with_status(client: httpx.AsyncClient, sub_id: str, status: str) -> list[dict[str, Any]] | None:
    return await deliveries(client, sub_id, status=status) or None


async def test_retry_after_is_honoured(
    platform: Any,
    clients: Clients,
    plan_body: Callable[..., dict[str, Any]],
    receiver: WebhookReceiver,
    tidy: list[str],
) -> None:
    deu = clients["deu"]
    await platform.settled()
    receiver.script = [503, 429]
    receiver.retry_after = "2"  # far more than the schedule's 0.2 s and 0.4 s
    sub = await subscribe(deu, receiver.url, [CREATED])
    tidy.append(sub["id"])

    await new_plan(deu, plan_body)

    [delivery] = await wait_for(lambda: _delivered(deu, sub["id"], 1), timeout=30, what="the delivery")
    hooks = receiver.received()
    assert len(hooks) == 3
    assert hooks[1].at - hooks[0].at >= 1.99 and hooks[2].at - hooks[1].at >= 1.99
    log = [datetime.fromisoformat(a["attempted_at"]) for a in delivery["attempt_log"]]
    assert [a["status_code"] for a in delivery["attempt_log"]] == [503, 429, 204]
    assert log[1] - log[0] >= timedelta(seconds=2) and log[2] - log[1] >= timedelta(seconds=2)


async def test_replay_sends_every_event_since_again_with_the_same_webhook_id(
    platform: Any,
    clients: Clients,
    plan_body: Callable[..., dict[str, Any]],
    receiver: WebhookReceiver,
    tidy: list[str],
) -> None:
    deu, fra, operator = clients["deu"], clients["fra"], clients["nato"]
    await platform.settled()
    sub = await subscribe(deu, receiver.url, [CREATED, SUBMITTED])
    tidy.append(sub["id"])
    since = datetime.now(UTC)
    plans = [await new_plan(deu, plan_body, submit=True) for _ in range(2)]
    first = await wait_for(lambda: _delivered(deu, sub["id"], 4), timeout=30, what="four deliveries")
    await wait_for(lambda: len(receiver.received()) == 4, what="four webhooks")

    replay = f"/v1/subscriptions/{sub['id']}/replay"
    assert (await fra.post(replay, json={"since": since.isoformat()})).status_code == 404
    naive = await deu.post(replay, json={"since": since.replace(tzinfo=None).isoformat()})
    assert naive.status_code == 422
    r = await deu.post(replay, json={"since": since.isoformat()})
    assert r.status_code == 202, r.text
    assert r.json()["replayed"] == 4 and r.json()["next_since"] is None

    await wait_for(lambda: len(receiver.received()) == 8, timeout=30, what="four more webhooks")
    again = receiver.received()[4:]
    assert sorted(ids(again)) == sorted(d["event_id"] for d in first)
    for plan in plans:
        assert [h.json()["type"] for h in again if h.json()["subject"] == plan["id"]] == [CREATED, SUBMITTED]
    # The receiver may have the webhooks a moment before the dispatcher records them as delivered.
    recorded = await wait_for(lambda: _delivered(deu, sub["id"], 8), timeout=30, what="eight recorded")
    replays = [d for d in recorded if d["generation"] == 1]
    assert sorted(d["replay_of"] for d in replays) == sorted(d["id"] for d in first)

    # NATO's operator replays what NATO may know of: the submissions, not the drafts' creation (released
    # to DEU alone); a later `since` replays fewer.
    r = await operator.post(replay, json={"since": (datetime.now(UTC) + timedelta(minutes=1)).isoformat()})
    assert r.status_code == 202 and r.json()["replayed"] == 0
    r = await operator.post(replay, json={"since": since.isoformat()})
    assert r.status_code == 202 and r.json()["replayed"] == 2
    await wait_for(lambda: len(receiver.received()) == 10, timeout=30, what="the operator's replay")
    assert sorted(ids(receiver.received()[8:])) == sorted(
        d["event_id"] for d in first if d["event_type"] == SUBMITTED
    )


async def test_only_the_start_of_a_receiver_s_answer_is_read_and_kept(
    platform: Any,
    clients: Clients,
    plan_body: Callable[..., dict[str, Any]],
    receiver: WebhookReceiver,
    tidy: list[str],
) -> None:
    deu = clients["deu"]
    await platform.settled()
    receiver.script = [200]
    receiver.response_body = b"y" * 1_000_000
    sub = await subscribe(deu, receiver.url, [CREATED])
    tidy.append(sub["id"])

    await new_plan(deu, plan_body)

    [delivery] = await wait_for(lambda: _delivered(deu, sub["id"], 1), timeout=30, what="the delivery")
    [attempt] = delivery["attempt_log"]
    assert attempt["status_code"] == 200 and attempt["response_body"] == "y" * 4096  # max_response_bytes


async def test_deliveries_are_listed_page_by_page(
    platform: Any,
    clients: Clients,
    plan_body: Callable[..., dict[str, Any]],
    receiver: WebhookReceiver,
    tidy: list[str],
) -> None:
    deu = clients["deu"]
    await platform.settled()
    sub = await subscribe(deu, receiver.url, [CREATED, SUBMITTED])
    tidy.append(sub["id"])
    for _ in range(3):
        await new_plan(deu, plan_body, submit=True)
    everything = await wait_for(lambda: _delivered(deu, sub["id"], 6), timeout=30, what="six deliveries")

    seen: list[str] = []
    url: str | None = f"/v1/subscriptions/{sub['id']}/deliveries?limit=4"
    while url:
        page = (await deu.get(url)).json()
        seen += [d["id"] for d in page["items"]]
        url = page["next"]
    assert seen == [d["id"] for d in everything] and seen == sorted(seen, reverse=True)
    assert await deliveries(deu, sub["id"], status="failed") == []

    # NATO's operator pages through the deliveries of the submissions only (the drafts' creation is DEU's).
    seen, url = [], f"/v1/subscriptions/{sub['id']}/deliveries?limit=2"
    while url:
        page = (await clients["nato"].get(url)).json()
        seen += [d["id"] for d in page["items"]]
        url = page["next"]
    assert seen == [d["id"] for d in everything if d["event_type"] == SUBMITTED] and len(seen) == 3


# --- on platforms of their own ----------------------------------------------------------------------


async def test_a_restart_in_the_middle_of_retries_loses_nothing(
    start_platform: Any,
    kafka_bootstrap: str,
    plan_body: Callable[..., dict[str, Any]],
    receiver: WebhookReceiver,
) -> None:
    platform = await start_platform(
        kafka_bootstrap, {"ICEP_NOTIFICATIONS_RETRY_SCHEDULE_SECONDS": json.dumps([3.0, 3.0, 3.0])}
    )
    deu = await platform.as_client("deu-planner")
    try:
        receiver.script = [503, 503, 503]
        sub = await subscribe(deu, receiver.url, [CREATED])
        for _ in range(3):
            await new_plan(deu, plan_body)

        async def first_tries_recorded() -> bool:
            found = await deliveries(deu, sub["id"])
            return len(found) == 3 and all(d["status"] == "pending" and d["attempts"] == 1 for d in found)

        await wait_for(first_tries_recorded, timeout=30, what="each delivery's first (failed) attempt")
        platform.restart("notifications")

        delivered = await wait_for(lambda: _delivered(deu, sub["id"], 3), timeout=60, what="all delivered")
        assert all(d["attempts"] == 2 for d in delivered)
        hooks = receiver.received()
        assert len(hooks) == 6
        assert sorted(ids(hooks[3:])) == sorted(ids(hooks[:3])) == sorted(d["event_id"] for d in delivered)
    finally:
        await deu.aclose()


async def test_a_subscription_that_keeps_failing_is_disabled_after_the_configured_time(
    start_platform: Any,
    kafka_bootstrap: str,
    plan_body: Callable[..., dict[str, Any]],
    receiver: WebhookReceiver,
) -> None:
    platform = await start_platform(
        kafka_bootstrap,
        {
            "ICEP_NOTIFICATIONS_DISABLE_AFTER_FAILING_SECONDS": "2",
            "ICEP_NOTIFICATIONS_RETRY_SCHEDULE_SECONDS": json.dumps([0.3] * 50),
        },
    )
    deu = await platform.as_client("deu-planner")
    try:
        receiver.script = [500] * 1000
        sub = await subscribe(deu, receiver.url, [CREATED])
        await new_plan(deu, plan_body)

        async def disabled() -> dict[str, Any] | None:
            found = await status_of_subscription(deu, sub["id"])
            return found if found["status"] == "disabled" else None

        found = await wait_for(disabled, timeout=30, what="the failing subscription to be disabled")
        assert found["disabled_reason"].startswith("every attempt failed since")
        [event] = await wait_for(
            lambda: notifications_events(platform, DISABLED, sub["id"]),
            timeout=30,
            what="SubscriptionDisabled",
        )
        assert event.data["cause"] == "failing" and event.data["owner"] == "deu-planner"
        [delivery] = await deliveries(deu, sub["id"])
        assert delivery["status"] == "failed"
        times = [datetime.fromisoformat(a["attempted_at"]) for a in delivery["attempt_log"]]
        assert times[-1] - times[0] >= timedelta(seconds=2)
        assert await platform.metric("notifications", DISABLED_METRIC, cause="failing") == 1
    finally:
        await deu.aclose()


async def test_endpoints_must_be_public_even_when_a_name_resolves_to_loopback(
    start_platform: Any,
    kafka_bootstrap: str,
    plan_body: Callable[..., dict[str, Any]],
    receiver: WebhookReceiver,
) -> None:
    # Production rules: no loopback endpoints. `partner.test` still points at 127.0.0.1 (static_hosts).
    platform = await start_platform(kafka_bootstrap, {"ICEP_NOTIFICATIONS_ALLOW_LOOPBACK_ENDPOINTS": "false"})
    deu = await platform.as_client("deu-planner")
    port = port_of(receiver)
    try:
        for refused in (
            receiver.url,
            f"https://127.0.0.1:{port}/hooks",
            f"https://localhost:{port}/hooks",
            "https://10.1.2.3/hooks",
            "https://[::ffff:169.254.169.254]/hooks",
            f"http://partner.test:{port}/hooks",  # a name, but not https
        ):
            r = await deu.post("/v1/subscriptions", json={"url": refused, "event_types": [CREATED]})
            assert r.status_code == 422, (refused, r.text)

        # A host name over https passes validation: only its address gives it away, when connecting.
        sub = await subscribe(deu, f"https://partner.test:{port}/hooks", [CREATED])
        await new_plan(deu, plan_body)

        async def tried() -> dict[str, Any] | None:
            found = await deliveries(deu, sub["id"])
            return found[0] if found and found[0]["attempt_log"] else None

        delivery = await wait_for(tried, timeout=30, what="the first attempt")
        error = delivery["attempt_log"][0]["error"]
        assert "partner.test resolves to 127.0.0.1, which is not a public address" in error
        assert delivery["attempt_log"][0]["status_code"] is None
        assert receiver.received() == []
    finally:
        await deu.aclose()
