"""ICEP benchmarks, by section: outbox relay and consumer throughput, end-to-end webhook latency and service
memory, the capacity summary (bench/plans_summary.py), webhook delivery throughput and latency
(bench/notifications_delivery.py), what the gateway adds to latency and throughput (bench/gateway_latency.py),
what the audit trail adds to a request's latency and CPU (bench/audit_overhead.py).

Run with `make bench` (or `uv run python -m bench`) for all of them, or `uv run python -m bench
gateway_latency ...` for the sections named (`--list` lists them): only their parts of bench/REPORT.md are
rewritten. Uses a local broker started from the jars unless KAFKA_BOOTSTRAP_SERVERS is set, SQLite unless
ICEP_BENCH_DATABASE_URL names another database (for the outbox section). Prints the figures and writes
bench/REPORT.md. Every loop is bounded in count and time; all traffic is loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform as pyplatform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import ClassVar

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from bench import audit_overhead, gateway_latency, notifications_delivery, plans_summary
from bench.results import Result, Section, print_results, write_report
from icep.contracts import EventPayload, Releasability
from icep.platform.consumer import ConsumerRunner
from icep.platform.db import Database
from icep.platform.events import OutgoingEvent, ReceivedEvent
from icep.platform.kafka import ensure_topics
from icep.platform.kafka_local import LocalKafka, fetch_jars, free_port
from icep.platform.launcher import SERVICES, Launcher, free_platform_ports, platform_env
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
    ports, management_ports = free_platform_ports()
    env = platform_env(
        ports,
        management_ports=management_ports,
        bootstrap=bootstrap,
        var_dir=var_dir,
        extra={"ICEP_NOTIFICATIONS_ALLOW_LOOPBACK_ENDPOINTS": "true"},
    )
    launcher = Launcher(env=env, log_dir=var_dir / "logs", ports=ports, management_ports=management_ports)
    receiver = WebhookReceiver().start()
    try:
        launcher.start_all(topics=True)
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
                r = await http.post(
                    f"/v1/plans/{plan['id']}/submit", headers={"If-Match": f'"{plan["version"]}"'}
                )
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


#: A section measures against a broker (its bootstrap servers) and adds its figures and notes.
Measure = Callable[[str, list[Result], list[str]], Awaitable[None]]


def sections(database_url: str) -> dict[str, tuple[str, Measure]]:
    """Section key -> (title, what measures it), in the report's order."""

    async def outbox(bootstrap: str, results: list[Result], notes: list[str]) -> None:
        notes.append(f"{EVENTS} events over {KEYS} keys, {PER_TX} per transaction, 200-byte payloads")
        await bench_outbox_and_consumer(bootstrap, database_url, results, notes)

    return {
        "outbox": ("Outbox relay and consumer", outbox),
        "end_to_end": ("End to end: submit to webhook, memory", bench_end_to_end),
        "plans_summary": ("Capacity summary", plans_summary.measure),
        "notifications_delivery": ("Webhook delivery", notifications_delivery.measure),
        "gateway_latency": ("Gateway overhead", gateway_latency.measure),
        "audit_overhead": ("Audit trail overhead", audit_overhead.measure),
    }


async def main(argv: list[str]) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="icep-bench-"))
    url = os.environ.get("ICEP_BENCH_DATABASE_URL", f"sqlite+aiosqlite:///{tmp / 'bench.db'}")
    available = sections(url)
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("section", nargs="*", help="sections to run (all when none is named)")
    parser.add_argument("--list", action="store_true", help="list the sections and stop")
    args = parser.parse_args(argv)
    if args.list:
        for key, (title, _) in available.items():
            print(f"{key:<24} {title}")
        return 0
    unknown = [name for name in args.section if name not in available]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(available)}")
    chosen = [key for key in available if not args.section or key in args.section]

    machine = f"{os.cpu_count()} cores, Python {pyplatform.python_version()}"
    databases = {"outbox": "PostgreSQL" if url.startswith("postgres") else "SQLite (WAL)"}
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    kafka = "an external Kafka" if bootstrap else "a single local Kafka broker"
    broker: LocalKafka | None = None
    done: list[Section] = []
    try:
        if not bootstrap:
            fetch_jars()
            broker = LocalKafka(data_dir=tmp / "kafka", port=free_port(), controller_port=free_port())
            broker.start()
            broker.wait_ready(120)
            bootstrap = broker.bootstrap_servers
        for key in chosen:
            title, measure = available[key]
            section = Section(key, title, f"{machine}, {databases.get(key, 'SQLite (WAL)')}, {kafka}")
            print(f"== {key}: {title}", flush=True)
            await measure(bootstrap, section.results, section.notes)
            print_results(section.results)
            done.append(section)
    finally:
        if broker is not None:
            broker.stop()
    write_report(REPORT, done, list(available))
    print(f"wrote {REPORT}")
    return 0 if all(r.ok for section in done for r in section.results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
