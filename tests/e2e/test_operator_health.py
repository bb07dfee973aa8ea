"""What an operator sees: health that fits Kubernetes and the metrics alerts are written against.

One platform on a broker this test stops and starts again, its plans database behind a TCP proxy the test
can cut (PostgreSQL). It proves, on the running processes:
- build info, leaders, gateway calls labelled by the upstream's route template;
- during a broker outage every process stays ready (Kafka reported down), writes through the gateway
  succeed, the outbox backlog and the oldest row's age grow, the relay says it is blocked (once), a plans
  process restarted meanwhile starts and serves; afterwards all drains to 0 and the events arrive;
- consumer lag is visible while the notifications consumer is disabled, and back to 0 once enabled;
- the database down: 503 problem answers with Retry-After, readiness fails, liveness does not.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from icep.platform.kafka_local import LocalKafka, fetch_jars, free_port
from icep.platform.launcher import SERVICES
from icep.platform.testing import WebhookReceiver, wait_for

CREATED = "icep.plans.plan.created.v1"
POSTGRES = bool(os.environ.get("ICEP_TEST_POSTGRES_URL"))
KAFKA_SERVICES = [name for name in SERVICES if name != "gateway"]

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of a metric in a Prometheus text exposition, with its labels."""
    found = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match["name"] == name:
            found.append((dict(_LABEL.findall(match["labels"] or "")), float(match["value"])))
    return found


