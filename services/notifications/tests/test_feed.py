"""The event log behind the catch-up feed and the live stream, against a real database: order without
gaps (also while writers commit concurrently), entitlement for every kind of marking, the subscription
filters, paging past what a caller may not see, retention and 410, and the stream over real HTTP on
127.0.0.1 (live pushes, resuming, heartbeats, disconnects, other replicas)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
import sqlalchemy as sa
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from jwt.algorithms import ECAlgorithm

from icep.contracts import Releasability
from icep.notifications.read_models.fan_out import fan_out
from icep.notifications.read_models.feed import log as feed
from icep.notifications.read_models.feed import routes as feed_routes
from icep.notifications.read_models.feed.rows import EventLogRow
from icep.notifications.settings import NotificationsSettings
from icep.notifications.subscriptions.filters import SubscriptionFilters
from icep.platform.app import Runtime, ServiceSpec
from icep.platform.auth import TokenVerifier
from icep.platform.errors import Forbidden, Unprocessable
from icep.platform.events import ReceivedEvent, utcnow
from icep.platform.ids import new_id
from icep.platform.kafka_local import free_port
from icep.platform.problems import install_problem_handlers
from icep.platform.testing import wait_for

DEU = feed.FeedReader("deu-subscriber", "DEU", frozenset({"subscriber"}))
FRA = feed.FeedReader("fra-planner", "FRA", frozenset({"planner", "subscriber"}))
UKR = feed.FeedReader("ukr-partner", "UKR", frozenset({"subscriber"}))
ANY = SubscriptionFilters()
SETTINGS = NotificationsSettings(stream_heartbeat_seconds=30.0, stream_poll_seconds=0.05)


def event(
    type: str = "icep.plans.plan.submitted.v1",
    *,
    nation: str = "DEU",
    releasable_to: str = "ALLIES",
    subject: str = "plan-1",
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


async def log(store: Any, *events: ReceivedEvent) -> list[int | None]:
    """Each event in its own transaction, as the consumer commits them."""
    positions = []
    for e in events:
        async with store.db.transaction() as session:
            positions.append(await feed.append(session, e))
    return positions


async def read_all(store: Any, reader: feed.FeedReader, filters: SubscriptionFilters = ANY, **kw: Any) -> Any:
    return await feed.read_page(store.db, reader, filters, after=kw.get("after"), limit=500, scan_limit=5000)


def ids(page: feed.FeedPage) -> list[str]:
    return [item.event["id"] for item in page.items]


async def test_each_event_is_logged_once_in_order_with_its_body(store: Any) -> None:
    events = [event(subject=f"plan-{i}", plan_id=f"plan-{i}") for i in range(5)]
    positions = await log(store, *events)
    assert all(p is not None for p in positions) and positions == sorted(positions)  # type: ignore[type-var]
    # Redelivered from Kafka past the inbox: still once, and the second append says so.
    assert await log(store, events[2]) == [None]
    async with store.db.transaction() as session:
        await fan_out(session, events[3])  # the consumer handler logs too
    page = await read_all(store, DEU)
    assert ids(page) == [e.id for e in events]
    assert [i.position for i in page.items] == positions
    assert page.items[0].event == events[0].body()
    assert page.items[0].event_type == "icep.plans.plan.submitted.v1"
    assert page.last_position == positions[-1] and not page.more


async def test_the_consumer_handler_logs_what_it_fans_out(store: Any) -> None:
    e = event()
    async with store.db.transaction() as session:
        await fan_out(session, e)
    assert ids(await read_all(store, DEU)) == [e.id]


MARKINGS = [
    ("DEU", "DEU"),
    ("DEU", "DEU,FRA"),
    ("DEU", "DEU,NATO"),
    ("DEU", "DEU,UKR"),
    ("DEU", "ALLIES"),
    ("DEU", "ALLIES,UKR"),
    ("DEU", "ALLIES,JPN"),
    ("FRA", "FRA"),
    ("UKR", "UKR"),
    ("UKR", "UKR,DEU"),
    ("NATO", "NATO"),
    ("NATO", "ALLIES"),
    ("POL", "POL,FRA"),
]


@pytest.mark.parametrize("nation", ["DEU", "FRA", "POL", "UKR", "JPN", "NATO"])
async def test_a_reader_sees_exactly_what_its_nation_may_see(store: Any, nation: str) -> None:
    events = [event(nation=owner, releasable_to=marking) for owner, marking in MARKINGS]
    await log(store, *events)
    reader = feed.FeedReader(f"{nation.lower()}-subscriber", nation, frozenset({"subscriber"}))
    expected = [e.id for e in events if Releasability.from_marking(e.nation, e.releasable_to).allows(nation)]
    assert expected  # every nation here may see something, and none may see everything
    assert len(expected) < len(events)
    assert ids(await read_all(store, reader)) == expected


async def test_filters_narrow_as_a_subscriptions_do(store: Any) -> None:
    shell = event(
        "icep.plans.capacity.committed.v1", product="155mm Artillery Round", capability_area="Munitions"
    )
    fra_shell = event(
        "icep.plans.capacity.committed.v1",
        nation="FRA",
        releasable_to="ALLIES",
        product="155mm artillery round",
        capability_area="munitions",
    )
    supplier = event(
        "icep.procurement.supplier.registered.v1", products=["50%_mix charge", "155mm artillery round"]
    )
    standard = event("icep.standards.standard.drafted.v1", capability_areas=["air defence", "Land"])
    plan = event("icep.plans.plan.submitted.v1")
    lookalike = event("icep.plans.capacity.committed.v1", product="50x mix charge")  # `_` and `%` are literal
    events = [shell, fra_shell, supplier, standard, plan, lookalike]
    await log(store, *events)

    cases: list[tuple[dict[str, list[str]], list[ReceivedEvent]]] = [
        ({}, events),
        ({"types": ["icep.plans.*"]}, [shell, fra_shell, plan, lookalike]),
        ({"types": ["icep.*.capacity.*", "icep.standards.*"]}, [shell, fra_shell, standard, lookalike]),
        ({"types": ["icep.plans.plan.submitted.v1"]}, [plan]),
        ({"nations": ["fra"]}, [fra_shell]),
        ({"products": ["  155MM   artillery round "]}, [shell, fra_shell, supplier]),
        ({"products": ["50%_mix CHARGE"]}, [supplier]),
        ({"capability_areas": ["munitions", "air DEFENCE"]}, [shell, fra_shell, standard]),
        ({"capability_areas": ["munitions"], "nations": ["DEU"]}, [shell]),
        ({"types": ["icep.procurement.*"], "products": ["155mm artillery round"]}, [supplier]),
    ]
    for asked, expected in cases:
        filters = feed.feed_filters(**asked)
        got = ids(await read_all(store, DEU, filters))
        assert got == [e.id for e in expected], asked
        # The same rule as a subscription's filters, event by event.
        assert got == [e.id for e in events if filters.accepts(e.type, e.nation, e.data)], asked


def test_filters_are_validated_like_a_subscriptions() -> None:
    with pytest.raises(Unprocessable) as bad_type:
        feed.feed_filters(types=["icep.plans.%"])
    assert bad_type.value.extensions["field"] == "types"
    with pytest.raises(Unprocessable):
        feed.feed_filters(nations=["XXX"])
    with pytest.raises(Unprocessable):
        feed.feed_filters(products=["\x00"])
    assert feed.feed_filters().event_types == ("*",)


async def test_pages_follow_on_without_gaps_past_what_the_reader_may_not_see(store: Any) -> None:
    events = [
        event(nation="DEU", releasable_to="DEU" if i % 3 else "ALLIES", subject=f"s{i}") for i in range(30)
    ]
    events.append(event(releasable_to="DEU"))  # the log ends with one FRA may not see
    positions = await log(store, *events)
    visible = [e.id for e in events if e.releasable_to == "ALLIES"]
    seen: list[str] = []
    after: int | None = None
    pages = 0
    while True:
        page = await feed.read_page(store.db, FRA, ANY, after=after, limit=4, scan_limit=5000)
        pages += 1
        seen += ids(page)
        assert page.last_position >= (after or 0)
        after = page.last_position
        if not page.more:
            break
    assert seen == visible and pages == 3
    # The last page reaches the end of the log, although its last event is not for FRA: no re-scan.
    assert after == positions[-1]
    again = await feed.read_page(store.db, FRA, ANY, after=after, limit=4, scan_limit=5000)
    assert again.items == [] and again.last_position == after and not again.more


async def test_a_page_scans_no_more_than_the_limit(store: Any) -> None:
    positions = await log(store, *(event(subject=f"s{i}") for i in range(10)))
    page = await feed.read_page(store.db, DEU, ANY, after=None, limit=10, scan_limit=3)
    assert [i.position for i in page.items] == positions[:3]
    assert page.last_position == positions[2] and page.more


async def test_an_empty_log_pages_from_nothing(store: Any) -> None:
    page = await read_all(store, DEU)
    assert page.items == [] and page.last_position == 0 and not page.more


async def test_the_head_is_where_a_new_subscriber_starts_at_now(store: Any) -> None:
    empty = await feed.read_head(store.db, DEU)
    assert empty.items == [] and empty.last_position == 0 and not empty.more
    before = await log(store, *(event(subject=f"old{i}") for i in range(3)))
    # The last event is not FRA's to see: the head is the log's all the same, so nothing before it is
    # left for FRA and nothing after it is skipped.
    [hidden] = await log(store, event(releasable_to="DEU"))
    assert hidden is not None
    head = await feed.read_head(store.db, FRA)
    assert head.items == [] and head.last_position == hidden and not head.more
    assert (await read_all(store, FRA, after=head.last_position)).items == []
    later = [event(subject="new0"), event(subject="new1", releasable_to="DEU")]
    after = await log(store, *later)
    assert ids(await read_all(store, FRA, after=head.last_position)) == [later[0].id]
    assert ids(await read_all(store, DEU, after=head.last_position)) == [e.id for e in later]
    assert [i.position for i in (await read_all(store, DEU)).items] == [*before, hidden, *after]


async def test_only_subscribers_read_the_feed_or_the_stream(store: Any) -> None:
    planner = feed.FeedReader("pol-planner", "POL", frozenset({"planner"}))
    with pytest.raises(Forbidden):
        await read_all(store, planner)
    with pytest.raises(Forbidden):
        await feed.read_head(store.db, planner)
    with pytest.raises(Forbidden):
        await feed.open_stream(store.db, planner, None)


async def test_concurrent_writers_never_leave_a_reader_behind(store: Any) -> None:
    """Writers take positions and commit in random order of time; a reader paging all along must still
    get every event. (Without the advisory lock, PostgreSQL lets a later position commit first, and a
    reader that has moved past it never sees the earlier one.)"""
    count = 40
    events = [event(subject=f"c{i}") for i in range(count)]
    rng = random.Random(7)

    async def write(e: ReceivedEvent) -> None:
        await asyncio.sleep(rng.random() * 0.4)
        async with store.db.transaction() as session:
            await feed.append(session, e)
            await asyncio.sleep(rng.random() * 0.03)  # hold the position a while before committing

    seen: list[str] = []
    reader_db = store.another_connection()  # never queued behind the writers for a connection

    async def read() -> None:
        after = 0
        deadline = time.monotonic() + 10
        while len(seen) < count and time.monotonic() < deadline:
            page = await feed.read_page(reader_db, DEU, ANY, after=after, limit=7, scan_limit=5000)
            seen.extend(ids(page))
            after = page.last_position
            await asyncio.sleep(0.001)

    await asyncio.gather(read(), *(write(e) for e in events))
    assert sorted(seen) == sorted(e.id for e in events) and len(seen) == len(set(seen))


async def _age(store: Any, positions: list[int | None], days: float) -> None:
    async with store.db.transaction() as session:
        await session.execute(
            sa.update(EventLogRow.__table__)  # type: ignore[attr-defined]
            .where(EventLogRow.__table__.c.position.in_(positions))  # type: ignore[attr-defined]
            .values(recorded_at=utcnow() - timedelta(days=days))
        )


async def test_retention_purges_old_events_and_their_cursors_are_gone(store: Any) -> None:
    old = await log(store, *(event(subject=f"old{i}") for i in range(3)))
    new = await log(store, *(event(subject=f"new{i}") for i in range(2)))
    await _age(store, old, days=31)
    assert await feed.purge(store.db, timedelta(days=30)) == 3
    assert await feed.purge(store.db, timedelta(days=30)) == 0
    assert await feed.horizon(store.db) == old[-1]

    with pytest.raises(feed.CursorGone) as gone:
        await feed.read_page(store.db, DEU, ANY, after=old[0], limit=10, scan_limit=100)
    assert gone.value.status == 410 and "retention" in gone.value.detail
    assert gone.value.extensions["purged_through"] == old[-1]
    with pytest.raises(feed.CursorGone):
        await feed.open_stream(store.db, DEU, 0)
    # Without a cursor the feed starts at the oldest event kept; a cursor at the horizon is still good.
    assert [i.position for i in (await read_all(store, DEU)).items] == new
    assert [i.position for i in (await read_all(store, DEU, after=old[-1])).items] == new
    assert await feed.open_stream(store.db, DEU, old[-1]) == old[-1]

    # Purging everything does not hand out old positions again.
    await _age(store, new, days=31)
    assert await feed.purge(store.db, timedelta(days=30)) == 2
    assert (await read_all(store, DEU)).last_position == new[-1]
    [later] = await log(store, event())
    assert later is not None and later > new[-1]


# --- the stream --------------------------------------------------------------------------------------


def parse(chunk: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in chunk.decode().splitlines():
        if not line:
            continue
        name, _, value = line.partition(":")
        fields[name or "comment"] = value.strip()
    return fields


async def next_chunk(body: AsyncIterator[bytes], timeout: float = 5.0) -> dict[str, str]:
    return parse(await asyncio.wait_for(anext(body), timeout))


async def test_the_stream_pushes_new_events_at_once_and_resumes_after_an_id(store: Any) -> None:
    hub = feed.FeedHub()
    first = event(subject="a", plan_id="a")
    [p1] = await log(store, first)
    assert p1 is not None
    start = await feed.open_stream(store.db, DEU, None)
    assert start == p1  # without Last-Event-ID: only what comes next
    body = feed.stream(store.db, hub, DEU, ANY, start, SETTINGS)
    try:
        opening = await next_chunk(body)
        assert opening["retry"] == str(feed.STREAM_RETRY_MS)
        pending = asyncio.ensure_future(next_chunk(body))
        await asyncio.sleep(0.1)
        assert not pending.done()  # nothing new, and the heartbeat is 30 s away
        second, third = event(subject="b"), event(subject="c", releasable_to="DEU")
        [p2, p3] = await log(store, second, third)
        hub.wake()  # what the after-commit hook does
        message = await pending  # the heartbeat is 30 s away: what came is the wake-up's message
        assert message == {"id": str(p2), "event": second.type, "data": message["data"]}
        assert json.loads(message["data"]) == second.body()
        assert (await next_chunk(body))["id"] == str(p3)
    finally:
        await body.aclose()
    assert hub.listeners == 0

    # Resuming after the first: the rest once each, in order; FRA's stream leaves out what is DEU's.
    resumed = feed.stream(store.db, hub, DEU, ANY, p1, SETTINGS)
    fra = feed.stream(store.db, hub, FRA, ANY, p1, SETTINGS)
    try:
        await next_chunk(resumed)
        assert [(await next_chunk(resumed))["id"] for _ in range(2)] == [str(p2), str(p3)]
        await next_chunk(fra)
        assert (await next_chunk(fra))["id"] == str(p2)
        with pytest.raises(TimeoutError):
            await next_chunk(fra, timeout=0.3)
    finally:
        await resumed.aclose()
        await fra.aclose()


async def test_an_idle_stream_sends_heartbeats(store: Any) -> None:
    settings = NotificationsSettings(stream_heartbeat_seconds=0.1)
    body = feed.stream(store.db, feed.FeedHub(), DEU, ANY, 0, settings)
    try:
        await next_chunk(body)
        assert await next_chunk(body, timeout=2) == {"comment": "heartbeat"}
        assert await next_chunk(body, timeout=2) == {"comment": "heartbeat"}
    finally:
        await body.aclose()


# --- over HTTP -----------------------------------------------------------------------------------------

ISSUER = "https://gateway.icep.test"


class Issuer:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())

    async def jwks(self) -> dict[str, Any]:
        return {"keys": [{**ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True), "kid": "k1"}]}

    def token(self, client_id: str, nation: str, roles: list[str]) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": "icep",
            "sub": client_id,
            "nation": nation,
            "roles": roles,
            "scope": "read",
            "iat": now,
            "exp": now + 300,
        }
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": "k1"})


class Served:
    def __init__(self, base: str, runtime: Runtime, issuer: Issuer) -> None:
        self.base = base
        self.runtime = runtime
        self.issuer = issuer

    def client(self, client_id: str, nation: str, roles: list[str]) -> httpx.AsyncClient:
        token = self.issuer.token(client_id, nation, roles)
        return httpx.AsyncClient(base_url=self.base, headers={"Authorization": f"Bearer {token}"}, timeout=10)


async def next_event(messages: AsyncIterator[dict[str, str]]) -> dict[str, str]:
    """The next message that is an event (heartbeats in between are skipped)."""
    while "comment" in (message := await anext(messages)):
        pass
    return message


@pytest.fixture
async def served(store: Any) -> AsyncIterator[Served]:
    """The feed's routes on a real server on 127.0.0.1, with the event-log watcher running."""
    settings = NotificationsSettings(stream_heartbeat_seconds=0.3, stream_poll_seconds=0.05)
    issuer = Issuer()
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(feed_routes.router)
    runtime = Runtime(spec=ServiceSpec(settings=settings), db=store.db)
    app.state.runtime = runtime
    app.state.token_verifier = TokenVerifier(ISSUER, "icep", "unused", jwks_source=issuer.jwks)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    watching = asyncio.create_task(feed.watch(runtime))
    await wait_for(lambda: server.started, timeout=10, what="the test server")
    try:
        yield Served(f"http://127.0.0.1:{port}", runtime, issuer)
    finally:
        watching.cancel()
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        await asyncio.wait_for(serving, 15)


