"""Webhook subscriptions through the gateway, with real local receivers and real events from plans and
procurement: CRUD with If-Match, filters by type, nation, capability area and product, entitlement,
secret rotation, ping, pause and resume, disable and re-enable (their events read back from Kafka)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from icep.platform.db import Database
from icep.platform.events import decode
from icep.platform.testing import WebhookReceiver, consumer_caught_up, read_records, wait_for

PROBLEM = "application/problem+json"
Clients = dict[str, httpx.AsyncClient]
DEADLINE = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=60)).isoformat()
NEXT_YEAR = str(dt.datetime.now(dt.UTC).year + 1)


@pytest.fixture(scope="module")
async def c(platform: Any) -> AsyncIterator[Clients]:
    """Subscribers of DEU (two clients), UKR (a partner); the producers of the events."""
    made = {
        name: await platform.as_client(client_id)
        for name, client_id in {
            "deu": "deu-subscriber",
            "deu_planner": "deu-planner",
            "ukr": "ukr-partner",
            "pol_planner": "pol-planner",  # no subscriber role
            "nato": "nato-reviewer",
            "deu_proc": "deu-procurement",
            "fra_proc": "fra-procurement",
            "pol_proc": "pol-procurement",
        }.items()
    }
    try:
        yield made
    finally:
        for client in made.values():
            await client.aclose()


@pytest.fixture
def receivers() -> Iterator[Callable[[], WebhookReceiver]]:
    """`receivers()` starts another real webhook endpoint on 127.0.0.1; all stop after the test."""
    started: list[WebhookReceiver] = []

    def start() -> WebhookReceiver:
        started.append(WebhookReceiver().start())
        return started[-1]

    yield start
    for r in started:
        r.stop()


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    return dict(r.json())


async def subscribe(client: httpx.AsyncClient, url: str, **fields: Any) -> dict[str, Any]:
    r = await client.post("/v1/subscriptions", json={"url": url, "description": "e2e", **fields})
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == '"1"'
    return dict(r.json())


def if_match(version: int) -> dict[str, str]:
    return {"If-Match": f'"{version}"'}


def tag() -> str:
    return uuid.uuid4().hex[:8]


async def settled(platform: Any, *services: str) -> None:
    """Every event of these services is published and consumed by notifications: the deliveries it makes
    for them exist (an assertion that something did not arrive is only worth something afterwards)."""
    group = f"{platform.namespace}icep-notifications"

    async def quiet() -> bool:
        for name in services:
            if await platform.metric(name, "icep_outbox_backlog", service=name) != 0:
                return False
            if not await consumer_caught_up(platform.bootstrap, group, platform.topic(f"icep.{name}.events")):
                return False
        return True

    await wait_for(quiet, timeout=60, interval=0.2, what=f"notifications to consume {services}")


async def deliveries(client: httpx.AsyncClient, sub_id: str) -> list[dict[str, Any]]:
    r = await client.get(f"/v1/subscriptions/{sub_id}/deliveries", params={"limit": 200})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def all_sent(client: httpx.AsyncClient, sub_id: str) -> list[dict[str, Any]]:
    """The subscription's deliveries once none is pending any more."""

    async def done() -> list[dict[str, Any]] | None:
        found = await deliveries(client, sub_id)
        return found if all(d["status"] == "delivered" for d in found) else None

    result = await wait_for(done, timeout=30, interval=0.2, what=f"the deliveries of {sub_id} to be sent")
    return list(result or [])


def hooks(receiver: WebhookReceiver) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.received()]


