"""The proxy against a real upstream served by uvicorn on another loopback port."""

from __future__ import annotations

import asyncio
import uuid
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


@dataclass
class Upstream:
    """A stand-in for a service: echoes requests, streams events, sleeps, sets odd headers."""

    #: Which service this stand-in plays; it says so in `X-Upstream`.
    name: str = "plans"
    url: str = ""
    #: Lets the event stream send its later events only once the test has seen the first one.
    more_events: asyncio.Event = field(default_factory=asyncio.Event)
    #: Releases the slow handler (set at teardown so the server can stop promptly).
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> Starlette:
        async def echo(request: Request) -> Response:
            body = await request.body()
            return JSONResponse(
                {
                    "method": request.method,
                    "raw_path": request.scope["raw_path"].decode(),
                    "query": request.scope["query_string"].decode(),
                    "headers": [[k.decode(), v.decode("latin-1")] for k, v in request.headers.raw],
                    "body": body.decode(),
                    # The gateway's end of the connection: the same port means a reused connection.
                    "peer": [request.client.host, request.client.port] if request.client else None,
                },
                status_code=201 if request.method == "POST" else 200,
                headers={"X-Upstream": self.name, "ETag": '"3"'},
            )

        async def hop(request: Request) -> Response:
            response = Response(b"hop", media_type="text/plain")
            response.headers["Connection"] = "X-Hop-Resp"
            response.headers["X-Hop-Resp"] = "secret"
            response.headers["Keep-Alive"] = "timeout=5"
            response.headers["Proxy-Authenticate"] = 'Basic realm="upstream"'
            response.headers["X-End-To-End"] = "kept"
            response.headers.append("Set-Cookie", "a=1; Path=/")
            response.headers.append("Set-Cookie", "b=2; Path=/")
            return response

        async def events(request: Request) -> Response:
            async def stream() -> AsyncIterator[bytes]:
                yield b'id: 1\nevent: plan.submitted\ndata: {"n": 1}\n\n'
                await asyncio.wait_for(self.more_events.wait(), 10)
                yield b'id: 2\nevent: plan.submitted\ndata: {"n": 2}\n\n'
                yield b'id: 3\nevent: plan.submitted\ndata: {"n": 3}\n\n'

            return StreamingResponse(
                stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
            )

        async def slow(request: Request) -> Response:
            await asyncio.wait_for(self.release.wait(), 30)
            return JSONResponse({"late": True})

        methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        return Starlette(
            routes=[
                Route("/v1/plans/hop", hop),
                Route("/v1/plans/slow", slow),
                Route("/v1/events/stream", events),
                Route("/v1/{rest:path}", echo, methods=methods),
            ]
        )


Env = tuple[str, Upstream, Any]


@pytest.fixture(scope="module")
async def env(module_settings: Any, server: Any, refusing_port: Any) -> AsyncIterator[Env]:
    """A gateway whose plans and notifications are one live stand-in, standards another, and procurement
    refuses connections."""
    upstream = Upstream()
    standards = Upstream(name="standards")
    async with server(upstream.app()) as upstream_url, server(standards.app()) as standards_url:
        upstream.url = upstream_url
        standards.url = standards_url
        try:
            with refusing_port() as closed:
                app = create_app(
                    module_settings(
                        plans_url=upstream_url,
                        notifications_url=upstream_url,
                        standards_url=standards_url,
                        procurement_url=f"http://127.0.0.1:{closed}",
                        upstream_timeout_seconds=0.5,
                        max_body_bytes=1024,
                        # Every test here takes a token; the token endpoint's limit is not what is tested.
                        token_rate_limit="1000/minute",
                    )
                )
                async with server(app) as gateway_url:
                    yield gateway_url, upstream, app
        finally:
            # Let held-back handlers finish, so the upstream servers can stop at once.
            for stand_in in (upstream, standards):
                stand_in.release.set()
                stand_in.more_events.set()