async def sse(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """Messages (and comments) of an event stream as they arrive."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if fields:
                yield fields
            fields = {}
            continue
        name, _, value = line.partition(":")
        fields[name or "comment"] = value.removeprefix(" ")


async def test_feed_and_stream_over_http(served: Served, store: Any) -> None:
    events = [event(subject=f"h{i}", releasable_to="ALLIES" if i != 1 else "DEU") for i in range(4)]
    positions = await log(store, *events)
    deu = served.client("deu-subscriber", "DEU", ["subscriber"])
    fra = served.client("fra-planner", "FRA", ["planner", "subscriber"])
    pol = served.client("pol-planner", "POL", ["planner"])
    try:
        r = await fra.get("/v1/events", params={"limit": 2, "types": "icep.plans.*,icep.standards.*"})
        assert r.status_code == 200, r.text
        page = r.json()
        assert [i["id"] for i in page["items"]] == [events[0].id, events[2].id]
        assert page["items"][0]["position"] == positions[0]
        assert page["items"][0]["releasableto"] == "ALLIES" and page["items"][0]["source"] == "/icep/test"
        assert page["more"] and page["last_position"] == positions[2]
        assert page["next"].startswith("/v1/events?") and f"after={positions[2]}" in page["next"]
        rest = (await fra.get(page["next"])).json()
        assert [i["id"] for i in rest["items"]] == [events[3].id] and not rest["more"]
        assert "types=" in rest["next"] and "limit=2" in rest["next"]  # the filters carry over

        denied = await pol.get("/v1/events")
        assert denied.status_code == 403
        assert denied.headers["content-type"] == "application/problem+json"
        bad = await deu.get("/v1/events/stream", headers={"Last-Event-ID": "not-a-number"})
        assert bad.status_code == 422
        assert (await deu.get("/v1/events", params={"nations": "XX"})).status_code == 422

        # Live, resumed from the header (the query parameter is what an EventSource URL may carry).
        async with deu.stream(
            "GET",
            "/v1/events/stream",
            headers={"Last-Event-ID": str(positions[1])},
            params={"last_event_id": 0},
        ) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            messages = sse(stream)
            assert "retry" in await anext(messages)
            assert [(await next_event(messages))["id"] for _ in range(2)] == [str(p) for p in positions[2:]]
            # Written by "another replica": no after-commit wake-up here, the watcher finds it.
            other = store.another_connection()
            late = event(subject="late")
            async with other.transaction() as session:
                p_late = await feed.append(session, late)
            message = await asyncio.wait_for(next_event(messages), 5)
            assert message["id"] == str(p_late) and message["event"] == late.type
            assert json.loads(message["data"])["id"] == late.id
            assert (await asyncio.wait_for(anext(messages), 5)) == {"comment": "heartbeat"}
            assert served.runtime.parts[feed.FeedHub].listeners == 1
        # The client went away: the stream ended on the server as well.
        await wait_for(
            lambda: served.runtime.parts[feed.FeedHub].listeners == 0, timeout=5, what="the stream to end"
        )

        # Past retention: 410 with problem JSON, for the feed and the stream alike.
        await _age(store, [*positions, p_late], days=31)
        assert await feed.purge(store.db, timedelta(days=30)) == 5
        for path, kw in (
            ("/v1/events", {"params": {"after": positions[0]}}),
            ("/v1/events/stream", {"headers": {"Last-Event-ID": str(positions[0])}}),
        ):
            gone = await deu.get(path, **kw)  # type: ignore[arg-type]
            assert gone.status_code == 410, gone.text
            assert gone.headers["content-type"] == "application/problem+json"
            assert "retention" in gone.json()["detail"]
    finally:
        for c in (deu, fra, pol):
            await c.aclose()


async def test_the_feed_starts_at_latest_over_http(served: Served, store: Any) -> None:
    positions = await log(store, event(subject="old0"), event(subject="old1", releasable_to="DEU"))
    fra = served.client("fra-planner", "FRA", ["planner", "subscriber"])
    pol = served.client("pol-planner", "POL", ["planner"])
    try:
        # An empty page at the head (also past the last event, which is not FRA's), whose `next` brings
        # only what is logged later, with the filters carried over.
        r = await fra.get("/v1/events", params={"after": "latest", "types": "icep.plans.*", "limit": 5})
        assert r.status_code == 200, r.text
        head = r.json()
        assert head["items"] == [] and head["last_position"] == positions[-1] and not head["more"]
        assert f"after={positions[-1]}" in head["next"] and "latest" not in head["next"]
        assert "types=" in head["next"] and "limit=5" in head["next"]
        [p_new] = await log(store, event(subject="new0"))
        await log(store, event("icep.standards.standard.drafted.v1", subject="filtered-out"))
        fresh = (await fra.get(head["next"])).json()
        assert [i["subject"] for i in fresh["items"]] == ["new0"]
        assert fresh["items"][0]["position"] == p_new
        for bad_after in ("yesterday", "-1", "Latest", "1.5", str(2**63)):
            rejected = await fra.get("/v1/events", params={"after": bad_after})
            assert rejected.status_code == 422, (bad_after, rejected.text)
            assert rejected.headers["content-type"] == "application/problem+json"
        denied = await pol.get("/v1/events", params={"after": "latest"})
        assert denied.status_code == 403
        assert denied.headers["content-type"] == "application/problem+json"
    finally:
        for c in (fra, pol):
            await c.aclose()
