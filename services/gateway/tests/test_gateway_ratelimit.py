"""Rate limits: per client by tier on the API, per address on the token endpoint, in memory or in a shared
Redis, failing open when Redis is gone. Gateways and upstreams are real servers on loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest
from limits import parse_many
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from icep.gateway.app import create_app
from icep.gateway.clients import hash_secret
from icep.gateway.ratelimit import (
    LimitState,
    MemoryWindows,
    RateLimitPolicy,
    Verdict,
    async_storage_uri,
    parse_limits,
    policy_header,
    redacted,
)
from icep.gateway.settings import GatewaySettings
from icep.platform.app import management_of
from icep.platform.kafka_local import free_port
from icep.platform.testing import wait_for

# --- the rules ------------------------------------------------------------------------------------------


def test_limits_are_read_in_the_limits_notation() -> None:
    assert [(i.amount, i.get_expiry()) for i in parse_limits("600/minute")] == [(600, 60)]
    assert [(i.amount, i.get_expiry()) for i in parse_limits("10/second; 600/minute")] == [(10, 1), (600, 60)]
    assert [(i.amount, i.get_expiry()) for i in parse_limits("100 per 5 minutes")] == [(100, 300)]
    for bad in ("", "lots", "0/minute", "10/fortnight"):
        with pytest.raises(ValueError, match="not a rate limit"):
            parse_limits(bad)


def test_the_policy_header_lists_every_limit_with_its_window() -> None:
    assert policy_header(parse_many("10/second; 600/minute; 5000/day")) == "10;w=1, 600;w=60, 5000;w=86400"


def test_a_tier_nobody_configured_falls_back_to_the_default() -> None:
    policy = RateLimitPolicy.from_strings({"standard": "600/minute", "bulk": "6000/minute"}, "60/minute")
    assert policy.tier("bulk") == "bulk"
    assert policy.tier("gold") == "standard"
    assert policy.tier(None) == "standard"
    assert policy.limits_of("bulk")[0].amount == 6000
    with pytest.raises(ValueError, match="standard"):
        RateLimitPolicy.from_strings({"bulk": "6000/minute"}, "60/minute")


def _verdict(*states: tuple[str, bool, int, float]) -> Verdict:
    items = tuple(parse_limits(text)[0] for text, *_ in states)
    return Verdict(
        items,
        tuple(
            LimitState(item, ok, left, reset)
            for item, (_, ok, left, reset) in zip(items, states, strict=True)
        ),
    )


def test_headers_report_the_limit_closest_to_running_out() -> None:
    now = 1000.0
    verdict = _verdict(("10/second", True, 9, now + 0.4), ("600/minute", True, 3, now + 42.2))
    assert verdict.allowed
    assert verdict.headers(now) == {
        "RateLimit-Limit": "600",
        "RateLimit-Remaining": "3",
        "RateLimit-Reset": "43",
        "RateLimit-Policy": "10;w=1, 600;w=60",
    }


def test_a_refusal_reports_the_refusing_limit_and_when_to_retry() -> None:
    now = 1000.0
    verdict = _verdict(("10/second", True, 0, now + 0.2), ("600/minute", False, 0, now + 17.5))
    assert not verdict.allowed
    headers = verdict.headers(now)
    assert headers["RateLimit-Limit"] == "600"
    assert headers["Retry-After"] == "18"
    # Never "retry after 0 seconds", even when the window frees in a moment.
    assert _verdict(("1/second", False, 0, now + 0.01)).retry_after(now) == 1


class _Clock:
    """Stands in for the `time` module of `icep.gateway.ratelimit`: time moves only when told to."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


