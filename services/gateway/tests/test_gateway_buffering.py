"""Ordinary (non-stream) upstream answers are read whole before the caller gets anything: a service that
dies mid-answer gives a 502 problem, never a status line followed by a reset. The upstream here is a real
socket server that writes exactly the bytes each test wants, and then (for some) hangs up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from icep.gateway.app import create_app

MAX_RESPONSE = 1000
JSON_CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
TEXT_CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"

#: path -> the bytes the upstream writes after reading the request head; then it closes the connection.
ANSWERS: dict[str, bytes] = {
    # Declares 100 bytes, sends 12, then the service "dies".
    "/v1/plans/cut": b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
    b"\r\n" + b'{"id": "01J',
    # Chunked, the terminating chunk never comes.
    "/v1/plans/cut-chunked": JSON_CHUNKED + b"5\r\n[1, 2\r\n",
    # Chunked and complete: buffered, and given a Content-Length.
    "/v1/plans/chunked": JSON_CHUNKED + b"5\r\n[1, 2\r\n4\r\n, 3]\r\n0\r\n\r\n",
    # Larger than the gateway buffers: declared, or only counted.
    "/v1/plans/huge": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2000\r\n\r\n"
    + b"x" * 2000,
    "/v1/plans/huge-chunked": TEXT_CHUNKED
    + b"".join(b"64\r\n" + b"y" * 100 + b"\r\n" for _ in range(20))
    + b"0\r\n\r\n",
    # A HEAD answer's Content-Length describes the GET body; it stays.
    "/v1/plans/head": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 42\r\n\r\n",
    # ... also when that body would exceed what the gateway buffers (none is sent).
    "/v1/plans/head-large": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Content-Length: 5000\r\n\r\n",
    # Reads the request and hangs up without a word (a service that dies mid-request).
    "/v1/plans/drop": b"",
}
#: (method, path) of every request the upstream read.
RECEIVED: list[tuple[str, str]] = []


#: Sends the head and part of the body, then neither sends more nor hangs up (until the module ends).
STALL = "/v1/plans/stall"
_HANG_UP = asyncio.Event()


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        method, raw_path, _ = head.split(b" ", 2)
        path = raw_path.decode("ascii")
        RECEIVED.append((method.decode("ascii"), path))
        writer.write(ANSWERS["/v1/plans/cut"] if path == STALL else ANSWERS[path])
        await writer.drain()
        if path == STALL:
            await asyncio.wait_for(_HANG_UP.wait(), 30)
    finally:
        writer.close()


Env = tuple[str, str]


@pytest.fixture(scope="module")
async def env(module_settings: Any, server: Any) -> AsyncIterator[Env]:
    upstream = await asyncio.start_server(_answer, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{upstream.sockets[0].getsockname()[1]}"
        routes = {f"{name}_url": url for name in ("plans", "procurement", "standards", "notifications")}
        app = create_app(
            module_settings(**routes, max_response_bytes=MAX_RESPONSE, token_rate_limit="100/minute")
        )
        async with server(app) as gateway, httpx.AsyncClient(trust_env=False) as http:
            answer = await http.post(
                f"{gateway}/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=("deu-planner", "deu-secret"),
            )
            yield gateway, answer.json()["access_token"]
    finally:
        _HANG_UP.set()
        upstream.close()
        await upstream.wait_closed()


async def _call(env: Env, path: str, method: str = "GET") -> httpx.Response:
    gateway, token = env
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        return await http.request(method, f"{gateway}{path}", headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize("path", ["/v1/plans/cut", "/v1/plans/cut-chunked", STALL])
async def test_a_service_dying_mid_answer_is_a_502_problem(env: Env, path: str) -> None:
    # Had the gateway streamed, the client would have read the 201/200 head and then failed on the body.
    response = await _call(env, path)
    assert response.status_code == 502, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 502
    assert problem["type"].endswith("/bad-gateway")
    assert "plans" in problem["detail"]


@pytest.mark.parametrize("path", ["/v1/plans/huge", "/v1/plans/huge-chunked"])
async def test_an_answer_over_the_size_limit_is_a_502_problem(env: Env, path: str) -> None:
    response = await _call(env, path)
    assert response.status_code == 502, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/upstream-answer-too-large")


async def test_a_complete_chunked_answer_arrives_whole_with_its_length(env: Env) -> None:
    response = await _call(env, "/v1/plans/chunked")
    assert response.status_code == 200
    assert response.json() == [1, 2, 3]
    assert response.headers["content-length"] == "9"
    assert "transfer-encoding" not in response.headers


async def test_a_head_answer_keeps_the_services_content_length(env: Env) -> None:
    response = await _call(env, "/v1/plans/head", method="HEAD")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "42"


async def test_a_head_answer_longer_than_the_buffer_limit_is_no_error(env: Env) -> None:
    response = await _call(env, "/v1/plans/head-large", method="HEAD")
    assert response.status_code == 200
    assert response.headers["content-length"] == "5000"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "POST"])
async def test_a_request_the_service_died_on_is_a_502_and_was_sent_once(env: Env, method: str) -> None:
    before = len(RECEIVED)
    response = await _call(env, "/v1/plans/drop", method=method)
    assert response.status_code == 502, response.text
    assert response.json()["type"].endswith("/bad-gateway")
    # Not sent again on a new connection: the service may have done the work before it died.
    assert RECEIVED[before:] == [(method, "/v1/plans/drop")]
