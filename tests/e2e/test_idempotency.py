"""Idempotency-Key through the gateway, on a POST of every service: a retry gets the first answer and
nothing happens twice; another request with the key is 422; a request refused before it changed anything
does not spend its key, so the fixed request runs with it; keys are each client's own; requests racing
with one key run once; and a key that expired is a new key.

A service that dies after its commit, before its answer leaves, still gives the retry the first answer
(the answer is kept in the change's transaction): the last test. The finer cases (a 5xx after the use case,
a lost connection) are tested with the store and a real unit of work in shared/tests/test_idempotency.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from icep.platform.events import decode
from icep.platform.testing import WebhookReceiver, read_records, wait_for

Clients = dict[str, httpx.AsyncClient]
PROBLEM = "application/problem+json"
NEXT_YEAR = dt.date.today().year + 1


@pytest.fixture(scope="module")
async def c(platform: Any) -> AsyncIterator[Clients]:
    made = {
        name: await platform.as_client(client_id)
        for name, client_id in {
            "deu": "deu-planner",
            "fra": "fra-planner",
            "nato": "nato-reviewer",
            "deu_proc": "deu-procurement",
            "fra_proc": "fra-procurement",
            "nato_std": "nato-standards",
            "deu_sub": "deu-subscriber",
        }.items()
    }
    try:
        yield made
    finally:
        for client in made.values():
            await client.aclose()


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:8]}"


def plan_body() -> dict[str, Any]:
    return {
        "title": unique("Idempotent munitions plan"),
        "period_start": "2025-01-01",
        "period_end": "2029-12-31",
        "capability_areas": ["munitions"],
        "releasability": {"scope": "allies"},
    }


async def events_of(platform: Any, topic: str, subject: str) -> list[str]:
    records = await read_records(platform.bootstrap, platform.topic(topic))
    return [e.type for e in (decode(r.key, r.value, r.headers) for r in records) if e.subject == subject]


def assert_replayed(first: httpx.Response, again: httpx.Response) -> None:
    assert again.status_code == first.status_code, again.text
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    for header in ("etag", "location", "content-type"):
        assert again.headers.get(header) == first.headers.get(header), header


async def post_twice(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], **headers: str
) -> tuple[httpx.Response, httpx.Response]:
    sent = {**key(), **headers}
    first = await client.post(path, json=body, headers=sent)
    again = await client.post(path, json=body, headers=sent)
    assert first.status_code < 300, first.text
    assert_replayed(first, again)
    return first, again


# --- a retry gets the first answer, on every service --------------------------------------------------


async def test_creating_a_plan_twice_with_one_key_creates_one_plan(c: Clients, platform: Any) -> None:
    body = plan_body()
    first, _ = await post_twice(c["deu"], "/v1/plans", body)
    assert first.status_code == 201
    mine = (await c["deu"].get("/v1/plans", params={"nation": "DEU", "limit": 200})).json()["items"]
    assert [p["id"] for p in mine if p["title"] == body["title"]] == [first.json()["id"]]
    await platform.settled()
    assert await events_of(platform, "icep.plans.events", first.json()["id"]) == [
        "icep.plans.plan.created.v1"
    ]


async def test_an_action_retried_with_its_key_gets_its_answer_not_a_stale_version(c: Clients) -> None:
    plan = (await c["deu"].post("/v1/plans", json=plan_body())).json()
    submit = f"/v1/plans/{plan['id']}/submit"
    first, _ = await post_twice(c["deu"], submit, {}, **{"If-Match": '"1"'})
    assert first.json()["status"] == "submitted" and first.headers["etag"] == '"2"'
    # Without the key the same retry is what it is: a change of a version that is gone.
    assert (await c["deu"].post(submit, json={}, headers={"If-Match": '"1"'})).status_code == 412
    versions = (await c["deu"].get(f"/v1/plans/{plan['id']}/versions")).json()["items"]
    assert [v["status"] for v in versions] == ["draft", "submitted"]


async def test_proposing_an_initiative_and_publishing_a_demand_signal_happen_once(
    c: Clients, platform: Any
) -> None:
    product = unique("155mm round (idempotency)")
    initiative = {
        "title": "Idempotent joint buy (synthetic)",
        "item": {"product": product, "unit": "rounds"},
        "capability_area": "munitions",
        "required_standards": [],
        "participation_deadline": (dt.date.today() + dt.timedelta(days=60)).isoformat(),
    }
    first, _ = await post_twice(c["deu_proc"], "/v1/initiatives", initiative)
    listed = (await c["deu_proc"].get("/v1/initiatives", params={"product": product})).json()["items"]
    assert [i["id"] for i in listed] == [first.json()["id"]]

    signal = {
        "product": product,
        "capability_area": "munitions",
        "unit": "rounds",
        "firmness": "planned",
        "quantities": {str(NEXT_YEAR): 1000},
    }
    sent, _ = await post_twice(c["fra_proc"], "/v1/demand/signals", signal)
    signals = (await c["fra_proc"].get("/v1/demand/signals", params={"product": product})).json()["items"]
    assert [s["id"] for s in signals] == [sent.json()["id"]]
    published = await wait_for(
        lambda: events_of(platform, "icep.procurement.events", sent.json()["id"]), what="the signal event"
    )
    assert published == ["icep.procurement.demand_signal.published.v1"]


async def test_drafting_a_standard_happens_once(c: Clients) -> None:
    number = f"8{uuid.uuid4().int % 10**8:08d}"
    body = {
        "kind": "STANAG",
        "number": number,
        "edition": 1,
        "title": "Idempotent interchangeability (synthetic)",
        "domain": "land",
        "capability_areas": ["munitions"],
        "levels": ["1"],
    }
    first, _ = await post_twice(c["nato_std"], "/v1/standards", body)
    found = (await c["nato_std"].get("/v1/standards", params={"number": number})).json()["items"]
    assert [s["id"] for s in found] == [first.json()["id"]]


async def test_subscribing_twice_with_one_key_makes_one_subscription(
    c: Clients, receiver: WebhookReceiver
) -> None:
    body = {"url": receiver.url, "description": unique("idempotent"), "event_types": ["icep.nothing.*"]}
    first, again = await post_twice(c["deu_sub"], "/v1/subscriptions", body)
    assert again.json()["secret"] == first.json()["secret"]  # the first answer, secret and all
    mine = (await c["deu_sub"].get("/v1/subscriptions")).json()["items"]
    assert [s["id"] for s in mine if s["description"] == body["description"]] == [first.json()["id"]]


# --- what a key may not do ------------------------------------------------------------------------------


async def test_the_same_key_with_another_body_is_422(c: Clients) -> None:
    sent = key()
    first = await c["deu"].post("/v1/plans", json=plan_body(), headers=sent)
    assert first.status_code == 201
    other = await c["deu"].post("/v1/plans", json=plan_body(), headers=sent)
    assert other.status_code == 422 and other.headers["content-type"].startswith(PROBLEM)
    assert other.json()["type"].endswith("/idempotency-key-reused")
    # ... and on another path too: a key names one request.
    elsewhere = await c["deu"].post(f"/v1/plans/{first.json()['id']}/submit", headers=sent)
    assert elsewhere.status_code == 422


async def test_a_change_refused_for_its_precondition_runs_with_the_same_key_once_fixed(c: Clients) -> None:
    plan = (await c["deu"].post("/v1/plans", json=plan_body())).json()
    submit, sent = f"/v1/plans/{plan['id']}/submit", key()
    refused = await c["deu"].post(submit, json={}, headers=sent)
    assert refused.status_code == 428 and refused.headers["content-type"].startswith(PROBLEM), refused.text
    # The refusal changed nothing and is not kept: the request with If-Match and the same key runs.
    ran = await c["deu"].post(submit, json={}, headers={**sent, "If-Match": '"1"'})
    assert ran.status_code == 200, ran.text
    assert "idempotent-replayed" not in ran.headers and ran.json()["status"] == "submitted"
    # From now on the key is spent: its retry gets that answer.
    assert_replayed(ran, await c["deu"].post(submit, json={}, headers={**sent, "If-Match": '"1"'}))
    versions = (await c["deu"].get(f"/v1/plans/{plan['id']}/versions")).json()["items"]
    assert [v["status"] for v in versions] == ["draft", "submitted"]


async def test_an_invalid_request_does_not_spend_its_key_so_the_corrected_one_runs(
    c: Clients, platform: Any
) -> None:
    body, sent = plan_body(), key()
    invalid = await c["deu"].post("/v1/plans", json={**body, "period_end": "not a date"}, headers=sent)
    assert invalid.status_code == 422 and invalid.json()["type"].endswith("/validation"), invalid.text
    # Another body with the key would be 422 `idempotency-key-reused` had the first run; it had no effect
    # and was released, so the corrected request runs with the same key.
    created = await c["deu"].post("/v1/plans", json=body, headers=sent)
    assert created.status_code == 201 and "idempotent-replayed" not in created.headers, created.text
    assert_replayed(created, await c["deu"].post("/v1/plans", json=body, headers=sent))
    mine = (await c["deu"].get("/v1/plans", params={"nation": "DEU", "limit": 200})).json()["items"]
    assert [p["id"] for p in mine if p["title"] == body["title"]] == [created.json()["id"]]
    await platform.settled()
    assert await events_of(platform, "icep.plans.events", created.json()["id"]) == [
        "icep.plans.plan.created.v1"
    ]


async def test_two_clients_keys_do_not_meet(c: Clients) -> None:
    sent = key()
    deu = await c["deu"].post("/v1/plans", json=plan_body(), headers=sent)
    fra = await c["fra"].post("/v1/plans", json=plan_body(), headers=sent)
    assert deu.status_code == fra.status_code == 201
    assert "idempotent-replayed" not in fra.headers and fra.json()["nation"] == "FRA"
    assert deu.json()["id"] != fra.json()["id"]


@pytest.mark.parametrize("bad", ["", "has space", "x" * 256, "tab\there"])
async def test_a_key_that_is_not_one_is_400(c: Clients, bad: str) -> None:
    r = await c["deu"].post("/v1/plans", json=plan_body(), headers={"Idempotency-Key": bad})
    assert r.status_code == 400, r.text
    assert r.json()["type"].endswith("/invalid-idempotency-key")


async def test_without_a_token_the_key_changes_nothing(platform: Any) -> None:
    r = await platform.http.post(f"{platform.gateway}/v1/plans", json=plan_body(), headers=key())
    assert r.status_code == 401


# --- racing requests ------------------------------------------------------------------------------------


async def test_identical_requests_at_once_run_once(c: Clients, platform: Any) -> None:
    body, sent = plan_body(), key()
    answers = await asyncio.gather(*(c["deu"].post("/v1/plans", json=body, headers=sent) for _ in range(6)))
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) <= {201, 409}, [r.text for r in answers]
    ran = [r for r in answers if r.status_code == 201 and "idempotent-replayed" not in r.headers]
    assert len(ran) == 1
    replays = [r for r in answers if r.status_code == 201 and r not in ran]
    assert all(r.json() == ran[0].json() for r in replays)
    for busy in (r for r in answers if r.status_code == 409):
        assert (
            busy.json()["type"].endswith("/idempotency-key-in-use") and int(busy.headers["retry-after"]) >= 1
        )
    # Once the first is done, a retry gets its answer.
    assert_replayed(ran[0], await c["deu"].post("/v1/plans", json=body, headers=sent))
    mine = (await c["deu"].get("/v1/plans", params={"nation": "DEU", "limit": 200})).json()["items"]
    assert [p["id"] for p in mine if p["title"] == body["title"]] == [ran[0].json()["id"]]
    await platform.settled()
    assert await events_of(platform, "icep.plans.events", ran[0].json()["id"]) == [
        "icep.plans.plan.created.v1"
    ]


# --- expiry ---------------------------------------------------------------------------------------------


async def test_an_expired_key_is_a_new_key(
    start_platform: Callable[..., Awaitable[Any]], kafka_bootstrap: str
) -> None:
    running = await start_platform(
        kafka_bootstrap, {"ICEP_IDEMPOTENCY_TTL_SECONDS": "2", "ICEP_IDEMPOTENCY_PURGE_SECONDS": "0.5"}
    )
    deu = await running.as_client("deu-planner")
    try:
        body, sent = plan_body(), key()
        first = await deu.post("/v1/plans", json=body, headers=sent)
        assert first.status_code == 201, first.text
        answers: list[httpx.Response] = []

        async def ran_again() -> bool:
            r = await deu.post("/v1/plans", json=body, headers=sent)
            answers.append(r)
            return r.status_code == 201 and "idempotent-replayed" not in r.headers

        await wait_for(ran_again, timeout=60, interval=0.2, what="the key to expire")
        *replays, fresh = answers
        # Until it expired the key gave the first answer; after, the request ran as a new one.
        assert all(r.headers["idempotent-replayed"] == "true" and r.json() == first.json() for r in replays)
        assert fresh.json()["id"] != first.json()["id"]
        mine = (await deu.get("/v1/plans", params={"nation": "DEU", "limit": 200})).json()["items"]
        assert sorted(p["id"] for p in mine if p["title"] == body["title"]) == sorted(
            [first.json()["id"], fresh.json()["id"]]
        )
    finally:
        await deu.aclose()


# --- the answer is kept with the change -----------------------------------------------------------------


async def test_an_answer_lost_when_the_service_dies_after_its_commit_is_replayed(
    c: Clients, platform: Any
) -> None:
    """Plans dies right after committing a new plan, before its answer leaves (fault point
    `idempotency.after_commit`). The answer was written in the same transaction as the plan, so after a
    restart the retry with the same key gets it: 201, the same id and `Location`, and one plan exists.
    (Last in this module: it restarts plans, then leaves it as it found it.)"""
    platform.restart("plans", {"ICEP_FAULTS": "idempotency.after_commit"})
    try:
        body, sent = plan_body(), key()
        lost = await c["deu"].post("/v1/plans", json=body, headers=sent)
        assert lost.status_code >= 500, lost.text  # the gateway never got the answer
        plans = platform.launcher.processes["plans"]
        await wait_for(lambda: not plans.alive(), timeout=30, what="plans to die after its commit")
        assert plans.process.returncode == 86
    finally:
        platform.restart("plans", {"ICEP_FAULTS": ""})
    retried = await c["deu"].post("/v1/plans", json=body, headers=sent)
    assert retried.status_code == 201, retried.text
    assert retried.headers["idempotent-replayed"] == "true"
    plan_id = retried.json()["id"]
    assert retried.headers["location"] == f"/v1/plans/{plan_id}"
    mine = (await c["deu"].get("/v1/plans", params={"nation": "DEU", "limit": 200})).json()["items"]
    assert [p["id"] for p in mine if p["title"] == body["title"]] == [plan_id]
    fetched = await c["deu"].get(retried.headers["location"])
    assert fetched.status_code == 200 and fetched.json()["title"] == body["title"]
