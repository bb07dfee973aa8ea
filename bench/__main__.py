"""ICEP benchmarks: outbox relay and consumer throughput, end-to-end webhook latency, service memory,
webhook delivery throughput and latency (bench/notifications_delivery.py).

Run with `make bench` (or `uv run python -m bench`). Uses a local broker started from the jars unless
KAFKA_BOOTSTRAP_SERVERS is set, SQLite unless ICEP_BENCH_DATABASE_URL names another database. Prints the
figures and writes bench/REPORT.md. Every loop is bounded in count and time; all traffic is loopback.
"""

from __future__ import annotations

import asyncio
import os
import platform as pyplatform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from bench import notifications_delivery, plans_summary
from bench.results import Result
from icep.contracts import EventPayload, Releasability
from icep.platform.consumer import ConsumerRunner
from icep.platform.db import Database
from icep.platform.events import OutgoingEvent, ReceivedEvent
from icep.platform.kafka import ensure_topics
from icep.platform.kafka_local import LocalKafka, fetch_jars, free_port
from icep.platform.launcher import SERVICES, Launcher, platform_env
from icep.platform.outbox import OutboxRelay, UnitOfWorkFactory
from icep.platform.tables import platform_tables
from icep.platform.testing import WebhookReceiver, wait_for

REPORT = Path(__file__).with_name("REPORT.md")

EVENTS = int(os.environ.get("ICEP_BENCH_EVENTS", "5000"))
KEYS = 500
PER_TX = 5
PLANS = int(os.environ.get("ICEP_BENCH_PLANS", "60"))


class Bumped(EventPayload):
    event_type: ClassVar[str] = "icep.bench.counter.bumped.v1"
    aggregate: ClassVar[str] = "counter"

    n: int
    note: str


async def _at_least(count: Awaitable[int], n: int) -> int:
    value = await count
    return value if value >= n else 0


