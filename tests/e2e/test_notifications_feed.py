"""The catch-up feed and the live stream end to end, through the gateway, with real plans events: the feed
holds exactly what Kafka carried (for what each nation may see), in order and without gaps; other nations
never see what is not released to them, on the feed or the stream; the stream pushes new events live and
resumes from `Last-Event-ID` without loss or repeats; a cursor past retention is 410 Gone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from icep.contracts import Releasability
from icep.platform.events import ReceivedEvent, decode
from icep.platform.testing import read_records, wait_for

Clients = dict[str, httpx.AsyncClient]
PROBLEM = "application/problem+json"
STREAM_TIMEOUT = httpx.Timeout(20, read=60)


def plan_body(**extra: Any) -> dict[str, Any]:
    return {
        "title": f"Munitions ramp-up {uuid.uuid4().hex[:6]}",
        "period_start": "2025-01-01",
        "period_end": "2029-12-31",
        "capability_areas": ["munitions"],
        "releasability": {"scope": "allies"},
        "content": {
            "commitments": [
                {
                    "key": key,
                    "product": "155mm artillery round",
                    "capability_area": "munitions",
                    "site": f"{key} (synthetic figures)",
                    "site_country": "DEU",
                    "unit": "rounds",
                    "baseline_per_month": 4000,
                    "current_per_month": 8000,
                    "target_per_month": 20000,
                    "ramp": [{"on": "2026-01-01", "output_per_month": 12000}],
                    "operator": {"company": "Synthetic Munitions GmbH", "sme": False},
                }
                for key in ("unterluess-155", "trittau-155")
            ]
        },
        **extra,
    }


def ok(r: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    return body


def if_match(record: dict[str, Any]) -> dict[str, str]:
    return {"If-Match": f'"{record["version"]}"'}


async def accepted_plan(c: Clients) -> str:
    """A DEU plan taken to accepted: created and submitted/review events for DEU (and NATO), accepted for
    the Allies, and its two capacity commitments for the Allies and UKR."""
    plan = ok(
        await c["deu"].post(
            "/v1/plans",
            json=plan_body(capacity_releasability={"scope": "allies_partners", "nations": ["UKR"]}),
        ),
        201,
    )
    pid = str(plan["id"])
    plan = ok(await c["deu"].post(f"/v1/plans/{pid}/submit", headers=if_match(plan)))
    plan = ok(await c["nato"].post(f"/v1/plans/{pid}/start-review", headers=if_match(plan)))
    ok(await c["nato"].post(f"/v1/plans/{pid}/accept", headers=if_match(plan)))
    return pid


async def draft_plan(c: Clients, submit: bool = False) -> str:
    plan = ok(await c["deu"].post("/v1/plans", json=plan_body()), 201)
    if submit:
        ok(await c["deu"].post(f"/v1/plans/{plan['id']}/submit", headers=if_match(plan)))
    return str(plan["id"])


async def kafka_events(platform: Any) -> list[ReceivedEvent]:
    records = await read_records(platform.bootstrap, platform.topic("icep.plans.events"))
    return [decode(r.key, r.value, r.headers) for r in records]


def visible(events: list[ReceivedEvent], nation: str) -> list[ReceivedEvent]:
    return [e for e in events if Releasability.from_marking(e.nation, e.releasable_to).allows(nation)]


async def whole_feed(client: httpx.AsyncClient, limit: int = 7, **params: Any) -> list[dict[str, Any]]:
    """Every event on the feed for this caller, following `next` page by page."""
    items: list[dict[str, Any]] = []
    page = ok(await client.get("/v1/events", params={"limit": limit, **params}))
    while True:
        items += page["items"]
        if not page["more"]:
            return items
        page = ok(await client.get(page["next"]))


async def messages(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """The messages of an event stream as they arrive; comments (heartbeats) come as {"comment": ...}."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if fields:
                yield fields
            fields = {}
            continue
        name, _, value = line.partition(":")
        fields[name or "comment"] = value.removeprefix(" ")


