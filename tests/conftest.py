"""Cross-service fixtures: the whole platform started as `icep up` starts it, on real Kafka and databases."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from icep.platform.launcher import SERVICES, Launcher, free_platform_ports, platform_env
from icep.platform.testing import OtlpCollector, WebhookReceiver, consumer_caught_up, wait_for

#: Modules that prove what only PostgreSQL has (roles and privileges; replicas sharing one database) are
#: collected only when the suite runs on PostgreSQL (ICEP_TEST_POSTGRES_URL): a SQLite run neither runs them
#: nor reports them as skipped.
collect_ignore = (
    []
    if os.environ.get("ICEP_TEST_POSTGRES_URL")
    else ["test_database_roles.py", "faults/test_replica_faults.py"]
)

DEV_SECRETS = {
    "deu-planner": "deu-planner-dev-secret",
    "fra-planner": "fra-planner-dev-secret",
    "pol-planner": "pol-planner-dev-secret",
    "nato-reviewer": "nato-reviewer-dev-secret",
    "ukr-partner": "ukr-partner-dev-secret",
    "deu-subscriber": "deu-subscriber-dev-secret",
    **{f"{n}-standards": f"{n}-standards-dev-secret" for n in ("deu", "fra", "pol", "nato")},
    **{
        f"{n}-procurement": f"{n}-procurement-dev-secret" for n in ("deu", "fra", "pol", "nld", "nato", "ukr")
    },
    **{f"{n}-operator": f"{n}-operator-dev-secret" for n in ("deu", "fra")},
}


@dataclass
class RunningPlatform:
    launcher: Launcher
    bootstrap: str
    collector: OtlpCollector
    var_dir: Path
    namespace: str
    http: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=20))

    def topic(self, logical: str) -> str:
        """This platform's name of a topic: each platform in a test run has its own topics and groups."""
        return f"{self.namespace}{logical}"

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.launcher.ports['gateway']}"

    def management(self, process: str) -> str:
        """A process's management port (metrics, health, its own API documents): operators only."""
        return f"http://127.0.0.1:{self.launcher.management_ports[process]}"

    async def token(self, client_id: str) -> str:
        r = await self.http.post(
            f"{self.gateway}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, DEV_SECRETS[client_id]),
        )
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    async def as_client(self, client_id: str) -> httpx.AsyncClient:
        token = await self.token(client_id)
        return httpx.AsyncClient(
            base_url=self.gateway, headers={"Authorization": f"Bearer {token}"}, timeout=20
        )

    async def metric(self, process: str, name: str, **labels: str) -> float:
        """One Prometheus sample from a process's /metrics on its management port (0 when absent)."""
        response = await self.http.get(f"{self.management(process)}/metrics")
        assert response.status_code == 200, response.text
        text = response.text
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in text.splitlines():
            if line.startswith(f"{name}{{") and want in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    async def settled(self, timeout: float = 60) -> None:
        """Wait until every plans event is published and consumed by notifications, so a count taken
        afterwards would also see a late duplicate."""

        looks: list[bool] = []

        async def quiet() -> bool:
            backlog = await self.metric("plans", "icep_outbox_backlog", service="plans")
            looks.append(
                backlog == 0
                and await consumer_caught_up(
                    self.bootstrap, f"{self.namespace}icep-notifications", self.topic("icep.plans.events")
                )
            )
            # Twice in a row: the backlog gauge is counted apart from the relay, up to an observation
            # interval (0.1 s here) after a commit, so one quiet look may predate the last commit's count.
            return looks[-2:] == [True, True]

        await wait_for(quiet, timeout=timeout, interval=0.2, what="the platform to settle")

    def restart(self, name: str, extra_env: dict[str, str] | None = None, *, topics: bool = True) -> None:
        """Restart a process; by default wait for its Kafka topics too (readiness alone means only that
        its database answers), `topics=False` while the broker is down."""
        self.launcher.stop(name)
        self.launcher.start(name, extra_env)
        self.launcher.wait_ready(name, 60, topics=topics)


class FreshToken(httpx.Auth):
    """A token from the gateway's OAuth endpoint, fetched again before it expires (long modules)."""

    def __init__(self, platform: Any, client_id: str) -> None:
        self.platform = platform
        self.client_id = client_id
        self.token: str | None = None
        self.fetched = 0.0

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self.token is None or time.monotonic() - self.fetched > 120:
            self.token = await self.platform.token(self.client_id)
            self.fetched = time.monotonic()
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("async clients only")


StartPlatform = Callable[..., Awaitable[RunningPlatform]]