class TcpProxy:
    """A real TCP proxy in a thread of its own (the platform starts synchronously): `cut()` drops every
    connection and refuses new ones, as a database host that went away; `restore()` listens again."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> TcpProxy:
        self.thread.start()
        self.restore()
        return self

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    def restore(self) -> None:
        async def listen() -> None:
            self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

        self._run(listen())

    def cut(self) -> None:
        async def close() -> None:
            if self.server is not None:
                self.server.close()
                self.server = None
            for writer in list(self.writers):
                transport = writer.transport
                sock = transport.get_extra_info("socket")
                if sock is not None:  # a reset, as when the host is gone, not a polite goodbye
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                transport.abort()
            self.writers.clear()

        self._run(close())

    def stop(self) -> None:
        self.cut()

        async def settle() -> None:
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        self._run(settle())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalKafka]:
    """A broker this test may stop and start again (the shared one must stay up for the others)."""
    fetch_jars()
    broker = LocalKafka(data_dir=tmp_path / "kafka", port=free_port(), controller_port=free_port())
    broker.start()
    try:
        broker.wait_ready(120)
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def plans_database(make_database_url: Callable[[str], str]) -> Iterator[tuple[str, TcpProxy | None]]:
    """The plans database URL the platform uses: on PostgreSQL through a proxy the test can cut."""
    url = make_database_url("plans")
    if not POSTGRES:
        yield url, None
        return
    match = re.match(r"^(?P<head>[^@]+@)(?P<host>[^:/]+):(?P<port>\d+)(?P<tail>/.*)$", url)
    assert match, url
    proxy = TcpProxy(match["host"], int(match["port"])).start()
    try:
        yield f"{match['head']}127.0.0.1:{proxy.port}{match['tail']}", proxy
    finally:
        proxy.stop()


async def test_operator_health_and_metrics(
    start_platform: Any,
    own_broker: LocalKafka,
    plans_database: tuple[str, TcpProxy | None],
    plan_body: Callable[..., dict[str, Any]],
    receiver: WebhookReceiver,
) -> None:
    plans_url, proxy = plans_database
    fast = {
        f"ICEP_{name.upper()}_{setting}": value
        for name in KAFKA_SERVICES
        for setting, value in (
            ("CONSUMER_LAG_OBSERVE_SECONDS", "0.3"),
            ("OUTBOX_SEND_TIMEOUT_SECONDS", "1"),
        )
    }
    platform = await start_platform(
        own_broker.bootstrap_servers,
        {
            **fast,
            "ICEP_PLANS_DATABASE_URL": plans_url,
            "ICEP_NOTIFICATIONS_WEBHOOK_OBSERVE_SECONDS": "0.2",
            "ICEP_BUILD_REVISION": "rev-under-test",
            # Longer than SQLite's busy timeout: the service's own answer to a locked database comes through.
            "ICEP_GATEWAY_UPSTREAM_TIMEOUT_SECONDS": "30",
        },
    )
    http = platform.http
    deu = await platform.as_client("deu-planner")

    async def scrape(process: str, name: str) -> list[tuple[dict[str, str], float]]:
        response = await http.get(f"{platform.management(process)}/metrics")
        assert response.status_code == 200
        return samples(response.text, name)

    async def value(process: str, name: str, **labels: str) -> float | None:
        for found, sample in await scrape(process, name):
            if all(found.get(k) == v for k, v in labels.items()):
                return sample
        return None

    async def readiness(process: str) -> httpx.Response:
        return await http.get(f"{platform.management(process)}/readyz")

    try:
        # --- build info, leaders, gateway route templates --------------------------------------------
        for process in SERVICES:
            [(labels, one)] = await scrape(process, "icep_build_info")
            assert one == 1 and labels["service"] == process and labels["revision"] == "rev-under-test"
            assert labels["version"] and labels["version"] != "unknown"
        await wait_for(
            lambda: value("plans", "icep_leader", service="plans", role="outbox-relay"), what="relay leads"
        )
        await wait_for(
            lambda: value("notifications", "icep_leader", service="notifications", role="webhook-dispatcher"),
            what="the dispatcher leads",
        )
        r = await deu.post("/v1/subscriptions", json={"url": receiver.url, "event_types": [CREATED]})
        assert r.status_code == 201, r.text
        plan = (await deu.post("/v1/plans", json=plan_body("Metrics plan"))).json()
        assert (await deu.get(f"/v1/plans/{plan['id']}")).status_code == 200
        assert (await deu.get("/v1/plans/not-a-plan/no/such/route")).status_code == 404
        calls = await scrape("gateway", "icep_gateway_requests_total")
        routes = {(lab["upstream"], lab["method"], lab["route"], lab["status"]) for lab, _ in calls}
        assert ("plans", "GET", "/v1/plans/{plan_id}", "200") in routes
        assert ("plans", "POST", "/v1/plans", "201") in routes
        assert ("notifications", "POST", "/v1/subscriptions", "201") in routes
        assert ("plans", "GET", "unmatched", "404") in routes
        assert not any(plan["id"] in lab["route"] for lab, _ in calls)  # never an id in a label
        timed = await scrape("gateway", "icep_http_request_duration_seconds_count")
        assert any(lab["route"] == "/v1/plans/{plan_id}" for lab, _ in timed)
        assert not any(lab["route"] == "/v1/{path:path}" for lab, _ in timed)
        await wait_for(lambda: len(receiver.received()) >= 1, what="the first plan's webhook")
        await wait_for(
            lambda: value(
                "notifications", "icep_webhook_subscriptions", service="notifications", state="active"
            ),
            what="one active subscription counted",
        )
        assert (
            await value("notifications", "icep_webhook_deliveries_pending", service="notifications")
            is not None
        )
        assert await value("notifications", "icep_webhook_oldest_pending_age_seconds") is not None
        for process in KAFKA_SERVICES:
            assert await value(process, "icep_dependency_up", service=process, dependency="kafka") == 1
            assert await value(process, "icep_dependency_up", service=process, dependency="database") == 1
        await platform.settled()

        # --- broker outage: ready, writes succeed, backlog and age grow, relay blocked -----------------
        own_broker.stop()
        for process in SERVICES:

            async def reported_down(process: str = process) -> bool:
                ready = await readiness(process)
                assert ready.status_code == 200, ready.text  # a broker outage keeps every pod in rotation
                checks = ready.json()
                return process == "gateway" or (
                    checks["checks"]["kafka"] is False and checks["degraded"] == ["kafka"]
                )

            await wait_for(reported_down, what=f"{process} ready, with the broker reported down")
        written = []
        r = await deu.post("/v1/plans", json=plan_body("Outage plan"))
        assert r.status_code == 201, r.text  # the API does not need the broker: the outbox keeps the event
        written.append(r.json()["id"])
        await wait_for(
            lambda: _is(value("plans", "icep_outbox_relay_blocked", service="plans"), 1), what="relay blocked"
        )
        failures = await value("plans", "icep_outbox_publish_failures_total", service="plans")
        assert failures is not None and failures >= 1
        # A process started while the broker is down starts and serves.
        platform.restart("plans", topics=False)
        assert (await readiness("plans")).json()["topics_ready"] is False
        for n in range(2):
            r = await deu.post("/v1/plans", json=plan_body(f"Outage plan {n}"))
            assert r.status_code == 201, r.text
            written.append(r.json()["id"])
        await wait_for(
            lambda: _is(value("plans", "icep_dependency_up", service="plans", dependency="kafka"), 0),
            what="kafka reported down",
        )

        async def backlog() -> float:
            return await value("plans", "icep_outbox_backlog", service="plans") or 0.0

        async def oldest() -> float:
            return await value("plans", "icep_outbox_oldest_age_seconds", service="plans") or 0.0

        await wait_for(lambda: _at_least(backlog, 3), what="three rows waiting")
        first_age = await oldest()
        await wait_for(lambda: _above(oldest, first_age + 1.0), what="the oldest row's age to grow")
        await wait_for(
            lambda: _is(value("plans", "icep_outbox_relay_blocked", service="plans"), 1), what="relay blocked"
        )
        assert not [p for p in written if any(h.json()["subject"] == p for h in receiver.received())]

        own_broker.start()
        own_broker.wait_ready(120)
        await wait_for(lambda: _equals(backlog, 0), timeout=60, what="the backlog to drain")
        assert await oldest() == 0
        await wait_for(
            lambda: _is(value("plans", "icep_outbox_relay_blocked", service="plans"), 0),
            what="relay unblocked",
        )
        await wait_for(
            lambda: set(written) <= {h.json()["subject"] for h in receiver.received()},
            timeout=60,
            what="the outage's events delivered",
        )
        for process in SERVICES:

            async def reported_up(process: str = process) -> bool:
                ready = (await readiness(process)).json()
                assert ready["status"] == "ready", ready
                return ready["checks"].get("kafka", True) is True

            await wait_for(reported_up, what=f"{process} reporting the broker back")
        log = platform.launcher.processes["plans"].log_path.read_text()
        # One warning per process for the outage (the first one, and the one started during it), not one
        # per row or round.
        assert log.count("is blocked") == 2, log
        assert log.count("is no longer blocked") >= 1

        # --- consumer lag while the notifications consumer is disabled --------------------------------
        group = f"{platform.namespace}icep-notifications"
        topic = platform.topic("icep.plans.events")
        await platform.settled()
        platform.restart("notifications", {"ICEP_NOTIFICATIONS_CONSUMER_ENABLED": "false"})

        async def lag() -> float:
            found = await scrape("notifications", "icep_consumer_lag")
            return sum(v for lab, v in found if lab["group"] == group and lab["topic"] == topic)

        for n in range(2):
            assert (await deu.post("/v1/plans", json=plan_body(f"Lagging {n}"))).status_code == 201
        await wait_for(lambda: _at_least(lag, 2), timeout=30, what="lag while the consumer is off")
        platform.restart("notifications", {"ICEP_NOTIFICATIONS_CONSUMER_ENABLED": "true"})
        await wait_for(lambda: _equals(lag, 0), timeout=60, what="lag back to 0")

        # --- database down: 503 problems, readiness fails, liveness does not ---------------------------
        if proxy is not None:
            proxy.cut()
            r = await deu.get(f"/v1/plans/{plan['id']}")
            assert r.status_code == 503, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["status"] == 503 and int(r.headers["retry-after"]) > 0
            r = await deu.post("/v1/plans", json=plan_body("No database"))
            assert r.status_code == 503, r.text
            ready = await readiness("plans")
            assert ready.status_code == 503 and ready.json()["checks"]["database"] is False
            live = await http.get(f"{platform.management('plans')}/healthz")
            assert live.status_code == 200  # the process is not stuck: restarting it would not help
            await wait_for(
                lambda: _is(value("plans", "icep_dependency_up", service="plans", dependency="database"), 0),
                what="the database reported down",
            )
            proxy.restore()
            await wait_for(lambda: _status(readiness("plans"), 200), timeout=30, what="ready again")
            assert (await deu.get(f"/v1/plans/{plan['id']}")).status_code == 200
        else:
            # SQLite has no server to lose; what it can be is unavailable to writers: another process holds
            # its write lock past the busy timeout. That is a 503 with Retry-After too, never a 500.
            path = plans_url.split("///", 1)[1]
            holder = sqlite3.connect(path, timeout=1, isolation_level=None)
            try:
                holder.execute("BEGIN IMMEDIATE")
                r = await deu.post("/v1/plans", json=plan_body("Locked out"))
                assert r.status_code == 503, r.text
                assert r.headers["content-type"].startswith("application/problem+json")
                assert int(r.headers["retry-after"]) > 0
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            assert (await deu.post("/v1/plans", json=plan_body("Unlocked"))).status_code == 201
    finally:
        await deu.aclose()


async def _at_least(read: Callable[[], Any], n: float) -> bool:
    return bool(await read() >= n)


async def _above(read: Callable[[], Any], n: float) -> bool:
    return bool(await read() > n)


async def _equals(read: Callable[[], Any], n: float) -> bool:
    return bool(await read() == n)


async def _is(read: Any, expected: float) -> bool:
    return bool(await read == expected)


async def _status(response: Any, status: int) -> bool:
    return bool((await response).status_code == status)