class Stream:
    """A caller's open stream through the gateway: its events, read as they come."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._messages = messages(response)
        self.received: list[dict[str, str]] = []

    async def next_event(self, timeout: float = 30) -> dict[str, str]:
        async def read() -> dict[str, str]:
            while "comment" in (message := await anext(self._messages)):
                pass
            return message

        message = await asyncio.wait_for(read(), timeout)
        self.received.append(message)
        return message

    async def events(self, count: int, timeout: float = 30) -> list[dict[str, str]]:
        return [await self.next_event(timeout) for _ in range(count)]

    async def until(self, event_id: str, timeout: float = 30) -> list[dict[str, str]]:
        """Every event up to and including the one with this CloudEvent id."""
        got = [await self.next_event(timeout)]
        while json.loads(got[-1]["data"])["id"] != event_id:
            got.append(await self.next_event(timeout))
        return got


@contextlib.asynccontextmanager
async def stream(client: httpx.AsyncClient, **kw: Any) -> AsyncIterator[Stream]:
    async with client.stream("GET", "/v1/events/stream", timeout=STREAM_TIMEOUT, **kw) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        opened = Stream(response)
        # The first message is sent once the stream's start is fixed: what happens from here on is in it.
        first = await asyncio.wait_for(anext(opened._messages), 20)
        assert "retry" in first
        yield opened


def ids_of(sent: list[dict[str, str]]) -> list[str]:
    return [json.loads(m["data"])["id"] for m in sent]


@pytest.fixture(scope="module")
async def subscribers(platform: Any, clients: Clients) -> AsyncIterator[Clients]:
    """Clients with the subscriber role: DEU's planner and subscriber, FRA's planner and UKR's partner."""
    made = {"deu": clients["deu"], "fra": clients["fra"], "ukr": clients["ukr"]}
    made["deu-subscriber"] = await platform.as_client("deu-subscriber")
    try:
        yield made
    finally:
        await made["deu-subscriber"].aclose()


async def test_the_feed_holds_what_kafka_carried_in_order_without_gaps(
    platform: Any, clients: Clients, subscribers: Clients
) -> None:
    # (A second accepted plan of DEU would supersede the first: one is enough here.)
    plans = [await accepted_plan(clients), await draft_plan(clients, submit=True), await draft_plan(clients)]
    await platform.settled()
    on_kafka = await kafka_events(platform)
    ours = [e for e in on_kafka if e.subject in plans]
    assert len(ours) == 6 + 2 + 1

    for who, nation in (("deu-subscriber", "DEU"), ("fra", "FRA"), ("ukr", "UKR")):
        feed = await whole_feed(subscribers[who])
        positions = [item["position"] for item in feed]
        assert positions == sorted(set(positions)), f"{who}: not in order, or repeated"
        # Exactly the events this nation may see, each once: none missing, none extra.
        expected = visible(on_kafka, nation)
        assert sorted(item["id"] for item in feed) == sorted(e.id for e in expected), who
        # Each aggregate's events in their Kafka order, and each event as it was sent.
        by_id = {e.id: e for e in expected}
        for subject in plans:
            logged = [item["id"] for item in feed if item["subject"] == subject]
            assert logged == [e.id for e in expected if e.subject == subject], (who, subject)
        for item in feed:
            assert {k: v for k, v in item.items() if k != "position"} == by_id[item["id"]].body()

    # What each nation saw of one accepted plan: DEU all six, FRA from acceptance on, UKR the figures.
    deu_types = [i["type"] for i in await whole_feed(subscribers["deu"]) if i["subject"] == plans[0]]
    assert [t.split(".", 2)[2] for t in deu_types] == [
        "plan.created.v1",
        "plan.submitted.v1",
        "plan.review_started.v1",
        "plan.accepted.v1",
        "capacity.committed.v1",
        "capacity.committed.v1",
    ]
    fra_types = [i["type"] for i in await whole_feed(subscribers["fra"]) if i["subject"] == plans[0]]
    assert fra_types == deu_types[3:]
    ukr_types = [i["type"] for i in await whole_feed(subscribers["ukr"]) if i["subject"] == plans[0]]
    assert ukr_types == deu_types[4:]

    # Filters, as a subscription's: by type pattern and by the product the data names.
    submitted = await whole_feed(subscribers["deu-subscriber"], types="icep.plans.plan.submitted.*")
    assert {i["subject"] for i in submitted} >= set(plans[:2]) and {i["type"] for i in submitted} == {
        "icep.plans.plan.submitted.v1"
    }
    shells = await whole_feed(subscribers["ukr"], products="155MM Artillery Round", nations="DEU")
    assert shells and all(i["type"] == "icep.plans.capacity.committed.v1" for i in shells)
    assert not await whole_feed(subscribers["ukr"], products="air defence radar")

    # A page's cursor moves past what the caller may not see, so the next read starts after it.
    last = ok(await subscribers["ukr"].get("/v1/events", params={"limit": 500}))
    assert not last["more"] and last["last_position"] >= max(i["position"] for i in last["items"])
    assert f"after={last['last_position']}" in last["next"]
    assert ok(await subscribers["ukr"].get(last["next"]))["items"] == []