async def _launch(
    bootstrap: str,
    make_database_url: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
    extra_env: dict[str, str] | None = None,
    *,
    traced: bool = False,
) -> RunningPlatform:
    """The five processes. Spans are exported to the platform's OTLP receiver only when `traced` (a module
    that reads them sets `TRACED = True`): exporting every span of every test costs the suite minutes of
    CPU, and without an exporter trace context is still made and propagated (ids in logs and headers)."""
    var_dir = tmp_path_factory.mktemp("var")
    namespace = f"t{uuid.uuid4().hex[:10]}."
    collector = OtlpCollector().start()
    ports, management_ports = free_platform_ports()
    env = platform_env(
        ports,
        bootstrap=bootstrap,
        var_dir=var_dir,
        management_ports=management_ports,
        extra={
            **(
                {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
                if traced
                else {"OTEL_TRACES_EXPORTER": "none"}
            ),
            "ICEP_NOTIFICATIONS_ALLOW_LOOPBACK_ENDPOINTS": "true",
            # A partner's host name that points at the local receivers (development setting).
            "ICEP_NOTIFICATIONS_STATIC_HOSTS": json.dumps({"partner.test": "127.0.0.1"}),
            # Webhooks go to this machine only: the static hosts and the loopback receivers, never DNS.
            "ICEP_NOTIFICATIONS_ALLOWED_HOSTS": json.dumps(["127.0.0.1", "::1"]),
            "ICEP_NOTIFICATIONS_RETRY_SCHEDULE_SECONDS": json.dumps([0.2, 0.4, 0.8]),
            "ICEP_OUTBOX_POLL_SECONDS": "0.5",
            # The operators' gauges follow quickly (`settled()` reads the outbox backlog).
            **{
                f"ICEP_{name.upper()}_{setting}": seconds
                for name in SERVICES
                for setting, seconds in (
                    ("OUTBOX_OBSERVE_SECONDS", "0.1"),
                    ("DEPENDENCY_OBSERVE_SECONDS", "0.2"),
                )
            },
            "ICEP_TOPIC_NAMESPACE": namespace,
            # Test modules make far more calls (and fetch far more tokens) from 127.0.0.1 than a partner
            # would; the rate limits themselves are tested in services/gateway/tests.
            "ICEP_GATEWAY_RATE_LIMITS": json.dumps({"standard": "1000000/minute"}),
            "ICEP_GATEWAY_TOKEN_RATE_LIMIT": "1000000/minute",
            **{
                f"ICEP_{name.upper()}_DATABASE_URL": make_database_url(name)
                for name in SERVICES
                if name != "gateway"
            },
            **(extra_env or {}),
        },
    )
    launcher = Launcher(env=env, log_dir=var_dir / "logs", ports=ports, management_ports=management_ports)
    running = RunningPlatform(launcher, bootstrap, collector, var_dir, namespace)
    try:
        launcher.start_all(topics=True)  # tests send events at once: their topics must exist
    except BaseException:
        await _shutdown(running)
        raise
    return running


async def _shutdown(running: RunningPlatform) -> None:
    running.launcher.stop_all()
    running.collector.stop()
    await running.http.aclose()


@pytest.fixture
async def start_platform(
    make_database_url: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[StartPlatform]:
    """Start all five processes (as `icep up` does) for one test, which may break and restart them."""
    started: list[RunningPlatform] = []

    async def start(
        bootstrap: str, extra_env: dict[str, str] | None = None, *, traced: bool = False
    ) -> RunningPlatform:
        running = await _launch(bootstrap, make_database_url, tmp_path_factory, extra_env, traced=traced)
        started.append(running)
        return running

    try:
        yield start
    finally:
        for running in started:
            await _shutdown(running)


@pytest.fixture(scope="module")
async def platform(
    request: pytest.FixtureRequest,
    kafka_bootstrap: str,
    make_database_url: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RunningPlatform]:
    """One platform shared by a module's tests that only use it (and break nothing)."""
    traced = bool(getattr(request.module, "TRACED", False))
    running = await _launch(kafka_bootstrap, make_database_url, tmp_path_factory, traced=traced)
    try:
        yield running
    finally:
        await _shutdown(running)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver().start()
    try:
        yield r
    finally:
        r.stop()


def _plan_body(title: str = "German munitions ramp-up 2025-2029") -> dict[str, Any]:
    return {
        "title": title,
        "period_start": "2025-01-01",
        "period_end": "2029-12-31",
        "capability_areas": ["munitions"],
        "releasability": {"scope": "allies"},
    }


@pytest.fixture
def plan_body() -> Callable[..., dict[str, Any]]:
    """The body of a realistic draft plan."""
    return _plan_body


@pytest.fixture(scope="module")
async def clients(platform: RunningPlatform) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """Gateway clients of the development planners of DEU, FRA and POL, NATO's reviewer and UKR."""
    made = {
        name: await platform.as_client(client_id)
        for name, client_id in {
            "deu": "deu-planner",
            "fra": "fra-planner",
            "pol": "pol-planner",
            "nato": "nato-reviewer",
            "ukr": "ukr-partner",
        }.items()
    }
    try:
        yield made
    finally:
        for c in made.values():
            await c.aclose()


@pytest.fixture(scope="session")
def generated() -> dict[str, str]:
    """What `icep docs` would write now (no broker, no database: the apps are only built), once per run."""
    from icep.platform import apidocs

    return apidocs.documents()


@pytest.fixture(scope="session")
def openapi(generated: dict[str, str]) -> dict[str, Any]:
    from icep.platform import apidocs

    document: dict[str, Any] = json.loads(generated[apidocs.OPENAPI_FILE])
    return document


@pytest.fixture(scope="session")
def asyncapi(generated: dict[str, str]) -> dict[str, Any]:
    from icep.platform import apidocs

    document: dict[str, Any] = json.loads(generated[apidocs.ASYNCAPI_FILE])
    return document