def test_memory_windows_count_a_moving_window_and_forget_idle_clients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _Clock()
    monkeypatch.setattr("icep.gateway.ratelimit.time", clock)
    windows = MemoryWindows(sweep_seconds=60)
    [item] = parse_many("2/minute")
    first = windows.hit(item, "client", "a")
    assert (first.allowed, first.remaining, first.reset_at) == (True, 1, clock.now + 60)
    clock.now += 30
    assert windows.hit(item, "client", "a").remaining == 0
    refused = windows.hit(item, "client", "a")
    assert (refused.allowed, refused.remaining, refused.reset_at) == (False, 0, clock.now + 30)
    assert windows.hit(item, "client", "b").allowed  # another client has its own window
    clock.now += 31  # the first request has left the window: one more fits
    assert windows.hit(item, "client", "a").allowed
    assert not windows.hit(item, "client", "a").allowed
    clock.now += 120  # both idle for longer than the window: the next sweep forgets them
    windows.hit(item, "client", "c")
    assert len(windows) == 1


@pytest.mark.parametrize(
    ("configured", "used"),
    [
        ("", "async+memory://"),
        ("memory://", "async+memory://"),
        ("redis://cache:6379/0", "async+redis://cache:6379/0"),
        ("REDIS://cache:6379", "async+redis://cache:6379"),
        ("rediss://:pw@cache:6380/1", "async+rediss://:pw@cache:6380/1"),
        ("redis+sentinel://s1:26379,s2:26379/primary", "async+redis+sentinel://s1:26379,s2:26379/primary"),
        ("async+redis://cache:6379/0", "async+redis://cache:6379/0"),
    ],
)
def test_operators_write_plain_storage_uris(configured: str, used: str) -> None:
    assert async_storage_uri(configured) == used


@pytest.mark.parametrize("configured", ["cache:6379", "memcached://cache:11211", "postgres://db/x"])
def test_unsupported_storages_are_refused(configured: str) -> None:
    with pytest.raises(ValueError):
        async_storage_uri(configured)