async def test_a_new_subscriber_starts_at_latest_and_sees_only_what_follows(
    platform: Any, clients: Clients, subscribers: Clients
) -> None:
    client = subscribers["deu-subscriber"]
    before = await draft_plan(clients, submit=True)
    await platform.settled()
    history = await whole_feed(client, limit=500)
    assert before in {i["subject"] for i in history}
    head = ok(await client.get("/v1/events", params={"after": "latest", "types": "icep.plans.*"}))
    assert head["items"] == [] and not head["more"]
    assert head["last_position"] >= max(i["position"] for i in history)
    assert f"after={head['last_position']}" in head["next"]

    after = await draft_plan(clients, submit=True)
    await platform.settled()
    followed = ok(await client.get(head["next"]))
    subjects = [i["subject"] for i in followed["items"]]
    assert before not in subjects
    on_kafka = [e.id for e in await kafka_events(platform) if e.subject == after]
    assert len(on_kafka) == 2
    assert [i["id"] for i in followed["items"] if i["subject"] == after] == on_kafka
    assert all(i["position"] > head["last_position"] for i in followed["items"])
    # Without `latest`, the same caller's feed still holds the history.
    assert before in {i["subject"] for i in await whole_feed(client, limit=500)}


async def test_other_nations_never_see_what_is_not_released_to_them(
    platform: Any, clients: Clients, subscribers: Clients
) -> None:
    async with (
        stream(subscribers["deu-subscriber"]) as deu,
        stream(subscribers["fra"]) as fra,
        stream(subscribers["ukr"]) as ukr,
    ):
        national = await draft_plan(clients, submit=True)  # DEU's (and NATO's) alone
        pid = await accepted_plan(clients)
        await platform.settled()
        # Then one event all three may see, logged after everything before it: read up to it, each
        # stream has been offered every event above.
        ok(
            await clients["deu"].post(
                f"/v1/plans/{pid}/release",
                json={"releasability": {"scope": "allies_partners", "nations": ["UKR"]}},
                headers={"If-Match": '"4"'},  # created, submitted, under review, accepted
            )
        )
        await platform.settled()
        ours = [e for e in await kafka_events(platform) if e.subject in (national, pid)]
        assert len(ours) == 2 + 6 + 1
        [sentinel] = [e for e in ours if e.type == "icep.plans.plan.released.v1"]
        assert sentinel.releasable_to == "ALLIES,UKR"

        for opened, nation, count in ((deu, "DEU", 9), (fra, "FRA", 4), (ukr, "UKR", 3)):
            got = await opened.until(sentinel.id)
            expected = visible(ours, nation)
            assert len(expected) == count
            # (Other events come too, such as the older plan this one superseded: entitled all the same.)
            about_ours = [i for i in ids_of(got) if i in {e.id for e in ours}]
            assert sorted(about_ours) == sorted(e.id for e in expected), nation
            for subject in (national, pid):
                assert [i for i in ids_of(got) if i in {e.id for e in ours if e.subject == subject}] == [
                    e.id for e in expected if e.subject == subject
                ]
            for message in got:
                event = json.loads(message["data"])
                assert Releasability.from_marking(event["nation"], event["releasableto"]).allows(nation)
                assert message["event"] == event["type"]
        # And on the feed: nothing of the national plan, the same events as on the stream.
        for who, opened in (("fra", fra), ("ukr", ukr)):
            feed = await whole_feed(subscribers[who], limit=500)
            assert national not in {i["subject"] for i in feed}
            mine = [i for i in feed if i["subject"] == pid]
            streamed = [m for m in opened.received if json.loads(m["data"])["subject"] == pid]
            assert [i["id"] for i in mine] == ids_of(streamed)
            assert [str(i["position"]) for i in mine] == [m["id"] for m in streamed]


