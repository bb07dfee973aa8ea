"""Paths the gateway must not forward: dot segments (plain and percent-encoded), encoded slashes and
backslashes. Requests are raw request lines written to a socket, so no client normalises them first; the
upstream is a real server that records every request it receives."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from icep.gateway.app import create_app
from icep.gateway.edge import path_refusal

#: Paths that reach an upstream's internal endpoints (or leave the route's prefix) once normalised.
REFUSED_PATHS = [
    "/v1/plans/../../metrics",
    "/v1/plans/./../../metrics",
    "/v1/plans/..",
    "/v1/plans/.",
    "/v1/standards/x/../../../readyz",
    "/v1/plans/%2e%2e/%2e%2e/metrics",
    "/v1/plans/%2E%2E/%2E%2E/metrics",
    "/v1/plans/.%2e/.%2E/metrics",
    "/v1/plans/%2e./%2E./metrics",
    "/v1/plans/%2e/x",
    "/v1/subscriptions/..;/..;/docs",
    "/v1/plans/..%2f..%2fmetrics",
    "/v1/plans/..%2F..%2Fopenapi.json",
    "/v1/plans/a%2fb",
    "/v1/plans/..\\..\\metrics",
    "/v1/plans/a\\b",
    "/v1/plans/..%5c..%5cmetrics",
    "/v1/plans/..%5C..%5Cmetrics",
    "/v1/../metrics",
    "/../v1/plans",
]


@dataclass
class Recorder:
    """A stand-in service that answers everything and notes each path it was asked for."""

    seen: list[str] = field(default_factory=list)

    def app(self) -> Starlette:
        async def anything(request: Request) -> Response:
            self.seen.append(request.scope["raw_path"].decode("latin-1"))
            return JSONResponse({"path": request.url.path})

        methods = ["GET", "POST", "PUT", "DELETE"]
        return Starlette(routes=[Route("/{rest:path}", anything, methods=methods)])


Env = tuple[str, Recorder, str]


@pytest.fixture(scope="module")
async def env(module_settings: Any, server: Any) -> AsyncIterator[Env]:
    recorder = Recorder()
    async with server(recorder.app()) as upstream:
        urls = {f"{name}_url": upstream for name in ("plans", "procurement", "standards", "notifications")}
        app = create_app(module_settings(**urls, token_rate_limit="1000/minute"))
        async with server(app) as gateway:
            async with httpx.AsyncClient(trust_env=False) as http:
                answer = await http.post(
                    f"{gateway}/oauth/token",
                    data={"grant_type": "client_credentials"},
                    auth=("deu-planner", "deu-secret"),
                )
            assert answer.status_code == 200, answer.text
            yield gateway, recorder, answer.json()["access_token"]


async def raw_request(
    base: str, request_line: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """Send one request exactly as written (the target byte for byte) and read the whole answer."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        head = [request_line, f"Host: {host}:{port}", "Connection: close"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        async with asyncio.timeout(10):
            data = await reader.read(-1)  # until the server closes (Connection: close)
    finally:
        writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    header_block, _, body = rest.partition(b"\r\n\r\n")
    fields = {}
    for line in header_block.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), fields, body


