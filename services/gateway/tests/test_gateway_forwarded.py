"""Forwarding headers (`X-Forwarded-For` and friends) count only from trusted peers
(`ICEP_GATEWAY_FORWARDED_ALLOW_IPS`): the token endpoint's per-address limit, the scheme (HSTS) and what the
services are told. Gateways and upstreams are real servers on loopback ports."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from icep.gateway.app import create_app
from icep.gateway.edge import TrustedProxies, parse_networks
from icep.gateway.settings import GatewaySettings
from icep.platform.launcher import Launcher

TOKEN_FORM = {"grant_type": "client_credentials"}
DEU = ("deu-planner", "deu-secret")  # conftest.SECRETS


def _echo() -> Starlette:
    async def echo(request: Request) -> Response:
        return JSONResponse({"headers": [[k.decode(), v.decode("latin-1")] for k, v in request.headers.raw]})

    return Starlette(routes=[Route("/v1/{rest:path}", echo)])


@pytest.fixture
async def upstream_url(server: Any) -> AsyncIterator[str]:
    async with server(_echo()) as url:
        yield url


def _settings(make_settings: Any, upstream_url: str, **overrides: Any) -> GatewaySettings:
    routes = {f"{name}_url": upstream_url for name in ("plans", "standards", "notifications", "procurement")}
    settings: GatewaySettings = make_settings(**{**routes, "token_rate_limit": "2/minute", **overrides})
    return settings


def _header(echo: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in echo["headers"] if k.lower() == name]


async def test_a_forged_forwarded_for_from_an_untrusted_peer_does_not_escape_the_token_limit(
    server: Any, make_settings: Any, upstream_url: str, http: httpx.AsyncClient
) -> None:
    async with server(create_app(_settings(make_settings, upstream_url))) as url:
        answers = [
            await http.post(
                f"{url}/oauth/token",
                data=TOKEN_FORM,
                auth=DEU,
                headers={"X-Forwarded-For": f"198.51.100.{n}", "X-Real-IP": f"198.51.100.{n}"},
            )
            for n in range(3)
        ]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json()["type"].endswith("/rate-limited")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_icep_serve_lets_no_loopback_peer_forge_its_address(
    tmp_path: Path, clients_file: Path, upstream_url: str, http: httpx.AsyncClient
) -> None:
    """The gateway as `icep serve gateway` runs it (uvicorn, whose own proxy headers would trust 127.0.0.1):
    a forged X-Forwarded-For from loopback buys no fresh token budget."""
    port = _free_port()
    env = {
        "ICEP_VAR_DIR": str(tmp_path / "var"),
        "ICEP_GATEWAY_PORT": str(port),
        "ICEP_GATEWAY_CLIENTS_FILE": str(clients_file),
        "ICEP_GATEWAY_TOKEN_RATE_LIMIT": "2/minute",
        **{
            f"ICEP_GATEWAY_{name}_URL": upstream_url
            for name in ("PLANS", "PROCUREMENT", "STANDARDS", "NOTIFICATIONS")
        },
    }
    launcher = Launcher(env=env, log_dir=tmp_path / "logs", ports={"gateway": port})
    launcher.start("gateway")
    try:
        await asyncio.to_thread(launcher.wait_ready, "gateway", 60)
        url = f"http://127.0.0.1:{port}"
        statuses = [
            (
                await http.post(
                    f"{url}/oauth/token",
                    data=TOKEN_FORM,
                    auth=DEU,
                    headers={"X-Forwarded-For": f"198.51.100.{n}"},
                )
            ).status_code
            for n in range(3)
        ]
    finally:
        launcher.stop_all()
    assert statuses == [200, 200, 429]


async def test_the_default_trusts_no_peer_not_even_loopback(
    server: Any, make_settings: Any, upstream_url: str, http: httpx.AsyncClient
) -> None:
    """uvicorn trusts 127.0.0.1 by default; the gateway must not (the test server runs as `icep serve`)."""
    settings = _settings(make_settings, upstream_url)
    assert settings.forwarded_allow_ips == []
    async with server(create_app(settings)) as url:
        token = (await http.post(f"{url}/oauth/token", data=TOKEN_FORM, auth=DEU)).json()["access_token"]
        echo = (
            await http.get(
                f"{url}/v1/plans",
                headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": "203.0.113.9"},
            )
        ).json()
    assert _header(echo, "x-forwarded-for") == ["127.0.0.1"]


async def test_a_trusted_peer_names_the_client_address(
    server: Any, make_settings: Any, upstream_url: str, http: httpx.AsyncClient
) -> None:
    settings = _settings(make_settings, upstream_url, forwarded_allow_ips=["127.0.0.1"])
    async with server(create_app(settings)) as url:

        async def token_request(client: str) -> httpx.Response:
            # What a load balancer in front would send: the chain so far, its client appended last.
            forwarded = {"X-Forwarded-For": f"192.0.2.1, {client}", "X-Forwarded-Proto": "https"}
            return await http.post(f"{url}/oauth/token", data=TOKEN_FORM, auth=DEU, headers=forwarded)

        first = [(await token_request("203.0.113.5")).status_code for _ in range(3)]
        other = await token_request("203.0.113.6")
        token = other.json()["access_token"]
        echo = (
            await http.get(
                f"{url}/v1/plans",
                headers={
                    "Authorization": f"Bearer {token}",
                    "X-Forwarded-For": "203.0.113.6",
                    "X-Forwarded-Proto": "https",
                    "X-Forwarded-Host": "api.icep.example",
                    "Forwarded": "for=203.0.113.6",
                },
            )
        ).json()
    # Each client address has its own budget: the third request from .5 is refused, .6 is not.
    assert first == [200, 200, 429]
    assert other.status_code == 200
    # The services learn the chain with the trusted peer appended, the scheme and host it vouched for.
    assert _header(echo, "x-forwarded-for") == ["203.0.113.6, 127.0.0.1"]
    assert _header(echo, "x-forwarded-proto") == ["https"]
    assert _header(echo, "x-forwarded-host") == ["api.icep.example"]
    assert _header(echo, "forwarded") == []


async def test_hsts_follows_the_scheme_only_a_trusted_proxy_reports(
    server: Any, make_settings: Any, upstream_url: str, http: httpx.AsyncClient
) -> None:
    hsts = "max-age=63072000; includeSubDomains"
    https = {"X-Forwarded-Proto": "https"}
    trusted = _settings(
        make_settings, upstream_url, strict_transport_security=hsts, forwarded_allow_ips="127.0.0.1"
    )
    async with server(create_app(trusted)) as url:
        behind_tls = await http.get(f"{url}/healthz", headers=https)
        plain = await http.get(f"{url}/healthz")
    untrusted = _settings(make_settings, upstream_url, strict_transport_security=hsts)
    async with server(create_app(untrusted)) as url:
        claimed = await http.get(f"{url}/healthz", headers=https)
    assert behind_tls.headers["strict-transport-security"] == hsts
    assert "strict-transport-security" not in plain.headers
    assert "strict-transport-security" not in claimed.headers


# --- the rule ---------------------------------------------------------------------------------------------


def test_the_client_is_the_right_most_address_not_a_trusted_proxy() -> None:
    proxies = TrustedProxies(parse_networks(["10.0.0.0/8", "127.0.0.1"]))
    assert proxies.client_address("127.0.0.1", ["198.51.100.1, 10.1.2.3"]) == "198.51.100.1"
    # A forged left part of the chain is ignored: the first untrusted hop from the right wins.
    assert proxies.client_address("10.0.0.5", ["6.6.6.6, 203.0.113.4, 10.9.9.9"]) == "203.0.113.4"
    assert proxies.client_address("10.0.0.5", ["6.6.6.6", "203.0.113.4"]) == "203.0.113.4"
    # An untrusted peer's header means nothing.
    assert proxies.client_address("203.0.113.8", ["10.0.0.1"]) == "203.0.113.8"
    # No header, or every hop trusted: the peer, or the left-most trusted hop.
    assert proxies.client_address("10.0.0.5", []) == "10.0.0.5"
    assert proxies.client_address("10.0.0.5", ["10.0.0.7"]) == "10.0.0.7"
    # Garbage never becomes an address: the trusted hop that wrote it stands for the client.
    assert proxies.client_address("10.0.0.5", ["unknown"]) == "10.0.0.5"
    assert proxies.client_address("10.0.0.5", ["203.0.113.4, nonsense"]) == "10.0.0.5"
    # IPv6 networks work alike.
    v6 = TrustedProxies(parse_networks(["2001:db8::/32"]))
    assert v6.client_address("2001:db8::1", ["2001:db9::7"]) == "2001:db9::7"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.0/8, 127.0.0.1", ["10.0.0.0/8", "127.0.0.1"]),
        ('["10.0.0.0/8", "::1"]', ["10.0.0.0/8", "::1"]),
        ("", []),
        ("*", ["*"]),
    ],
)
def test_the_setting_takes_a_list_or_commas(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    monkeypatch.setenv("ICEP_GATEWAY_FORWARDED_ALLOW_IPS", value)
    assert [v.strip() for v in GatewaySettings().forwarded_allow_ips] == expected


def test_a_bad_network_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICEP_GATEWAY_FORWARDED_ALLOW_IPS", "10.0.0.0/8, ingress.local")
    with pytest.raises(ValueError, match=r"ingress\.local"):
        GatewaySettings()
