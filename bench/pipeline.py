"""Benchmark: the event pipeline without HTTP, on SQLite and (when ICEP_BENCH_DATABASE_URL names a
PostgreSQL admin URL) on PostgreSQL, each on throwaway databases:

- use-case writes: EVENTS events over KEYS keys, PER_TX per transaction, through the platform's unit of
  work (outbox rows in the same transaction): events/s;
- relay alone: the outbox relay publishing that backlog to Kafka (commit to broker ack): events/s, and as
  a share of raw aiokafka pipelined produce measured in the same run (bench/floors.py; goal >= 30 %);
- consumer alone: handler + inbox + offset commit: events/s;
- the whole pipeline at once: writers -> relay (woken after each commit, as the services wire it) -> Kafka
  -> a notifications-style consumer (inbox + FANOUT delivery rows per event, one transaction): events/s
  from the first write to the last fan-out row (goal >= 1,500/s on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import ClassVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from bench import floors
from bench.common import PgDatabases
from bench.results import Result
from icep.contracts import EventPayload, Releasability
from icep.platform.consumer import ConsumerRunner
from icep.platform.db import Database
from icep.platform.events import OutgoingEvent, ReceivedEvent
from icep.platform.kafka import ensure_topics
from icep.platform.outbox import UnitOfWorkFactory
from icep.platform.relay import OutboxRelay
from icep.platform.tables import platform_tables
from icep.platform.testing import wait_for

EVENTS = int(os.environ.get("ICEP_BENCH_EVENTS", "5000"))
KEYS = 500
PER_TX = 5
FANOUT = 2
PIPELINE_GOAL, RELAY_SHARE_GOAL = 1500.0, 30.0


class Bumped(EventPayload):
    event_type: ClassVar[str] = "icep.bench.counter.bumped.v1"
    aggregate: ClassVar[str] = "counter"

    n: int
    note: str


async def _at_least(count: Awaitable[int], n: int) -> int:
    value = await count
    return value if value >= n else 0


class Stores:
    """The producing service's and the consuming service's databases (outbox side, inbox side)."""

    def __init__(self, producer_url: str, consumer_url: str) -> None:
        self.metadata = sa.MetaData()
        self.tables = platform_tables(self.metadata)
        self.consumer_metadata = sa.MetaData()
        self.consumer_tables = platform_tables(self.consumer_metadata)
        self.deliveries = sa.Table(
            "deliveries",
            self.consumer_metadata,
            sa.Column("id", sa.String(36), primary_key=True),
            sa.Column("event_id", sa.String(36), nullable=False),
            sa.Column("subscription", sa.Integer, nullable=False),
        )
        self.db = Database(producer_url)
        self.consumer_db = Database(consumer_url)

    async def create(self) -> None:
        async with self.db.engine.begin() as conn:
            await conn.run_sync(self.metadata.drop_all)
            await conn.run_sync(self.metadata.create_all)
        async with self.consumer_db.engine.begin() as conn:
            await conn.run_sync(self.consumer_metadata.drop_all)
            await conn.run_sync(self.consumer_metadata.create_all)

    async def dispose(self) -> None:
        await self.db.dispose()
        await self.consumer_db.dispose()

    async def fanned_out(self) -> int:
        async with self.consumer_db.sessions() as s:
            return int(
                (await s.execute(sa.select(sa.func.count()).select_from(self.deliveries))).scalar_one()
            )

    def consumer(self, bootstrap: str, topic: str) -> ConsumerRunner:
        deliveries = self.deliveries

        async def fan_out(session: AsyncSession, event: ReceivedEvent) -> None:
            await session.execute(
                sa.insert(deliveries),
                [{"id": str(uuid.uuid4()), "event_id": event.id, "subscription": n} for n in range(FANOUT)],
            )

        return ConsumerRunner(
            db=self.consumer_db,
            inbox=self.consumer_tables.inbox,
            group=f"bench-{uuid.uuid4().hex[:8]}",
            topics=[topic],
            handlers={Bumped.event_type: fan_out},
            bootstrap=bootstrap,
        )


async def write(uow: UnitOfWorkFactory, first_tx: int, transactions: int, relay: OutboxRelay | None) -> None:
    for tx_no in range(first_tx, first_tx + transactions):
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
        if relay is not None:
            relay.wake()  # what the services' after-commit hook does


async def stages(bootstrap: str, stores: Stores, label: str, results: list[Result], notes: list[str]) -> None:
    """Each stage alone: writes, then the relay on the backlog, then the consumer on the topic."""
    topic = f"icep.bench-{uuid.uuid4().hex[:8]}.events"
    await ensure_topics(bootstrap, [topic], partitions=6, replication=1)
    uow = UnitOfWorkFactory(stores.db, stores.tables.outbox, "bench", topic)
    started = time.perf_counter()
    await write(uow, 0, EVENTS // PER_TX, None)
    rate = EVENTS / (time.perf_counter() - started)
    results.append(
        Result(f"use-case writes (5 events per transaction), {label}", rate, "events/s", "-", True)
    )

    relay = OutboxRelay(db=stores.db, outbox=stores.tables.outbox, service="bench", bootstrap=bootstrap)
    # As for the raw produce floor: the producer started and the topic's partitions known before the
    # clock starts (a running relay starts its producer once).
    await (await relay._ensure_producer()).partitions_for(topic)
    started, cpu = time.perf_counter(), time.process_time()
    deadline = started + 300
    left = EVENTS
    while time.perf_counter() < deadline and left:
        await relay.publish_once(more_for=1.0)  # batch after batch, as `run` does
        async with stores.db.sessions() as s:
            outbox = stores.tables.outbox
            left = (
                await s.execute(sa.select(sa.func.count()).where(outbox.c.sent_at.is_(None)))
            ).scalar_one()
    relay_rate = EVENTS / (time.perf_counter() - started)
    # This process's CPU while only the relay ran in it (its database driver's threads included).
    relay_cpu = (time.process_time() - cpu) / EVENTS
    if relay._producer is not None:
        await relay._producer.stop()
    raw = floors.FLOORS["kafka_produce_rate"]
    share = relay_rate / raw * 100
    results.append(
        Result(f"outbox relay alone: commit to broker ack, {label}", relay_rate, "events/s", "-", left == 0)
    )
    produce_cpu = floors.FLOORS.get("kafka_produce_cpu", 0.0)
    results.append(
        Result(
            f"  relay CPU per event, {label} (raw produce: {produce_cpu * 1000:.3f} ms per message)",
            relay_cpu * 1000,
            "ms",
            "-",
            left == 0,
        )
    )
    results.append(
        Result(
            f"relay alone / raw pipelined produce, {label}",
            share,
            "%",
            f">= {RELAY_SHARE_GOAL:g}",
            share >= RELAY_SHARE_GOAL and left == 0,
            goal=f"relay / raw produce, {label}",
            floor=f"raw produce {raw:,.0f} msg/s",
        )
    )

    runner = stores.consumer(bootstrap, topic)
    task = asyncio.create_task(runner.run())
    try:
        joined = time.perf_counter()
        await wait_for(stores.fanned_out, timeout=60, interval=0.01, what="the first event handled")
        started = time.perf_counter()
        notes.append(
            f"{label}: the consumer joined and handled its first event in {started - joined:.1f} s"
            " (not counted)"
        )
        done = await wait_for(
            lambda: _at_least(stores.fanned_out(), EVENTS * FANOUT),
            timeout=300,
            interval=0.05,
            what="all handled",
        )
        rate = EVENTS / (time.perf_counter() - started)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    results.append(
        Result(
            f"consumer alone: handler + inbox + fan-out + offset commit, {label}",
            rate,
            "events/s",
            "-",
            done == EVENTS * FANOUT,
        )
    )


async def whole(bootstrap: str, stores: Stores, label: str, results: list[Result], notes: list[str]) -> None:
    """Writers, relay and consumer at once, as in a running service pair."""
    topic = f"icep.bench-{uuid.uuid4().hex[:8]}.events"
    await ensure_topics(bootstrap, [topic], partitions=6, replication=1)
    uow = UnitOfWorkFactory(stores.db, stores.tables.outbox, "bench", topic)
    relay = OutboxRelay(db=stores.db, outbox=stores.tables.outbox, service="bench", bootstrap=bootstrap)
    runner = stores.consumer(bootstrap, topic)
    tasks = [asyncio.create_task(relay.run()), asyncio.create_task(runner.run())]
    try:
        # Warm: the consumer has joined its group once an event of the warm-up has gone all the way.
        await write(uow, 10**6, 1, relay)
        await wait_for(stores.fanned_out, timeout=60, interval=0.01, what="the warm-up event")
        before = await stores.fanned_out()
        started = time.perf_counter()
        writers = 4
        per_writer = EVENTS // PER_TX // writers
        await asyncio.gather(*(write(uow, w * per_writer, per_writer, relay) for w in range(writers)))
        written = time.perf_counter() - started
        total = before + per_writer * writers * PER_TX * FANOUT
        done = await wait_for(
            lambda: _at_least(stores.fanned_out(), total), timeout=300, interval=0.02, what="all fanned out"
        )
        took = time.perf_counter() - started
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    events = per_writer * writers * PER_TX
    rate = events / took
    goal = label == "PostgreSQL"
    results.append(
        Result(
            f"pipeline: writes -> relay -> Kafka -> consumer with inbox -> fan-out rows, {label}",
            rate,
            "events/s",
            f">= {PIPELINE_GOAL:,.0f}" if goal else "-",
            (rate >= PIPELINE_GOAL or not goal) and done >= total,
            goal=f"event pipeline without HTTP, {label}" if goal else "",
            floor=f"raw produce {floors.FLOORS['kafka_produce_rate']:,.0f} msg/s",
        )
    )
    notes.append(
        f"{label} pipeline: {events} events from {writers} writers in {written:.1f} s, all {FANOUT}"
        f" fan-out rows per event in {took:.1f} s"
    )


async def _run(
    bootstrap: str, producer_url: str, consumer_url: str, label: str, results: list[Result], notes: list[str]
) -> None:
    await floors.ensure(bootstrap)
    stores = Stores(producer_url, consumer_url)
    try:
        await stores.create()
        await stages(bootstrap, stores, label, results, notes)
        await stores.create()
        await whole(bootstrap, stores, label, results, notes)
    finally:
        await stores.dispose()
    notes.append(
        f"{label}: {EVENTS} events over {KEYS} keys, {PER_TX} per transaction, 200-byte payloads,"
        f" {FANOUT} fan-out rows per event"
    )


async def measure_sqlite(bootstrap: str, results: list[Result], notes: list[str]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="icep-bench-pipeline-"))
    await _run(
        bootstrap,
        f"sqlite+aiosqlite:///{tmp / 'out.db'}",
        f"sqlite+aiosqlite:///{tmp / 'in.db'}",
        "SQLite",
        results,
        notes,
    )


async def measure_postgres(bootstrap: str, results: list[Result], notes: list[str]) -> None:
    admin = os.environ.get("ICEP_BENCH_DATABASE_URL", "")
    if not admin.startswith("postgres"):
        notes.append("not measured: set ICEP_BENCH_DATABASE_URL to a PostgreSQL admin URL")
        return
    databases = PgDatabases(admin)
    try:
        await _run(
            bootstrap,
            await databases.create("out"),
            await databases.create("in"),
            "PostgreSQL",
            results,
            notes,
        )
    finally:
        await databases.drop()