@pytest.mark.parametrize("path", REFUSED_PATHS)
@pytest.mark.parametrize("with_token", [True, False], ids=["token", "no-token"])
async def test_traversal_forms_are_refused_and_never_forwarded(env: Env, path: str, with_token: bool) -> None:
    gateway, recorder, token = env
    headers = {"Authorization": f"Bearer {token}"} if with_token else {}
    before = len(recorder.seen)
    status, fields, body = await raw_request(gateway, f"GET {path} HTTP/1.1", headers)
    assert status == 400, body
    assert fields["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == 400
    assert problem["type"].endswith("/invalid-path")
    assert "x-request-id" in fields
    assert len(recorder.seen) == before, recorder.seen[before:]


async def test_a_state_changing_traversal_is_refused_too(env: Env) -> None:
    gateway, recorder, token = env
    before = len(recorder.seen)
    status, _, body = await raw_request(
        gateway,
        "POST /v1/plans/%2e%2e/%2e%2e/metrics HTTP/1.1",
        {"Authorization": f"Bearer {token}", "Content-Length": "0"},
    )
    assert status == 400, body
    assert len(recorder.seen) == before


async def test_an_absolute_form_request_target_is_checked_alike(env: Env) -> None:
    gateway, recorder, token = env
    before = len(recorder.seen)
    status, _, body = await raw_request(
        gateway,
        f"GET {gateway}/v1/plans/%2e%2e/%2e%2e/metrics HTTP/1.1",
        {"Authorization": f"Bearer {token}"},
    )
    assert status == 400, body
    assert len(recorder.seen) == before


async def test_ordinary_paths_are_forwarded_as_sent(env: Env) -> None:
    """The positive control: the same socket client, a path with dots inside segments and escapes that are
    no separators, reaches the upstream byte for byte."""
    gateway, recorder, token = env
    path = "/v1/plans/v1.2..3/a%20b/%41?x=../..&y=%2f"
    status, _, body = await raw_request(gateway, f"GET {path} HTTP/1.1", {"Authorization": f"Bearer {token}"})
    assert status == 200, body
    assert recorder.seen[-1] == path.split("?", 1)[0]


async def test_without_a_token_an_ordinary_path_is_401_not_400(env: Env) -> None:
    gateway, recorder, _ = env
    before = len(recorder.seen)
    status, fields, _ = await raw_request(gateway, "GET /v1/plans/7 HTTP/1.1", {})
    assert status == 401
    assert fields["www-authenticate"].startswith("Bearer")
    assert len(recorder.seen) == before


async def test_a_path_outside_every_route_prefix_is_not_forwarded(env: Env) -> None:
    """`/v1//plans` routes to plans by its segments, but the path sent would not be under `/v1/plans`."""
    gateway, recorder, token = env
    before = len(recorder.seen)
    status, _, body = await raw_request(
        gateway, "GET /v1//plans HTTP/1.1", {"Authorization": f"Bearer {token}"}
    )
    assert status == 400, body
    assert json.loads(body)["type"].endswith("/invalid-path")
    assert len(recorder.seen) == before


async def test_a_checked_path_goes_upstream_unchanged_or_not_at_all(env: Env) -> None:
    """The upstream sees exactly the path that was checked. The ordinary client sends it as it is; the
    fallback for header values that are not UTF-8 (httpx, which escapes `{` and `}` when it builds a URL)
    would send another path, so there the gateway refuses rather than forward something else."""
    gateway, recorder, token = env
    auth = {"Authorization": f"Bearer {token}"}
    for path in ("/v1/plans/a{b}", "/v1/plans/a^b|c"):
        status, _, body = await raw_request(gateway, f"GET {path} HTTP/1.1", auth)
        assert status == 200, body
        assert recorder.seen[-1] == path
    before = len(recorder.seen)
    latin1 = {**auth, "X-Note": "caf\u00e9"}  # sent as the octets c a f 0xE9: not UTF-8
    status, _, body = await raw_request(gateway, "GET /v1/plans/a{b} HTTP/1.1", latin1)
    assert status == 400, body
    assert json.loads(body)["type"].endswith("/invalid-path")
    assert len(recorder.seen) == before
    # What httpx leaves as it is goes through the fallback unchanged.
    status, _, body = await raw_request(gateway, "GET /v1/plans/a^b|c HTTP/1.1", latin1)
    assert status == 200, body
    assert recorder.seen[-1] == "/v1/plans/a^b|c"


@pytest.mark.parametrize("path", REFUSED_PATHS)
def test_the_path_rule(path: str) -> None:
    assert path_refusal(path.encode("latin-1")) is not None


@pytest.mark.parametrize(
    "path",
    [
        "/v1/plans",
        "/v1/plans/7/submit",
        "/v1/standards/STANAG-4569",
        "/v1/plans/v1.2",
        "/v1/plans/...",
        "/v1/a%41",
    ],
)
def test_the_path_rule_lets_ordinary_paths_pass(path: str) -> None:
    assert path_refusal(path.encode("latin-1")) is None
