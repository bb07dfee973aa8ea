"""Gateway test fixtures: real uvicorn servers on free loopback ports, started and stopped per test."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest
import uvicorn

from icep.gateway.app import create_app
from icep.gateway.clients import hash_secret
from icep.gateway.settings import GatewaySettings

#: Cheap scrypt for test clients: the cost parameters are read from the hash, so tests stay fast.
CHEAP = {"n": 2**4, "r": 8, "p": 1}

SECRETS = {
    "deu-planner": "deu-secret",
    "nato-reviewer": "nato-secret",
    "odd-secret": "p@ss:w rd+&=",
    "disabled-client": "disabled-secret",
}


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The test runner owns the signals; a server inside it must not take them.
        yield


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Serve `app` on a free 127.0.0.1 port for the duration of the block; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = _Server(
        uvicorn.Config(
            app,
            lifespan="on",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
            proxy_headers=False,  # the peer's address, not whatever X-Forwarded-For claims
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(20):
            while not server.started:
                if task.done():
                    task.result()  # raise what stopped it
                    raise RuntimeError("the server stopped before it started")
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody else takes it) but not listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def write_clients(path: Path) -> Path:
    entries = [
        ("deu-planner", "DEU", ["planner", "subscriber"], ["read", "write"], False),
        ("nato-reviewer", "NATO", ["reviewer", "operator"], ["read", "write"], False),
        ("odd-secret", "UKR", ["subscriber"], ["read"], False),
        ("disabled-client", "FRA", ["planner"], ["read"], True),
    ]
    lines = []
    for client_id, nation, roles, scopes, disabled in entries:
        lines += [
            "[[client]]",
            f'client_id = "{client_id}"',
            f'secret_hash = "{hash_secret(SECRETS[client_id], **CHEAP)}"',
            f'nation = "{nation}"',
            f"roles = {roles!r}".replace("'", '"'),
            f"scopes = {scopes!r}".replace("'", '"'),
            f"disabled = {'true' if disabled else 'false'}",
            "",
        ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def clients_file(tmp_path: Path) -> Path:
    return write_clients(tmp_path / "clients.toml")


def gateway_settings(tmp_path: Path, clients_file: Path, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "clients_file": str(clients_file),
        "signing_keys_file": str(tmp_path / "keys" / "signing-keys.json"),
        "token_ttl_seconds": 300,
        "upstream_timeout_seconds": 0.5,
        "max_body_bytes": 1024,
        **overrides,
    }
    return GatewaySettings(**values)


@pytest.fixture
async def gateway(tmp_path: Path, clients_file: Path) -> AsyncIterator[tuple[str, Any]]:
    """A gateway with no reachable upstreams: enough for tokens and the JWKS. Yields (url, app)."""
    with closed_port() as port:
        upstream = f"http://127.0.0.1:{port}"
        settings = gateway_settings(
            tmp_path,
            clients_file,
            plans_url=upstream,
            procurement_url=upstream,
            standards_url=upstream,
            notifications_url=upstream,
        )
        app = create_app(settings)
        async with serve(app) as url:
            yield url, app


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        yield client


TokenGetter = Callable[..., Awaitable[str]]


@pytest.fixture
def get_token(http: httpx.AsyncClient) -> TokenGetter:
    """`await get_token(gateway_url, client_id="deu-planner", **form)`: a token from the token endpoint."""

    async def issue(url: str, client_id: str = "deu-planner", **form: str) -> str:
        response = await http.post(
            f"{url}/oauth/token",
            data={"grant_type": "client_credentials", **form},
            # RFC 6749 section 2.3.1: id and secret are form-urlencoded inside the Basic credentials.
            auth=(quote_plus(client_id), quote_plus(SECRETS[client_id])),
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    return issue


@pytest.fixture(scope="session")
def server() -> Callable[[Any], contextlib.AbstractAsyncContextManager[str]]:
    """`async with server(app) as url`: the app served over real HTTP on a free loopback port."""
    return serve


@pytest.fixture(scope="session")
def refusing_port() -> Callable[[], contextlib.AbstractContextManager[int]]:
    """`with refusing_port() as port`: a loopback port where connections are refused."""
    return closed_port


@pytest.fixture
def make_settings(tmp_path: Path, clients_file: Path) -> Callable[..., GatewaySettings]:
    """`make_settings(**overrides)`: gateway settings over the test clients and a temporary key file."""
    return lambda **overrides: gateway_settings(tmp_path, clients_file, **overrides)


@pytest.fixture(scope="module")
def module_settings(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., GatewaySettings]:
    """Like `make_settings`, for fixtures shared by a whole test module."""
    tmp_path = tmp_path_factory.mktemp("gateway")
    clients = write_clients(tmp_path / "clients.toml")
    return lambda **overrides: gateway_settings(tmp_path, clients, **overrides)