async def demand_signal(
    client: httpx.AsyncClient, product: str, area: str = "munitions", **extra: Any
) -> dict[str, Any]:
    r = await client.post(
        "/v1/demand/signals",
        json={
            "product": product,
            "capability_area": area,
            "unit": "rounds",
            "firmness": "planned",
            "quantities": {NEXT_YEAR: 1000},
            **extra,
        },
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def plan_with(product: str) -> dict[str, Any]:
    return {
        "title": f"Capacity {tag()} (synthetic)",
        "period_start": "2025-01-01",
        "period_end": "2026-12-31",
        "capability_areas": ["munitions"],
        "releasability": {"scope": "allies"},
        "content": {
            "commitments": [
                {
                    "key": f"site-{tag()}",
                    "product": product,
                    "capability_area": "munitions",
                    "site": "Example site (synthetic)",
                    "site_country": "DEU",
                    "unit": "rounds",
                    "baseline_per_month": 1000,
                    "current_per_month": 1000,
                    "target_per_month": 2000,
                    "ramp": [{"on": "2026-01-01", "output_per_month": 2000}],
                    "operator": {"company": "Example Munitions GmbH (synthetic)", "sme": True},
                    "bottlenecks": [],
                }
            ]
        },
    }


async def draft_plan(c: Clients) -> str:
    r = await c["deu_planner"].post("/v1/plans", json=plan_with(f"round {tag()}"))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


# --- CRUD -----------------------------------------------------------------------------------------------


async def test_subscriptions_are_created_read_changed_and_deleted_with_if_match(
    c: Clients, receivers: Callable[[], WebhookReceiver]
) -> None:
    deu = c["deu"]
    url = receivers().url
    sub = await subscribe(
        deu,
        url,
        event_types=["icep.procurement.*"],
        nations=["deu", "FRA"],
        capability_areas=[" munitions "],
        products=["155mm artillery round"],
    )
    assert sub["secret"].startswith("whsec_") and sub["status"] == "active" and sub["version"] == 1
    assert (sub["nations"], sub["capability_areas"], sub["products"]) == (
        ["DEU", "FRA"],
        ["munitions"],
        ["155mm artillery round"],
    )
    path = f"/v1/subscriptions/{sub['id']}"
    got = await deu.get(path)
    assert got.status_code == 200 and got.headers["etag"] == '"1"' and "secret" not in got.json()
    assert sub["id"] in [s["id"] for s in (await deu.get("/v1/subscriptions")).json()["items"]]

    # Changing needs If-Match, and the current version.
    change = {"description": "shells only", "nations": [], "products": ["155mm artillery round", "x"]}
    assert problem(await deu.patch(path, json=change), 428)["status"] == 428
    stale = problem(await deu.patch(path, json=change, headers=if_match(7)), 412)
    assert stale["current_version"] == 1
    r = await deu.patch(path, json=change, headers=if_match(1))
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"2"'
    changed = r.json()
    assert (changed["description"], changed["nations"], changed["products"], changed["event_types"]) == (
        "shells only",
        [],
        ["155mm artillery round", "x"],
        ["icep.procurement.*"],
    )
    problem(await deu.patch(path, json={"nations": ["XXX"]}, headers=if_match(2)), 422)
    problem(await deu.patch(path, json={"owner": "someone"}, headers=if_match(2)), 422)
    problem(await deu.patch(path, json={"url": "https://10.0.0.1/hooks"}, headers=if_match(2)), 422)
    problem(await deu.post("/v1/subscriptions", json={"url": url, "nations": ["XXX"]}), 422)
    problem(await deu.post("/v1/subscriptions", json={"url": url, "products": [""]}), 422)
    # Another client of the same nation does not see it, let alone change or delete it.
    other = c["deu_planner"]
    problem(await other.get(path), 404)
    problem(await other.patch(path, json=change, headers=if_match(2)), 404)
    problem(await other.delete(path, headers=if_match(2)), 404)
    # A client without the subscriber role cannot subscribe.
    problem(await c["pol_planner"].post("/v1/subscriptions", json={"url": url}), 403)

    problem(await deu.delete(path), 428)
    problem(await deu.delete(path, headers=if_match(1)), 412)
    r = await deu.delete(path, headers=if_match(2))
    assert r.status_code == 204, r.text
    problem(await deu.get(path), 404)
    problem(await deu.delete(path, headers=if_match(3)), 404)
    assert sub["id"] not in [s["id"] for s in (await deu.get("/v1/subscriptions")).json()["items"]]


# --- filters and entitlement ----------------------------------------------------------------------------


async def test_filters_by_type_nation_capability_area_and_product(
    platform: Any, c: Clients, receivers: Callable[[], WebhookReceiver]
) -> None:
    deu = c["deu"]
    p1, p2, p_plan = (f"155mm round {tag()} (synthetic)" for _ in range(3))
    air = f"air defence {tag()}"
    r_product, r_nation, r_area, r_area_munitions, r_plan, r_plans_all = (receivers() for _ in range(6))
    subs = {
        "product": await subscribe(deu, r_product.url, event_types=["icep.procurement.*"], products=[p1]),
        "nation": await subscribe(
            deu,
            r_nation.url,
            event_types=["icep.procurement.demand_signal.*"],
            nations=["FRA"],
            products=[p1, p2],
        ),
        "area": await subscribe(deu, r_area.url, capability_areas=[air.upper()], products=[p1, p2]),
        "area_munitions": await subscribe(
            deu,
            r_area_munitions.url,
            event_types=["icep.procurement.initiative.*"],
            capability_areas=["munitions"],
            products=[p1],
        ),
        "plan": await subscribe(deu, r_plan.url, event_types=["icep.plans.*"], products=[p_plan]),
        "plans_all": await subscribe(deu, r_plans_all.url, event_types=["icep.plans.*"], nations=["DEU"]),
    }

    fra_p1 = await demand_signal(c["fra_proc"], p1)
    pol_p1_air = await demand_signal(c["pol_proc"], p1, air)
    fra_p2 = await demand_signal(c["fra_proc"], p2)
    r = await c["deu_proc"].post(
        "/v1/initiatives",
        json={
            "title": "Joint buy (synthetic)",
            "description": "Synthetic joint buy for tests.",
            "item": {
                "product": p1,
                "unit": "rounds",
                "classification_scheme": "CPV",
                "classification_id": "35321000",
            },
            "capability_area": "munitions",
            "required_standards": [],
            "participation_deadline": DEADLINE,
        },
    )
    assert r.status_code == 201, r.text
    initiative = r.json()
    r = await c["deu_proc"].post(
        f"/v1/initiatives/{initiative['id']}/open", headers=if_match(initiative["version"])
    )
    assert r.status_code == 200, r.text
    r = await c["deu_planner"].post("/v1/plans", json=plan_with(p_plan))
    assert r.status_code == 201, r.text
    plan_id = r.json()["id"]
    for who, action in (("deu_planner", "submit"), ("nato", "start-review"), ("nato", "accept")):
        r = await c[who].post(f"/v1/plans/{plan_id}/{action}", headers=if_match(r.json()["version"]))
        assert r.status_code == 200, r.text

    await settled(platform, "procurement", "plans")
    sent = {name: await all_sent(deu, s["id"]) for name, s in subs.items()}

    def seen(receiver: WebhookReceiver) -> set[tuple[str, str]]:
        return {(h["type"], h["subject"]) for h in hooks(receiver)}

    signal = "icep.procurement.demand_signal.published.v1"
    proposed = "icep.procurement.initiative.proposed.v1"
    opened = "icep.procurement.initiative.opened.v1"
    # Products: the demand signals and initiative events for p1, whoever owns them.
    assert seen(r_product) >= {
        (signal, fra_p1["id"]),
        (signal, pol_p1_air["id"]),
        (proposed, initiative["id"]),
        (opened, initiative["id"]),
    }
    assert all(h["data"]["product"] == p1 for h in hooks(r_product))
    # Nations: FRA's signals only.
    assert seen(r_nation) == {(signal, fra_p1["id"]), (signal, fra_p2["id"])}
    # Capability areas, compared without case.
    assert seen(r_area) == {(signal, pol_p1_air["id"])}
    # The initiative's proposal names its capability area; its opening does not, so it does not match.
    assert seen(r_area_munitions) == {(proposed, initiative["id"])}
    # Plans events carry a product only when about capacity: only the commitment passes.
    assert seen(r_plan) == {("icep.plans.capacity.committed.v1", plan_id)}
    assert hooks(r_plan)[0]["data"]["capability_area"] == "munitions"
    # Without a product filter the same plan's other events arrive (so the filter is what kept them out).
    assert {t for t, s in seen(r_plans_all) if s == plan_id} >= {
        "icep.plans.plan.created.v1",
        "icep.plans.plan.accepted.v1",
        "icep.plans.capacity.committed.v1",
    }
    # Every webhook sent was made as a delivery, and every one verifies with its subscription's secret.
    for name, receiver in (("product", r_product), ("nation", r_nation), ("area", r_area)):
        assert len(receiver.received()) == len(sent[name])
        for request in receiver.received():
            Webhook(subs[name]["secret"]).verify(request.body, request.headers)


async def test_a_subscriber_never_gets_what_its_nation_may_not_see(
    platform: Any, c: Clients, receivers: Callable[[], WebhookReceiver]
) -> None:
    product = f"155mm round {tag()} (synthetic)"
    r_deu, r_ukr, r_ukr_pol = receivers(), receivers(), receivers()
    deu_sub = await subscribe(c["deu"], r_deu.url, products=[product])
    ukr_sub = await subscribe(c["ukr"], r_ukr.url, products=[product])
    # A nations filter narrows; naming POL does not let UKR see POL's events released to Allies only.
    ukr_pol_sub = await subscribe(c["ukr"], r_ukr_pol.url, nations=["POL"], products=[product])

    to_deu = await demand_signal(
        c["pol_proc"], product, releasability={"scope": "nations", "nations": ["DEU"]}
    )
    to_allies = await demand_signal(c["pol_proc"], product)
    to_ukr = await demand_signal(
        c["pol_proc"], product, releasability={"scope": "allies_partners", "nations": ["UKR"]}
    )
    await settled(platform, "procurement")

    deu_got = {d["event_id"] for d in await all_sent(c["deu"], deu_sub["id"])}
    ukr_got = [d["event_id"] for d in await all_sent(c["ukr"], ukr_sub["id"])]
    ukr_pol_got = [d["event_id"] for d in await all_sent(c["ukr"], ukr_pol_sub["id"])]
    # The three events are on Kafka, each with its marking.
    records = await read_records(platform.bootstrap, platform.topic("icep.procurement.events"))
    events = {
        e.subject: e
        for e in (decode(r.key, r.value, r.headers) for r in records)
        if e.data.get("product") == product
    }
    assert [events[s["id"]].releasable_to for s in (to_deu, to_allies, to_ukr)] == [
        "POL,DEU",
        "ALLIES",
        "ALLIES,UKR",
    ]
    ids = {s["id"]: events[s["id"]].id for s in (to_deu, to_allies, to_ukr)}
    assert deu_got == set(ids.values())
    assert ukr_got == ukr_pol_got == [ids[to_ukr["id"]]]
    assert [h["subject"] for h in hooks(r_ukr)] == [h["subject"] for h in hooks(r_ukr_pol)] == [to_ukr["id"]]
    assert len(r_deu.received()) == 3


# --- rotation and ping ----------------------------------------------------------------------------------


async def test_after_a_rotation_webhooks_verify_with_the_old_and_the_new_secret(
    c: Clients, receivers: Callable[[], WebhookReceiver], platform: Any
) -> None:
    receiver = receivers()
    sub = await subscribe(c["deu"], receiver.url, event_types=["icep.plans.plan.created.*"])
    path = f"/v1/subscriptions/{sub['id']}"
    problem(await c["deu"].post(f"{path}/rotate-secret", headers=if_match(3)), 412)
    problem(await c["deu_planner"].post(f"{path}/rotate-secret", headers=if_match(1)), 404)
    sent = {**if_match(1), "Idempotency-Key": str(uuid.uuid4())}
    r = await c["deu"].post(f"{path}/rotate-secret", headers=sent)
    assert r.status_code == 200, r.text
    # The answer showing the secret is kept for retries (and replayed whole), but sealed at rest.
    again = await c["deu"].post(f"{path}/rotate-secret", headers=sent)
    assert again.headers["idempotent-replayed"] == "true" and again.json() == r.json()
    await assert_no_plaintext_secrets(platform, [sub["secret"], r.json()["secret"]])
    rotated = r.json()
    assert r.headers["etag"] == '"2"' and rotated["version"] == 2
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != sub["secret"]
    grace_ends = dt.datetime.fromisoformat(rotated["previous_secret_expires_at"])
    assert dt.timedelta(hours=23) < grace_ends - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=24)
    assert "secret" not in (await c["deu"].get(path)).json()

    plan_id = await draft_plan(c)

    async def arrived() -> Any:
        return [r for r in receiver.received() if json.loads(r.body)["subject"] == plan_id]

    [hook] = await wait_for(arrived, timeout=30, what="the webhook after the rotation")
    assert len(hook.headers["webhook-signature"].split(" ")) == 2
    assert Webhook(sub["secret"]).verify(hook.body, hook.headers)["subject"] == plan_id
    assert Webhook(rotated["secret"]).verify(hook.body, hook.headers)["subject"] == plan_id
    with pytest.raises(WebhookVerificationError):
        Webhook(sub["secret"]).verify(hook.body.replace(plan_id.encode(), b"x"), hook.headers)


