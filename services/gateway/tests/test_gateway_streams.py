"""Event streams through the gateway: a pool of their own per upstream, and caps on how many are open at
once, per client (429) and in all (503). The upstream and the gateway are real servers on loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from icep.gateway.app import create_app
from icep.gateway.proxy import Proxy, StreamCapReached, StreamSlots
from icep.platform.testing import wait_for

PER_CLIENT = 2
TOTAL = 3
STREAM = "/v1/events/stream"


@dataclass
class EventSource:
    """A stand-in for the notifications service: event streams that hold, end or break, and an echo."""

    #: Requests that reached a stream handler: a refused stream must not be among them.
    stream_requests: int = 0
    #: Lets held streams end (set at teardown so the server can stop promptly).
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> Starlette:
        async def events(request: Request) -> Response:
            self.stream_requests += 1
            then = request.query_params.get("then", "hold")

            async def stream() -> AsyncIterator[bytes]:
                yield b'id: 1\nevent: plan.submitted\ndata: {"n": 1}\n\n'
                if then == "fail":
                    raise RuntimeError("the stand-in breaks its stream on purpose")
                if then == "hold":
                    await asyncio.wait_for(self.release.wait(), 30)

            return StreamingResponse(stream(), media_type="text/event-stream")

        async def echo(request: Request) -> Response:
            return JSONResponse({"path": request.url.path})

        return Starlette(
            routes=[
                Route(STREAM, events),
                Route("/v1/events/live", events),  # a stream on a path the gateway does not know as one
                Route("/v1/{rest:path}", echo),
            ]
        )


@dataclass
class Env:
    url: str
    source: EventSource
    proxy: Proxy
    tokens: dict[str, str]
    http: httpx.AsyncClient
    #: Every response opened as a stream; closed at teardown (closing twice is harmless).
    opened: list[httpx.Response] = field(default_factory=list)
    #: The body of each admitted stream, past its first event.
    rest: dict[int, AsyncIterator[bytes]] = field(default_factory=dict)

    def auth(self, client_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[client_id]}"}

    async def stream(
        self, client_id: str, path: str = STREAM, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """Open a stream as `client_id`. Admitted (200): kept open, its first event read. Refused: read and
        closed."""
        request = self.http.build_request(
            "GET", f"{self.url}{path}", headers={**self.auth(client_id), **(headers or {})}
        )
        response = await self.http.send(request, stream=True)
        self.opened.append(response)
        if response.status_code != 200:
            await response.aread()
            await response.aclose()
            return response
        received = b""
        chunks = response.aiter_raw()
        async with asyncio.timeout(10):
            while b"\n\n" not in received:
                received += await anext(chunks)
        assert received.startswith(b"id: 1\n")
        self.rest[id(response)] = chunks
        return response

    async def drain(self, response: httpx.Response) -> None:
        """Read an admitted stream to its end."""
        async with asyncio.timeout(10):
            async for _ in self.rest[id(response)]:
                pass


@pytest.fixture
async def env(make_settings: Any, server: Any, http: httpx.AsyncClient, get_token: Any) -> AsyncIterator[Env]:
    source = EventSource()
    async with server(source.app()) as source_url:
        try:
            app = create_app(
                make_settings(
                    plans_url=source_url,
                    procurement_url=source_url,
                    standards_url=source_url,
                    notifications_url=source_url,
                    upstream_timeout_seconds=2.0,
                    token_rate_limit="1000/minute",
                    # Small enough that streams in the ordinary pool would starve it.
                    upstream_max_connections=2,
                    max_streams=TOTAL,
                    max_streams_per_client=PER_CLIENT,
                )
            )
            async with server(app) as url:
                tokens = {c: await get_token(url, client_id=c) for c in ("deu-planner", "nato-reviewer")}
                env = Env(url, source, app.state.proxy, tokens, http)
                try:
                    yield env
                finally:
                    for response in env.opened:
                        await response.aclose()
                    # Every stream's slot comes back once its caller has gone.
                    await wait_for(lambda: env.proxy.streams.open == 0, timeout=10, what="slots released")
        finally:
            source.release.set()


def _assert_refused(response: httpx.Response, status: int, slug: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "5"
    problem = response.json()
    assert problem["status"] == status
    assert problem["type"].endswith(f"/{slug}")
    assert problem["instance"] == STREAM


async def test_a_client_past_its_stream_cap_is_refused_without_reaching_the_service(env: Env) -> None:
    for _ in range(PER_CLIENT):
        assert (await env.stream("deu-planner")).status_code == 200
    reached = env.source.stream_requests

    refused = await env.stream("deu-planner")
    _assert_refused(refused, 429, "too-many-streams")
    assert f"already has {PER_CLIENT} event streams open" in refused.json()["detail"]
    assert env.source.stream_requests == reached
    # A request that accepts an event stream counts as one, whatever its path.
    accepting = await env.stream("deu-planner", "/v1/subscriptions", {"Accept": "text/event-stream"})
    assert accepting.status_code == 429

    # Another client is not held back by the first one's streams.
    assert (await env.stream("nato-reviewer")).status_code == 200


async def test_closing_a_stream_frees_its_slot(env: Env) -> None:
    streams = [await env.stream("deu-planner") for _ in range(PER_CLIENT)]
    assert (await env.stream("deu-planner")).status_code == 429

    await streams[0].aclose()  # the caller goes away; the service still holds its end open

    async def admitted() -> httpx.Response | None:
        response = await env.stream("deu-planner")
        return response if response.status_code == 200 else None

    await wait_for(admitted, timeout=10, what="a stream admitted after one was closed")
    assert (await env.stream("deu-planner")).status_code == 429


@pytest.mark.parametrize("then", ["end", "fail"])
async def test_a_stream_the_service_ends_or_breaks_frees_its_slot(env: Env, then: str) -> None:
    path = f"{STREAM}?then={then}"
    for _ in range(PER_CLIENT + 2):
        response = await env.stream("deu-planner", path)
        assert response.status_code == 200
        failure = pytest.raises(httpx.RemoteProtocolError) if then == "fail" else contextlib.nullcontext()
        with failure:
            await env.drain(response)
        await wait_for(
            lambda: env.proxy.streams.open_for("deu-planner") == 0, timeout=10, what="the slot released"
        )


async def test_the_gateway_wide_cap_is_a_503(env: Env) -> None:
    for client_id in ("deu-planner", "deu-planner", "nato-reviewer"):
        assert (await env.stream(client_id)).status_code == 200
    reached = env.source.stream_requests
    # nato-reviewer has a slot of its own left, but the gateway has none.
    refused = await env.stream("nato-reviewer")
    _assert_refused(refused, 503, "stream-capacity-reached")
    assert f"{TOTAL} event streams open" in refused.json()["detail"]
    assert env.source.stream_requests == reached


async def test_a_stream_on_an_unannounced_path_counts_against_the_cap(env: Env) -> None:
    assert (await env.stream("deu-planner", "/v1/events/live")).status_code == 200
    assert (await env.stream("deu-planner")).status_code == 200
    assert (await env.stream("deu-planner", "/v1/events/live")).status_code == 429


async def test_ordinary_requests_answer_while_streams_fill_the_stream_pool(env: Env) -> None:
    # Every stream slot taken: the notifications stream pool is full (more streams than the ordinary pool
    # has connections), yet ordinary requests to the same service have their own connections.
    for client_id in ("deu-planner", "deu-planner", "nato-reviewer"):
        assert (await env.stream(client_id)).status_code == 200
    paths = ["/v1/events", "/v1/subscriptions", "/v1/deliveries"] * 2
    responses = await asyncio.gather(
        *(env.http.get(f"{env.url}{path}", headers=env.auth("nato-reviewer")) for path in paths)
    )
    assert [r.status_code for r in responses] == [200] * len(paths)
    assert [r.json()["path"] for r in responses] == paths


def test_slots_are_counted_per_client_and_in_all() -> None:
    slots = StreamSlots(total=3, per_client=2)
    first, second = slots.acquire("a"), slots.acquire("a")
    with pytest.raises(StreamCapReached) as per_client:
        slots.acquire("a")
    assert per_client.value.per_client and per_client.value.cap == 2
    slots.acquire("b")
    with pytest.raises(StreamCapReached) as total:
        slots.acquire("c")
    assert not total.value.per_client and total.value.cap == 3
    first.release()
    first.release()  # a second release gives nothing back twice
    assert (slots.open, slots.open_for("a")) == (2, 1)
    second.release()
    assert slots.open_for("a") == 0
    slots.acquire("c")