async def bench_outbox_and_consumer(
    bootstrap: str, url: str, results: list[Result], notes: list[str]
) -> None:
    metadata = sa.MetaData()
    tables = platform_tables(metadata)
    effects = sa.Table("effects", metadata, sa.Column("event_id", sa.String(36), primary_key=True))
    db = Database(url)
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
    topic = f"icep.bench-{int(time.time())}.events"
    await ensure_topics(bootstrap, [topic], partitions=6, replication=1)
    uow = UnitOfWorkFactory(db, tables.outbox, "bench", topic)

    started = time.perf_counter()
    for tx_no in range(EVENTS // PER_TX):
        async with uow() as tx:
            for i in range(PER_TX):
                n = tx_no * PER_TX + i
                tx.publish(
                    OutgoingEvent(
                        payload=Bumped(n=n, note="x" * 200),
                        subject=f"counter-{n % KEYS}",
                        releasability=Releasability(owner="DEU"),
                    )
                )
    write_s = time.perf_counter() - started
    results.append(
        Result(
            "use-case writes (5 events per transaction)",
            EVENTS / write_s,
            "events/s",
            ">= 1000",
            EVENTS / write_s >= 1000,
        )
    )

    relay = OutboxRelay(db=db, outbox=tables.outbox, service="bench", bootstrap=bootstrap, batch_size=500)
    started = time.perf_counter()
    deadline = started + 300
    while time.perf_counter() < deadline:
        await relay.publish_once()
        async with db.sessions() as s:
            left = (
                await s.execute(sa.select(sa.func.count()).where(tables.outbox.c.sent_at.is_(None)))
            ).scalar_one()
        if left == 0:
            break
    relay_s = time.perf_counter() - started
    if relay._producer is not None:
        await relay._producer.stop()
    results.append(
        Result(
            "outbox relay: commit to broker ack",
            EVENTS / relay_s,
            "events/s",
            ">= 1000",
            EVENTS / relay_s >= 1000 and left == 0,
        )
    )

    async def record(session: AsyncSession, event: ReceivedEvent) -> None:
        await session.execute(sa.insert(effects).values(event_id=event.id))

    runner = ConsumerRunner(
        db=db,
        inbox=tables.inbox,
        group=f"bench-{int(time.time())}",
        topics=[topic],
        handlers={Bumped.event_type: record},
        bootstrap=bootstrap,
    )

    async def handled_count() -> int:
        async with db.sessions() as s:
            return int((await s.execute(sa.select(sa.func.count()).select_from(effects))).scalar_one())

    task = asyncio.create_task(runner.run())
    joined = time.perf_counter()
    # Throughput is timed from the first handled event: joining the consumer group is not handling.
    await wait_for(handled_count, timeout=60, interval=0.01)
    started = time.perf_counter()
    notes.append(
        f"consumer: joining the group and the first event took {started - joined:.1f} s (not counted)"
    )
    handled = await wait_for(
        lambda: _at_least(handled_count(), EVENTS), timeout=300, interval=0.05, what="all events handled"
    )
    consume_s = time.perf_counter() - started
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    results.append(
        Result(
            "consumer: handler + inbox + offset commit",
            handled / consume_s,
            "events/s",
            ">= 500",
            handled / consume_s >= 500 and handled == EVENTS,
        )
    )
    await db.dispose()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def bench_end_to_end(bootstrap: str, results: list[Result], notes: list[str]) -> None:
    var_dir = Path(tempfile.mkdtemp(prefix="icep-bench-"))
    ports = {name: free_port() for name in SERVICES}
    env = platform_env(
        ports,
        bootstrap=bootstrap,
        var_dir=var_dir,
        extra={"ICEP_NOTIFICATIONS_ALLOW_LOOPBACK_ENDPOINTS": "true"},
    )
    launcher = Launcher(env=env, log_dir=var_dir / "logs", ports=ports)
    receiver = WebhookReceiver().start()
    try:
        launcher.start_all()
        gateway = f"http://127.0.0.1:{ports['gateway']}"
        async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
            token = (
                await http.post(
                    "/oauth/token",
                    data={"grant_type": "client_credentials"},
                    auth=("deu-planner", "deu-planner-dev-secret"),
                )
            ).json()["access_token"]
            http.headers["Authorization"] = f"Bearer {token}"
            await http.post(
                "/v1/subscriptions",
                json={"url": receiver.url, "event_types": ["icep.plans.plan.submitted.v1"]},
            )
            latencies: list[float] = []
            api_latencies: list[float] = []
            body = {"title": "Bench plan", "period_start": "2025-01-01", "period_end": "2029-12-31"}
            for _ in range(PLANS):
                plan = (await http.post("/v1/plans", json=body)).json()
                before = len(receiver.received())
                t0 = time.perf_counter()
                r = await http.post(f"/v1/plans/{plan['id']}/submit")
                api_latencies.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text
                wall0 = time.time() - (time.perf_counter() - t0)
                await wait_for(lambda: len(receiver.received()) > before, timeout=30, interval=0.002)  # noqa: B023
                latencies.append(receiver.received()[-1].at - wall0)
        p50, p95 = statistics.median(latencies) * 1000, statistics.quantiles(latencies, n=20)[18] * 1000
        results.append(Result("submit -> signed webhook received, p50", p50, "ms", "<= 250", p50 <= 250))
        results.append(Result("submit -> signed webhook received, p95", p95, "ms", "<= 500", p95 <= 500))
        api95 = statistics.quantiles(api_latencies, n=20)[18] * 1000
        results.append(Result("POST submit through the gateway, p95", api95, "ms", "<= 100", api95 <= 100))
        for name in SERVICES:
            mem = rss_mib(launcher.processes[name].process.pid)
            results.append(Result(f"resident memory of {name}", mem, "MiB", "<= 200", mem <= 200))
        notes.append(f"end-to-end: {PLANS} plans submitted one after another, one subscriber")
    finally:
        receiver.stop()
        launcher.stop_all()


def write_report(results: list[Result], notes: list[str], database: str) -> str:
    lines = [
        "# ICEP benchmark report",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores,"
        f" Python {pyplatform.python_version()}, {database}, a single local Kafka broker."
        " Written by `make bench` (bench/__main__.py).",
        "",
        "| measure | value | target | met |",
        "|---|---:|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.value:,.1f} {r.unit} | {r.target} {r.unit} | {'yes' if r.ok else 'NO'} |"
        )
    lines += ["", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)


async def main() -> int:
    results: list[Result] = []
    notes = [
        f"outbox/consumer: {EVENTS} events over {KEYS} keys, {PER_TX} per transaction, 200-byte payloads"
    ]
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    broker: LocalKafka | None = None
    tmp = Path(tempfile.mkdtemp(prefix="icep-bench-"))
    url = os.environ.get("ICEP_BENCH_DATABASE_URL", f"sqlite+aiosqlite:///{tmp / 'bench.db'}")
    database = "PostgreSQL" if url.startswith("postgres") else "SQLite (WAL)"
    try:
        if not bootstrap:
            fetch_jars()
            broker = LocalKafka(data_dir=tmp / "kafka", port=free_port(), controller_port=free_port())
            broker.start()
            broker.wait_ready(120)
            bootstrap = broker.bootstrap_servers
        await bench_outbox_and_consumer(bootstrap, url, results, notes)
        await bench_end_to_end(bootstrap, results, notes)
        await plans_summary.measure(bootstrap, results, notes)
        await notifications_delivery.measure(bootstrap, results, notes)
    finally:
        if broker is not None:
            broker.stop()
    for r in results:
        print(f"{r.name:<50} {r.value:>10,.1f} {r.unit:<9} target {r.target:<8} {'ok' if r.ok else 'MISSED'}")
    REPORT.write_text(write_report(results, notes, database))
    print(f"wrote {REPORT}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