async def assert_no_plaintext_secrets(platform: Any, known: list[str]) -> None:
    """Read the notifications database directly: the signing secrets and the stored answers that show
    them are sealed; no `whsec_` anywhere in the rows (nor in the SQLite file)."""
    url = platform.launcher.env["ICEP_NOTIFICATIONS_DATABASE_URL"]
    db = Database(url)
    try:
        async with db.connect() as conn:
            secrets = (await conn.execute(sa.text("SELECT secret, previous_secret FROM subscriptions"))).all()
            answers = (await conn.execute(sa.text("SELECT body FROM idempotency_keys"))).all()
    finally:
        await db.dispose()
    assert secrets and answers
    stored = [v for row in secrets for v in row if v is not None]
    assert all(v.startswith("icep-sealed:v1:") for v in stored)
    assert not [v for v in stored if "whsec_" in v]
    assert not [a for (a,) in answers if a is not None and b"whsec_" in bytes(a)]
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        for file in (f for f in (path, path.with_name(path.name + "-wal")) if f.exists()):
            content = file.read_bytes()
            assert not [k for k in known if k.encode() in content] and b"whsec_" not in content, file


async def test_ping_sends_a_signed_ping_and_reports_the_answer(
    c: Clients, receivers: Callable[[], WebhookReceiver]
) -> None:
    receiver = receivers()
    sub = await subscribe(c["deu"], receiver.url, event_types=["icep.nothing.*"])
    path = f"/v1/subscriptions/{sub['id']}/ping"
    r = await c["deu"].post(path)
    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["ok"], result["status_code"], result["error"]) == (True, 204, None)
    assert result["latency_ms"] >= 0
    [hook] = receiver.received()
    assert hook.headers["webhook-id"] == result["message_id"]
    ping = Webhook(sub["secret"]).verify(hook.body, hook.headers)
    assert (ping["type"], ping["subject"], ping["data"]["subscription_id"]) == (
        "icep.notifications.ping.v1",
        sub["id"],
        sub["id"],
    )
    assert await deliveries(c["deu"], sub["id"]) == []  # a ping is no delivery

    receiver.script = [503]
    failed = (await c["deu"].post(path)).json()
    assert (failed["ok"], failed["status_code"]) == (False, 503)

    # An endpoint nobody listens on: the error says why.
    gone = receivers()
    gone_sub = await subscribe(c["deu"], gone.url, event_types=["icep.nothing.*"])
    gone.stop()
    down = (await c["deu"].post(f"/v1/subscriptions/{gone_sub['id']}/ping")).json()
    assert down["ok"] is False and down["status_code"] is None and down["error"]
    problem(await c["ukr"].post(path), 404)