def test_passwords_stay_out_of_logs() -> None:
    assert redacted("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redacted("redis://cache:6379/0") == "redis://cache:6379/0"


def test_rate_limit_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICEP_GATEWAY_RATE_LIMITS", '{"standard": "100000/minute", "partner": "5/second"}')
    monkeypatch.setenv("ICEP_GATEWAY_TOKEN_RATE_LIMIT", "10/minute")
    monkeypatch.setenv("ICEP_GATEWAY_RATE_LIMIT_STORAGE", "redis://cache:6379/0")
    settings = GatewaySettings()
    # Named tiers change, the others keep their defaults.
    assert settings.rate_limits == {
        "standard": "100000/minute",
        "bulk": "6000/minute",
        "restricted": "60/minute",
        "partner": "5/second",
    }
    assert settings.token_rate_limit == "10/minute"
    assert settings.rate_limit_storage == "redis://cache:6379/0"


@pytest.mark.parametrize(
    "overrides",
    [
        {"rate_limits": {"standard": "plenty"}},
        {"token_rate_limit": "0/minute"},
        {"rate_limit_storage": "memcached://cache:11211"},
    ],
)
def test_bad_rate_limit_settings_stop_the_gateway_from_starting(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        GatewaySettings(**overrides)


# --- through the gateway ------------------------------------------------------------------------------

TIERED = {
    # client id: rate tier
    "bulk-client": "bulk",
    "restricted-client": "restricted",
    "gold-client": "gold",  # a tier the settings do not define
}


class Upstream:
    """A stand-in service that counts what reaches it."""

    def __init__(self) -> None:
        self.hits = 0

    def app(self) -> Starlette:
        async def ok(request: Request) -> Response:
            self.hits += 1
            return JSONResponse({"ok": True})

        async def own_limits(request: Request) -> Response:
            # A service must not speak for the gateway's limits.
            return JSONResponse(
                {"ok": True}, headers={"RateLimit-Limit": "999", "RateLimit-Remaining": "998"}
            )

        return Starlette(
            routes=[
                Route("/v1/plans/own-limits", own_limits),
                Route("/v1/{rest:path}", ok, methods=["GET", "POST"]),
            ]
        )


@pytest.fixture
def clients_file(clients_file: Path) -> Path:
    """The test clients (all in the standard tier), and one client in each of a few other tiers."""
    lines = []
    for client_id, tier in TIERED.items():
        lines += [
            "[[client]]",
            f'client_id = "{client_id}"',
            f'secret_hash = "{hash_secret(client_id + "-secret", n=2**4)}"',
            'nation = "DEU"',
            'roles = ["planner"]',
            'scopes = ["read"]',
            f'rate_tier = "{tier}"',
            "",
        ]
    clients_file.write_text(clients_file.read_text(encoding="utf-8") + "\n".join(lines), encoding="utf-8")
    return clients_file


@pytest.fixture
async def upstream(server: Any) -> AsyncIterator[tuple[str, Upstream]]:
    stand_in = Upstream()
    async with server(stand_in.app()) as url:
        yield url, stand_in


Settings = Any  # a callable: (**overrides) -> GatewaySettings


@pytest.fixture
def settings_for(make_settings: Settings, upstream: tuple[str, Upstream]) -> Settings:
    """Gateway settings whose every upstream is the stand-in."""
    url, _ = upstream
    routes = {f"{name}_url": url for name in ("plans", "standards", "notifications", "procurement")}
    return lambda **overrides: make_settings(**{**routes, **overrides})


Bearer = Any  # await bearer(gateway_url, client_id): an Authorization header for that client


@pytest.fixture
def bearer(get_token: Any, http: httpx.AsyncClient) -> Bearer:
    async def authorization(
        url: str, client_id: str, client: httpx.AsyncClient | None = None
    ) -> dict[str, str]:
        if client_id not in TIERED:
            return {"Authorization": f"Bearer {await get_token(url, client_id)}"}
        return await _token(client or http, url, client_id)

    return authorization


async def _token(http: httpx.AsyncClient, url: str, client_id: str) -> dict[str, str]:
    secret = f"{client_id}-secret"
    response = await http.post(
        f"{url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(quote_plus(client_id), quote_plus(secret)),
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _metric(gateway: Any, sample: str) -> float:
    """One sample of the gateway's /metrics, e.g. `icep_gateway_rate_limited_total{limit="client"}`, from
    its management app (which `icep serve` puts on the management port, never on the API port)."""
    transport = httpx.ASGITransport(app=management_of(gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://management") as management:
        response = await management.get("/metrics")
    assert response.status_code == 200
    for line in response.text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


async def _fail_open_count(gateway: Any) -> float:
    return await _metric(gateway, "icep_gateway_rate_limit_fail_open_total")


def _rate_headers(response: httpx.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items() if k.lower().startswith("ratelimit-")}


async def test_a_client_over_its_budget_gets_429_and_others_are_unaffected(
    server: Any,
    settings_for: Settings,
    upstream: tuple[str, Upstream],
    http: httpx.AsyncClient,
    bearer: Bearer,
) -> None:
    _, stand_in = upstream
    gateway = create_app(settings_for(rate_limits={"standard": "3/hour"}))
    async with server(gateway) as url:
        deu = await bearer(url, "deu-planner")
        nato = await bearer(url, "nato-reviewer")

        remaining = []
        for _ in range(3):
            response = await http.get(f"{url}/v1/plans", headers=deu)
            assert response.status_code == 200
            headers = _rate_headers(response)
            assert headers["ratelimit-limit"] == "3"
            assert headers["ratelimit-policy"] == "3;w=3600"
            assert 0 < int(headers["ratelimit-reset"]) <= 3600
            assert "retry-after" not in response.headers
            remaining.append(int(headers["ratelimit-remaining"]))
        assert remaining == [2, 1, 0]
        reached = stand_in.hits
        refusals = await _metric(gateway, 'icep_gateway_rate_limited_total{limit="client"}')

        refused = await http.post(f"{url}/v1/plans", headers=deu, json={"title": "one more"})
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["status"] == 429
        assert problem["type"].endswith("/rate-limited")
        assert problem["instance"] == "/v1/plans"
        retry_after = int(refused.headers["retry-after"])
        assert 1 <= retry_after <= 3600
        assert problem["retry_after"] == retry_after
        assert _rate_headers(refused) == {
            "ratelimit-limit": "3",
            "ratelimit-remaining": "0",
            "ratelimit-reset": refused.headers["ratelimit-reset"],
            "ratelimit-policy": "3;w=3600",
        }
        assert "x-request-id" in refused.headers
        assert stand_in.hits == reached  # the refused request never reached the service
        assert await _metric(gateway, 'icep_gateway_rate_limited_total{limit="client"}') == refusals + 1

        # Another client of the same tier has its own budget.
        other = await http.get(f"{url}/v1/plans", headers=nato)
        assert other.status_code == 200
        assert other.headers["ratelimit-remaining"] == "2"
        # A new token changes nothing: the budget is the client's, not the token's.
        again = await http.get(f"{url}/v1/plans", headers=await bearer(url, "deu-planner"))
        assert again.status_code == 429


async def test_each_tier_has_its_own_limits(
    server: Any, settings_for: Settings, http: httpx.AsyncClient
) -> None:
    tiers = {"standard": "5/hour", "restricted": "1/hour", "bulk": "20/second; 100/hour"}
    async with server(create_app(settings_for(rate_limits=tiers))) as url:
        restricted = await _token(http, url, "restricted-client")
        first = await http.get(f"{url}/v1/plans", headers=restricted)
        assert (first.status_code, first.headers["ratelimit-policy"]) == (200, "1;w=3600")
        assert (await http.get(f"{url}/v1/plans", headers=restricted)).status_code == 429

        bulk = await http.get(f"{url}/v1/plans", headers=await _token(http, url, "bulk-client"))
        assert bulk.status_code == 200
        assert bulk.headers["ratelimit-policy"] == "20;w=1, 100;w=3600"
        assert bulk.headers["ratelimit-limit"] == "20"  # 19 left of 20 is closer to the edge than 99 of 100

        # A client whose tier is not configured gets the standard tier.
        gold = await http.get(f"{url}/v1/plans", headers=await _token(http, url, "gold-client"))
        assert gold.headers["ratelimit-policy"] == "5;w=3600"


async def test_the_first_limit_to_run_out_refuses(
    server: Any, settings_for: Settings, http: httpx.AsyncClient, bearer: Bearer
) -> None:
    async with server(create_app(settings_for(rate_limits={"standard": "5/hour; 2/day"}))) as url:
        deu = await bearer(url, "deu-planner")
        answers = [await http.get(f"{url}/v1/plans", headers=deu) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["ratelimit-remaining"] for a in answers] == ["1", "0", "0"]
    assert {a.headers["ratelimit-limit"] for a in answers} == {"2"}
    assert {a.headers["ratelimit-policy"] for a in answers} == {"5;w=3600, 2;w=86400"}


async def test_every_proxied_answer_carries_the_gateways_rate_limit_headers(
    server: Any, settings_for: Settings, http: httpx.AsyncClient, refusing_port: Any, bearer: Bearer
) -> None:
    with refusing_port() as closed:
        settings = settings_for(
            rate_limits={"standard": "10/hour"}, procurement_url=f"http://127.0.0.1:{closed}"
        )
        async with server(create_app(settings)) as url:
            deu = await bearer(url, "deu-planner")
            own = await http.get(f"{url}/v1/plans/own-limits", headers=deu)
            down = await http.get(f"{url}/v1/initiatives", headers=deu)
            unrouted = await http.get(f"{url}/v1/nowhere", headers=deu)
    # The service's own RateLimit fields are replaced by the gateway's, not added to.
    assert own.headers.get_list("ratelimit-limit") == ["10"]
    assert own.headers.get_list("ratelimit-remaining") == ["9"]
    assert (down.status_code, down.headers["ratelimit-remaining"]) == (503, "8")
    assert (unrouted.status_code, unrouted.headers["ratelimit-remaining"]) == (404, "7")


async def test_rate_limits_can_be_switched_off(
    server: Any, settings_for: Settings, http: httpx.AsyncClient, bearer: Bearer
) -> None:
    settings = settings_for(
        rate_limits={"standard": "1/hour"}, token_rate_limit="1/hour", rate_limit_enabled=False
    )
    async with server(create_app(settings)) as url:
        deu = await bearer(url, "deu-planner")
        await bearer(url, "deu-planner")
        answers = [await http.get(f"{url}/v1/plans", headers=deu) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert not _rate_headers(answers[0])


# --- the token endpoint ---------------------------------------------------------------------------------


async def test_the_token_endpoint_limits_each_address(
    server: Any, settings_for: Settings, http: httpx.AsyncClient, bearer: Bearer
) -> None:
    async with server(create_app(settings_for(token_rate_limit="3/hour"))) as url:
        deu = await bearer(url, "deu-planner")
        assert (await http.get(f"{url}/v1/plans", headers=deu)).status_code == 200

        async def guess(secret: str) -> httpx.Response:
            return await http.post(
                f"{url}/oauth/token", data={"grant_type": "client_credentials"}, auth=("deu-planner", secret)
            )

        wrong = [await guess(f"guess-{n}") for n in range(2)]
        assert [r.status_code for r in wrong] == [401, 401]
        assert [r.headers["ratelimit-remaining"] for r in wrong] == ["1", "0"]
        # Failed guesses count: now even a client with the right secret must wait.
        refused = await http.post(
            f"{url}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=("bulk-client", "bulk-client-secret"),
        )
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["cache-control"] == "no-store"
        assert refused.json()["type"].endswith("/rate-limited")
        assert refused.json()["instance"] == "/oauth/token"
        assert 1 <= int(refused.headers["retry-after"]) <= 3600
        assert refused.headers["ratelimit-policy"] == "3;w=3600"
        assert "x-request-id" in refused.headers

        # Another address has its own budget (127.0.0.2 is loopback too).
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with httpx.AsyncClient(transport=transport, trust_env=False, timeout=10) as elsewhere:
            assert (await _token(elsewhere, url, "bulk-client"))["Authorization"].startswith("Bearer ")

        # Tokens already issued keep working: the API is limited per client, not per address.
        assert (await http.get(f"{url}/v1/plans", headers=deu)).status_code == 200
        # Other endpoints are not counted against the token endpoint's limit.
        assert (await http.get(f"{url}/.well-known/jwks.json")).status_code == 200


# --- where the counts live ------------------------------------------------------------------------------


async def _redis_answers(port: int) -> bool:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        writer.write(b"PING\r\n")
        await writer.drain()
        return await reader.readline() == b"+PONG\r\n"
    except OSError:
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class RedisServer:
    """A throwaway redis-server on a loopback port, nothing saved to disk; stopped by its PID."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        executable = shutil.which("redis-server")
        assert executable, "the rate-limit tests need redis-server on the PATH (CI installs it)"
        self.executable = executable
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        self.process = subprocess.Popen(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def start(self) -> RedisServer:
        self.spawn()
        await wait_for(lambda: _redis_answers(self.port), timeout=20, what="redis-server to answer")
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"  # the plain form operators write


@contextlib.asynccontextmanager
async def redis_server(directory: Path) -> AsyncIterator[RedisServer]:
    redis = RedisServer(directory)
    try:
        yield await redis.start()
    finally:
        redis.stop()


async def test_gateways_sharing_redis_share_one_budget(
    server: Any, settings_for: Settings, http: httpx.AsyncClient, tmp_path: Path, bearer: Bearer
) -> None:
    async with redis_server(tmp_path) as redis:
        settings = settings_for(
            rate_limits={"standard": "4/hour"}, token_rate_limit="3/hour", rate_limit_storage=redis.url
        )
        async with server(create_app(settings)) as one, server(create_app(settings)) as two:
            deu = await bearer(one, "deu-planner")
            answers = [await http.get(f"{gateway}/v1/plans", headers=deu) for gateway in (one, two, one, two)]
            assert [a.headers["ratelimit-remaining"] for a in answers] == ["3", "2", "1", "0"]
            assert (await http.get(f"{one}/v1/plans", headers=deu)).status_code == 429
            assert (await http.get(f"{two}/v1/plans", headers=deu)).status_code == 429
            # The token endpoint's per-address budget is shared too: one token taken above, two more here.
            await bearer(two, "nato-reviewer")
            await bearer(one, "nato-reviewer")
            assert (
                await http.post(f"{two}/oauth/token", data={"grant_type": "client_credentials"})
            ).status_code == 429


async def test_memory_counts_belong_to_one_process(
    server: Any, settings_for: Settings, http: httpx.AsyncClient, bearer: Bearer
) -> None:
    settings = settings_for(rate_limits={"standard": "2/hour"})
    async with server(create_app(settings)) as one, server(create_app(settings)) as two:
        deu = await bearer(one, "deu-planner")
        assert [(await http.get(f"{one}/v1/plans", headers=deu)).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
        fresh = await http.get(f"{two}/v1/plans", headers=deu)
        assert (fresh.status_code, fresh.headers["ratelimit-remaining"]) == (200, "1")


@contextlib.contextmanager
def gateway_log() -> Iterator[list[logging.LogRecord]]:
    """The gateway's log records while the block runs (the app's own logging setup replaces the root
    handlers, so the records are taken at the gateway's logger)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.INFO)
    logger = logging.getLogger("icep.gateway")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


async def test_the_api_stays_up_when_redis_is_unreachable(
    server: Any, settings_for: Settings, http: httpx.AsyncClient, refusing_port: Any, bearer: Bearer
) -> None:
    with refusing_port() as port, gateway_log() as records:
        settings = settings_for(
            rate_limits={"standard": "1/hour"},
            token_rate_limit="1/hour",
            rate_limit_storage=f"redis://127.0.0.1:{port}/0",
        )
        gateway = create_app(settings)
        async with server(gateway) as url:
            before = await _fail_open_count(gateway)
            deu = await bearer(url, "deu-planner")
            await bearer(url, "deu-planner")  # over the token limit, were it counted
            answers = [await http.get(f"{url}/v1/plans", headers=deu) for _ in range(3)]
            after = await _fail_open_count(gateway)
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert not _rate_headers(answers[0])  # nothing to tell: nothing was counted
    assert after - before == 5
    warnings = [r for r in records if r.levelno == logging.WARNING and "rate-limit storage" in r.getMessage()]
    assert len(warnings) == 1  # once per outage, not once per request
    assert f"127.0.0.1:{port}" in warnings[0].getMessage()


async def test_limits_apply_again_when_redis_comes_back(
    server: Any, settings_for: Settings, http: httpx.AsyncClient, tmp_path: Path, bearer: Bearer
) -> None:
    redis = RedisServer(tmp_path)
    try:
        await redis.start()
        settings = settings_for(rate_limits={"standard": "100/hour"}, rate_limit_storage=redis.url)
        async with server(create_app(settings)) as url:
            deu = await bearer(url, "deu-planner")
            counted = await http.get(f"{url}/v1/plans", headers=deu)
            assert counted.headers["ratelimit-remaining"] == "99"

            redis.stop()
            during = await http.get(f"{url}/v1/plans", headers=deu)
            assert during.status_code == 200
            assert not _rate_headers(during)

            await redis.start()  # the same port, empty: counting starts afresh

            async def counted_again() -> str | None:
                response = await http.get(f"{url}/v1/plans", headers=deu)
                assert response.status_code == 200
                return response.headers.get("ratelimit-remaining")

            remaining = await wait_for(counted_again, timeout=20, what="the gateway to use redis again")
            assert int(remaining) < 100
    finally:
        redis.stop()