async def test_the_stream_is_live_and_resumes_from_last_event_id(
    platform: Any, clients: Clients, subscribers: Clients
) -> None:
    client = subscribers["deu-subscriber"]
    plans_only = {"types": "icep.plans.plan.*"}
    async with stream(client, params=plans_only) as live:
        first = await draft_plan(clients, submit=True)
        loop = asyncio.get_running_loop()
        started = loop.time()
        got = await live.events(2)
        assert loop.time() - started < 15  # pushed as it happened
        assert [json.loads(m["data"])["subject"] for m in got] == [first, first]
        assert [m["event"] for m in got] == ["icep.plans.plan.created.v1", "icep.plans.plan.submitted.v1"]
        last_seen = got[-1]["id"]
    # Disconnected; meanwhile more happens.
    missed = [await draft_plan(clients, submit=True), await draft_plan(clients)]
    await platform.settled()
    on_kafka = [e for e in await kafka_events(platform) if e.subject in missed]
    assert len(on_kafka) == 3

    def check(caught_up: list[dict[str, str]]) -> None:
        """Nothing lost, nothing of before repeated, each plan's events in order."""
        assert sorted(ids_of(caught_up)) == sorted(e.id for e in on_kafka)
        for subject in missed:
            assert [json.loads(m["data"])["id"] for m in caught_up if subject in m["data"]] == [
                e.id for e in on_kafka if e.subject == subject
            ]
        assert [int(m["id"]) for m in caught_up] == sorted(int(m["id"]) for m in caught_up)
        assert int(caught_up[0]["id"]) > int(last_seen)

    async with stream(client, params=plans_only, headers={"Last-Event-ID": last_seen}) as resumed:
        check(await resumed.events(3))
        # Still live after catching up.
        later = await draft_plan(clients)
        [fresh] = await resumed.events(1)
        assert json.loads(fresh["data"])["subject"] == later

    # An EventSource URL may carry the cursor as a query parameter instead.
    async with stream(client, params={**plans_only, "last_event_id": last_seen}) as by_query:
        await wait_for(lambda: _open_one(platform), timeout=20, what="the service to count this stream")
        check(await by_query.events(3))
    # The caller hung up at the gateway: the stream behind it ended in the notifications service too.
    await wait_for(lambda: _closed(platform), timeout=20, what="the service's streams to end")


async def streams_open(platform: Any) -> float:
    return float(await platform.metric("notifications", "icep_event_streams_open", service="notifications"))


async def _open_one(platform: Any) -> bool:
    return await streams_open(platform) == 1