# --- pause, resume, disable, re-enable ------------------------------------------------------------------


async def test_a_paused_subscription_holds_its_deliveries_and_releases_them_in_order(
    platform: Any, c: Clients, receivers: Callable[[], WebhookReceiver]
) -> None:
    receiver = receivers()
    sub = await subscribe(c["deu"], receiver.url, event_types=["icep.plans.plan.*"], nations=["DEU"])
    base = f"/v1/subscriptions/{sub['id']}"
    problem(await c["deu"].post(f"{base}/pause", headers=if_match(5)), 412)
    r = await c["deu"].post(f"{base}/pause", headers=if_match(1))
    assert r.status_code == 200 and r.json()["status"] == "paused" and r.headers["etag"] == '"2"'
    assert (
        problem(await c["deu"].post(f"{base}/pause", headers=if_match(2)), 409)["current_state"] == "paused"
    )

    plan_id = await draft_plan(c)
    for who, action in (("deu_planner", "submit"), ("nato", "start-review")):
        r = await c[who].post(f"/v1/plans/{plan_id}/{action}", headers={"If-Match": "*"})
        assert r.status_code == 200, r.text
    order = [
        "icep.plans.plan.created.v1",
        "icep.plans.plan.submitted.v1",
        "icep.plans.plan.review_started.v1",
    ]
    await settled(platform, "plans")
    held = [d for d in await deliveries(c["deu"], sub["id"]) if d["event_type"] in order]
    assert len(held) >= 3 and {(d["status"], d["attempts"]) for d in held} == {("pending", 0)}
    await asyncio.sleep(2.0)  # the dispatcher polls every second: it had its chances
    assert receiver.received() == []

    r = await c["deu"].post(f"{base}/resume", headers=if_match(2))
    assert r.status_code == 200 and r.json()["status"] == "active"
    problem(await c["deu"].post(f"{base}/resume", headers=if_match(3)), 409)

    async def released() -> list[str] | None:
        mine = [h["type"] for h in hooks(receiver) if h["subject"] == plan_id]
        return mine if len(mine) >= 3 else None

    assert await wait_for(released, timeout=30, what="the held deliveries") == order