@pytest.fixture
async def auth(env: Env, get_token: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {await get_token(env[0])}"}


def _header(echo: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in echo["headers"] if k.lower() == name]


async def test_forwards_method_path_query_body_and_headers(
    env: Env, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    url, _, _ = env
    response = await http.post(
        f"{url}/v1/plans/a%20b/submit?a=1&b=x%20y&b=2",
        content=b'{"note": "hello"}',
        headers={**auth, "Content-Type": "application/json", "X-Custom": "v", "X-Request-Id": "caller-id-1"},
    )
    assert response.status_code == 201
    echo = response.json()
    assert echo["method"] == "POST"
    assert echo["raw_path"] == "/v1/plans/a%20b/submit"
    assert echo["query"] == "a=1&b=x%20y&b=2"
    assert echo["body"] == '{"note": "hello"}'
    assert _header(echo, "x-custom") == ["v"]
    assert _header(echo, "content-type") == ["application/json"]
    assert _header(echo, "authorization") == [auth["Authorization"]]  # services verify it again
    assert _header(echo, "x-forwarded-for") == ["127.0.0.1"]
    assert _header(echo, "x-forwarded-proto") == ["http"]
    assert _header(echo, "x-forwarded-host") == [url.removeprefix("http://")]
    assert _header(echo, "x-request-id") == ["caller-id-1"]
    assert _header(echo, "host") == [env[1].url.removeprefix("http://")]
    assert response.headers["x-request-id"] == "caller-id-1"
    assert response.headers["x-upstream"] == "plans"
    assert response.headers["etag"] == '"3"'


@pytest.mark.parametrize(
    "octets",
    [b"caf\xe9", "caf\u00e9 \u2713".encode()],
    ids=["latin-1 (the fallback client)", "utf-8 (the ordinary client)"],
)
async def test_header_values_outside_ascii_are_forwarded_as_received(
    env: Env, http: httpx.AsyncClient, auth: dict[str, str], octets: bytes
) -> None:
    url, _, _ = env
    # HTTP field values are octets; non-ASCII ones pass through unchanged, never a 500.
    response = await http.post(
        f"{url}/v1/plans", content=b"{}", headers=[*auth.items(), ("Idempotency-Key", octets)]
    )
    assert response.status_code == 201
    assert _header(response.json(), "idempotency-key") == [octets.decode("latin-1")]


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_every_method_is_forwarded(
    env: Env, http: httpx.AsyncClient, auth: dict[str, str], method: str
) -> None:
    url, _, _ = env
    response = await http.request(method, f"{url}/v1/standards/x", headers=auth)
    assert response.status_code == 200
    assert response.json()["method"] == method


async def test_head_is_forwarded(env: Env, http: httpx.AsyncClient, auth: dict[str, str]) -> None:
    url, _, _ = env
    response = await http.head(f"{url}/v1/plans/x", headers=auth)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["x-upstream"] == "plans"


async def test_a_request_id_is_made_when_the_caller_sent_none(
    env: Env, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    url, _, _ = env
    response = await http.get(f"{url}/v1/capacity/DEU", headers=auth)
    request_id = response.headers["x-request-id"]
    assert uuid.UUID(request_id).version == 7  # time-ordered (icep.platform.ids)
    assert _header(response.json(), "x-request-id") == [request_id]


async def test_forwarding_headers_of_an_untrusted_peer_are_not_passed_on(
    env: Env, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    url, _, _ = env
    forged = {
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example",
        "Forwarded": "for=203.0.113.7;proto=https",
        "X-Real-IP": "203.0.113.7",
    }
    echo = (await http.get(f"{url}/v1/plans", headers={**auth, **forged})).json()
    # No proxy is trusted here: the gateway says who it saw, and nothing the caller claimed.
    assert _header(echo, "x-forwarded-for") == ["127.0.0.1"]
    assert _header(echo, "x-forwarded-proto") == ["http"]
    assert _header(echo, "x-forwarded-host") == [url.removeprefix("http://")]
    assert _header(echo, "forwarded") == []
    assert _header(echo, "x-real-ip") == []


async def test_hop_by_hop_request_headers_are_dropped(
    env: Env, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    url, _, _ = env
    response = await http.get(
        f"{url}/v1/plans",
        headers={
            **auth,
            "Connection": "keep-alive, X-Hop-Req",
            "X-Hop-Req": "secret",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "TE": "trailers",
            "X-End-To-End": "kept",
        },
    )
    echo = response.json()
    names = {k.lower() for k, _ in echo["headers"]}
    assert not names & {"x-hop-req", "keep-alive", "proxy-authorization", "te"}
    assert all("x-hop-req" not in v.lower() for v in _header(echo, "connection"))
    assert _header(echo, "x-end-to-end") == ["kept"]


async def test_hop_by_hop_response_headers_are_dropped(
    env: Env, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    url, _, _ = env
    response = await http.get(f"{url}/v1/plans/hop", headers=auth)
    assert response.text == "hop"
    for name in ("x-hop-resp", "keep-alive", "proxy-authenticate"):
        assert name not in response.headers
    assert "x-hop-resp" not in response.headers.get("connection", "").lower()
    assert response.headers["x-end-to-end"] == "kept"
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]


async def test_upstream_cookies_are_not_replayed_to_other_callers(
    env: Env, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    url, _, _ = env
    await http.get(f"{url}/v1/plans/hop", headers=auth)
    async with httpx.AsyncClient(trust_env=False) as other:  # a fresh caller with no cookies of its own
        echo = (await other.get(f"{url}/v1/plans", headers=auth)).json()
    assert _header(echo, "cookie") == []


async def test_server_sent_events_stream_through(
    env: Env, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    url, upstream, _ = env
    async with asyncio.timeout(10), http.stream("GET", f"{url}/v1/events/stream", headers=auth) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        received: list[str] = []
        # The first event arrives while the upstream still holds back the rest: streamed, not buffered.
        while "" not in received:
            received.append(await anext(lines))
        assert received == ["id: 1", "event: plan.submitted", 'data: {"n": 1}', ""]
        upstream.more_events.set()
        rest = [line async for line in lines]
    assert [line for line in rest if line.startswith("id:")] == ["id: 2", "id: 3"]


async def test_unreachable_upstream_is_503(env: Env, http: httpx.AsyncClient, auth: dict[str, str]) -> None:
    url, _, _ = env
    response = await http.get(f"{url}/v1/procurement/initiatives", headers=auth)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 503
    assert problem["type"].endswith("/upstream-unavailable")
    assert "procurement" in problem["detail"]
    assert "x-request-id" in response.headers


async def test_slow_upstream_is_504(env: Env, http: httpx.AsyncClient, auth: dict[str, str]) -> None:
    url, _, _ = env
    response = await http.get(f"{url}/v1/plans/slow", headers=auth)
    assert response.status_code == 504
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 504
    assert response.json()["type"].endswith("/upstream-timeout")


async def test_a_body_over_the_limit_is_413(env: Env, http: httpx.AsyncClient, auth: dict[str, str]) -> None:
    url, _, _ = env
    response = await http.post(f"{url}/v1/plans", content=b"x" * 1025, headers=auth)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    at_limit = await http.post(f"{url}/v1/plans", content=b"x" * 1024, headers=auth)
    assert at_limit.status_code == 201


async def test_a_chunked_body_over_the_limit_is_413(
    env: Env, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    url, _, _ = env

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"y" * 300  # no Content-Length: only counting the bytes can catch this

    response = await http.post(f"{url}/v1/plans", content=chunks(), headers=auth)
    assert response.status_code == 413


async def test_no_token_is_a_401_problem(env: Env, http: httpx.AsyncClient) -> None:
    url, _, _ = env
    response = await http.get(f"{url}/v1/plans")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["status"] == 401
    assert "x-request-id" in response.headers


@pytest.mark.parametrize(
    "authorization", ["Bearer nonsense", "Basic ZGV1LXBsYW5uZXI6ZGV1LXNlY3JldA==", "Bearer"]
)
async def test_a_bad_token_is_a_401_problem(env: Env, http: httpx.AsyncClient, authorization: str) -> None:
    url, _, _ = env
    response = await http.get(f"{url}/v1/plans", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


async def test_an_unknown_prefix_is_a_404_problem(
    env: Env, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    url, _, _ = env
    response = await http.get(f"{url}/v1/nothing-here", headers=auth)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("path", "upstream"),
    [
        ("/v1/plans/7", "plans"),
        ("/v1/capacity/DEU", "plans"),
        ("/v1/events", "plans"),  # notifications: the same stand-in as plans here
        ("/v1/standards/STANAG-4569", "standards"),
        ("/v1/interoperability", "standards"),
        ("/v1/interchangeability/x", "standards"),
    ],
)
async def test_each_prefix_goes_to_its_own_upstream(
    env: Env, http: httpx.AsyncClient, auth: dict[str, str], path: str, upstream: str
) -> None:
    url, _, _ = env
    response = await http.get(f"{url}{path}", headers=auth)
    assert response.status_code == 200
    assert response.headers["x-upstream"] == upstream
    assert response.json()["raw_path"] == path


async def test_requests_reuse_pooled_upstream_connections(
    env: Env, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    url, _, _ = env

    async def peer(path: str) -> tuple[str, int]:
        response = await http.get(f"{url}{path}", headers=auth)
        assert response.status_code == 200
        host, port = response.json()["peer"]
        return host, port

    plans = {await peer("/v1/plans") for _ in range(5)}
    standards = {await peer("/v1/standards") for _ in range(5)}
    # One kept-alive connection per upstream carries one request after another: no new connection each time.
    assert len(plans) == 1
    assert len(standards) == 1
    assert plans != standards  # each upstream has its own pool


async def test_an_upstream_that_answers_garbage_is_502(
    make_settings: Any, server: Any, http: httpx.AsyncClient, get_token: Any
) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"this is not HTTP\r\n\r\n")
        await writer.drain()
        writer.close()

    broken = await asyncio.start_server(garbage, "127.0.0.1", 0)
    try:
        port = broken.sockets[0].getsockname()[1]
        async with server(create_app(make_settings(plans_url=f"http://127.0.0.1:{port}"))) as url:
            token = await get_token(url)
            response = await http.get(f"{url}/v1/plans", headers={"Authorization": f"Bearer {token}"})
    finally:
        broken.close()
        await broken.wait_closed()
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/bad-gateway")
