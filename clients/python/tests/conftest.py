"""Fixtures of icep-client's tests: a scripted HTTP/1.1 server on 127.0.0.1 (real sockets, so retries,
dropped connections and streams are what a partner's network gives), and the platform for the module
that runs against it."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import sys
import types
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _repository_fixtures() -> types.ModuleType:
    """The repository's tests/conftest.py, under the name pytest gives it (`tests.conftest`), so that
    this folder starts the platform exactly as tests/e2e does; loaded here when pytest has not loaded
    it yet (a run of this folder alone), and the same module when it has."""
    name = "tests.conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "conftest.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules.setdefault("tests", types.ModuleType("tests"))
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


#: The whole platform as `icep up` starts it, one per module (test_against_the_platform.py).
platform = _repository_fixtures().platform


@dataclass
class Seen:
    """A request as the server received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    #: Sent one after another, then the connection is closed (a stream).
    chunks: list[bytes] | None = None


#: Close the connection after reading the request, without answering.
DROP = Reply(status=0)

Handler = Callable[[Seen], Reply]


class ScriptedServer:
    """Answers each request with what `handler` says, and keeps every request it read. `/oauth/token`
    is answered by the server itself (token `t1`, `t2`, ... each lasting `token_lifetime`)."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.handler: Handler = lambda seen: Reply(404, {"title": "Not Found", "status": 404})
        self.tokens_issued = 0
        self.token_lifetime = 300
        self.refused_tokens: set[str] = set()
        self.token_reply: Reply | None = None
        self._server: asyncio.Server | None = None
        self.url = ""

    def api(self) -> list[Seen]:
        return [r for r in self.requests if r.path != "/oauth/token"]

    def tokens(self) -> list[Seen]:
        return [r for r in self.requests if r.path == "/oauth/token"]

    async def start(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def _answer(self, seen: Seen) -> Reply:
        if seen.path == "/oauth/token":
            if self.token_reply is not None:
                return self.token_reply
            self.tokens_issued += 1
            return Reply(
                200,
                {
                    "access_token": f"t{self.tokens_issued}",
                    "token_type": "Bearer",
                    "expires_in": self.token_lifetime,
                    "scope": "read write",
                },
            )
        token = seen.headers.get("authorization", "").removeprefix("Bearer ")
        if token in self.refused_tokens or not token:
            return Reply(401, {"type": "about:blank", "title": "Unauthorized", "status": 401, "detail": "no"})
        return self.handler(seen)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            url = urlsplit(target)
            seen = Seen(method, url.path, parse_qs(url.query), headers, body)
            self.requests.append(seen)
            reply = self._answer(seen)
            if reply.status == 0:
                return  # dropped
            payload = b"" if reply.body is None else json.dumps(reply.body).encode()
            content_type = "application/problem+json" if reply.status >= 400 else "application/json"
            sent = {"Content-Type": content_type, "Connection": "close", **reply.headers}
            if reply.chunks is None:
                sent["Content-Length"] = str(len(payload))
            status_line = f"HTTP/1.1 {reply.status} X\r\n"
            writer.write((status_line + "".join(f"{k}: {v}\r\n" for k, v in sent.items()) + "\r\n").encode())
            if reply.chunks is None:
                writer.write(payload)
            else:
                for chunk in reply.chunks:
                    writer.write(chunk)
                    await writer.drain()
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    running = await ScriptedServer().start()
    try:
        yield running
    finally:
        await running.stop()


class Waits:
    """A `RetryPolicy.sleep` that records the waits asked for and does not wait."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def waits() -> Waits:
    return Waits()


ScriptedServer.Reply = Reply  # type: ignore[attr-defined]
ScriptedServer.DROP = DROP  # type: ignore[attr-defined]