async def test_disabling_and_re_enabling_are_events_and_a_disabled_subscription_gets_nothing(
    platform: Any, c: Clients, receivers: Callable[[], WebhookReceiver]
) -> None:
    receiver = receivers()
    sub = await subscribe(c["deu"], receiver.url, event_types=["icep.plans.plan.created.*"])
    base = f"/v1/subscriptions/{sub['id']}"
    problem(await c["deu"].post(f"{base}/disable", json={}, headers=if_match(1)), 422)
    problem(
        await c["deu_planner"].post(f"{base}/disable", json={"reason": "mine now"}, headers=if_match(1)), 404
    )
    r = await c["deu"].post(f"{base}/disable", json={"reason": "moving the endpoint"}, headers=if_match(1))
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["disabled_reason"]) == ("disabled", "moving the endpoint")
    problem(await c["deu"].post(f"{base}/disable", json={"reason": "again"}, headers=if_match(2)), 409)

    while_disabled = await draft_plan(c)
    await settled(platform, "plans")
    assert await deliveries(c["deu"], sub["id"]) == []
    assert receiver.received() == []

    r = await c["deu"].post(f"{base}/resume", headers=if_match(2))
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["disabled_reason"]) == ("active", None)
    after = await draft_plan(c)

    async def arrived() -> list[str] | None:
        subjects = [h["subject"] for h in hooks(receiver)]
        return subjects if after in subjects else None

    assert while_disabled not in (
        await wait_for(arrived, timeout=30, what="a webhook after re-enabling") or []
    )

    async def announced() -> list[Any] | None:
        records = await read_records(platform.bootstrap, platform.topic("icep.notifications.events"))
        mine = sorted(
            (
                e
                for e in (decode(r.key, r.value, r.headers, offset=r.offset) for r in records)
                if e.subject == sub["id"]
            ),
            key=lambda e: e.offset,
        )
        return mine if len(mine) >= 3 else None

    created, disabled, reenabled = await wait_for(announced, timeout=30, what="the subscription's events")
    assert [e.type for e in (created, disabled, reenabled)] == [
        "icep.notifications.subscription.created.v1",
        "icep.notifications.subscription.disabled.v1",
        "icep.notifications.subscription.reenabled.v1",
    ]
    assert (disabled.data["cause"], disabled.data["reason"], disabled.data["owner"]) == (
        "owner",
        "moving the endpoint",
        "deu-subscriber",
    )
    assert (reenabled.data["reenabled_by"], reenabled.nation, reenabled.releasable_to) == (
        "deu-subscriber",
        "DEU",
        "DEU",
    )