async def _closed(platform: Any) -> bool:
    return await streams_open(platform) == 0


async def test_only_subscribers_may_read_and_cursors_must_be_positions(
    platform: Any, clients: Clients
) -> None:
    for name in ("pol", "nato"):  # a planner and a reviewer, neither a subscriber
        for path in ("/v1/events", "/v1/events/stream"):
            r = await clients[name].get(path)
            assert r.status_code == 403, (name, path, r.text)
            assert r.headers["content-type"].startswith(PROBLEM)
    deu = clients["deu"]
    bad = await deu.get("/v1/events/stream", headers={"Last-Event-ID": "yesterday"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith(PROBLEM)
    assert (await deu.get("/v1/events", params={"after": -1})).status_code == 422
    for bad_after in ("yesterday", "LATEST"):
        rejected = await deu.get("/v1/events", params={"after": bad_after})
        assert rejected.status_code == 422 and rejected.headers["content-type"].startswith(PROBLEM)
    assert (await deu.get("/v1/events", params={"types": "icep.plans.%"})).status_code == 422
    assert (await deu.get("/v1/events", params={"nations": "Atlantis"})).status_code == 422
    unauthenticated = await platform.http.get(f"{platform.gateway}/v1/events")
    assert unauthenticated.status_code == 401


async def test_a_cursor_older_than_retention_is_gone(start_platform: Any, kafka_bootstrap: str) -> None:
    platform = await start_platform(
        kafka_bootstrap,
        {
            # Ten seconds of retention, purged twice a second.
            "ICEP_NOTIFICATIONS_EVENT_LOG_RETENTION_DAYS": str(10 / 86400),
            "ICEP_NOTIFICATIONS_RETENTION_PURGE_SECONDS": "0.5",
        },
    )
    deu = await platform.as_client("deu-planner")
    try:
        pid = await draft_plan({"deu": deu}, submit=True)
        await platform.settled()
        before = ok(await deu.get("/v1/events", params={"after": 0}))
        assert [i["subject"] for i in before["items"]] == [pid, pid]

        async def gone() -> httpx.Response | None:
            r = await deu.get("/v1/events", params={"after": 0})
            return r if r.status_code == 410 else None

        await wait_for(gone, timeout=60, interval=0.5, what="the purge")

        # The service's retention loop did it, and counted it. The cursor is gone as soon as the first
        # event is past retention, but the two events were logged apart, so they may cross the cutoff in
        # two rounds; and a round moves the horizon before it deletes and counts. So wait until both rows
        # are counted (the log holds only these two): by then the horizon is past both.
        async def both_purged() -> float:
            purged = await platform.metric(
                "notifications", "icep_retention_purged_total", service="notifications", table="event_log"
            )
            return purged if purged >= 2 else 0.0

        assert (
            await wait_for(both_purged, timeout=30, interval=0.25, what="both events purged and counted") == 2
        )
        r = await gone()
        assert r is not None and r.headers["content-type"].startswith(PROBLEM)
        problem = r.json()
        assert problem["status"] == 410 and "retention" in problem["detail"]
        assert problem["purged_through"] >= before["items"][-1]["position"]
        resumed = await deu.get("/v1/events/stream", headers={"Last-Event-ID": "0"})
        assert resumed.status_code == 410 and resumed.headers["content-type"].startswith(PROBLEM)
        # Without a cursor, or from the horizon on, the feed goes on.
        fresh = ok(await deu.get("/v1/events"))
        assert fresh["last_position"] >= problem["purged_through"]
        assert ok(await deu.get("/v1/events", params={"after": problem["purged_through"]}))["items"] == [
            i for i in fresh["items"] if i["position"] > problem["purged_through"]
        ]
        later = await draft_plan({"deu": deu})
        await platform.settled()
        assert [i["subject"] for i in ok(await deu.get(fresh["next"]))["items"]] == [later]
    finally:
        await deu.aclose()
