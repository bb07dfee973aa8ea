"""Benchmark: the machine's floors, measured in the same run as the scenarios they bound.

- Kafka round trip: one message produced with acks=all (raw aiokafka, idempotent) and consumed by a
  consumer already assigned to the partition, one at a time: p50;
- Kafka pipelined produce: FLOOR_PRODUCE messages of 300 bytes sent without waiting for each ack: msgs/s;
- a bare commit: one row inserted and committed, with sqlite3 in WAL mode with synchronous=NORMAL, and with
  asyncpg on PostgreSQL when a PostgreSQL URL is given (ICEP_BENCH_DATABASE_URL): p50 and CPU per commit;
- one HTTP hop: a minimal FastAPI app under uvicorn (`bench.minimal_app`, a process of its own), GETs one
  at a time on a keep-alive connection: p50, and the server process's CPU per request.

The floor of plan submit -> webhook is, as issue 14 defines it, the Kafka round trip + 4 commits + 3 HTTP
hops (gateway -> plans, the client's, notifications -> receiver). Sections that compare against it read
`FLOORS` (measured once per run; measured on demand when a section runs alone).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import PgDatabases, cpu_seconds, percentile
from bench.results import Result
from icep.platform.kafka import ensure_topics
from icep.platform.kafka_local import free_port
from icep.platform.testing import wait_for

ROUND_TRIPS = int(os.environ.get("ICEP_BENCH_FLOOR_ROUND_TRIPS", "300"))
PRODUCE = int(os.environ.get("ICEP_BENCH_FLOOR_PRODUCE", "20000"))
COMMITS = int(os.environ.get("ICEP_BENCH_FLOOR_COMMITS", "1000"))
HOPS = int(os.environ.get("ICEP_BENCH_FLOOR_HOPS", "1000"))

REPO = Path(__file__).resolve().parents[1]
#: Figures of this run, by name (seconds, or per second for rates); filled by `measure`.
FLOORS: dict[str, float] = {}


def floor_sum(database: str = "sqlite") -> float:
    """Seconds: Kafka round trip + 4 commits + 3 HTTP hops (p50s of this run)."""
    commit = FLOORS.get(f"commit_{database}", FLOORS["commit_sqlite"])
    return FLOORS["kafka_round_trip"] + 4 * commit + 3 * FLOORS["http_hop"]


async def kafka_round_trip(bootstrap: str) -> float:
    topic = f"icep.bench-floor-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [topic], partitions=1, replication=1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=500)
    await producer.start()
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_end(partition)
        took = []
        for n in range(ROUND_TRIPS + 20):
            started = time.perf_counter()
            await producer.send_and_wait(topic, b"x" * 300, key=str(n).encode())
            await asyncio.wait_for(consumer.getone(), 10)
            if n >= 20:  # warm-up
                took.append(time.perf_counter() - started)
        return percentile(took, 50)
    finally:
        await consumer.stop()
        await producer.stop()


async def kafka_pipelined(bootstrap: str) -> tuple[float, float]:
    """(messages/s, this process's CPU seconds per message) of pipelined produce, acks=all."""
    topic = f"icep.bench-floor-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [topic], partitions=6, replication=1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for partition in range(6):  # every partition's leader known before the clock starts
            await producer.send_and_wait(topic, b"warm", partition=partition)
        payload = b"x" * 300
        cpu0, started = time.process_time(), time.perf_counter()
        futures = [await producer.send(topic, payload, key=str(n % 500).encode()) for n in range(PRODUCE)]
        await asyncio.gather(*futures)
        took, cpu = time.perf_counter() - started, time.process_time() - cpu0
        return PRODUCE / took, cpu / PRODUCE
    finally:
        await producer.stop()


def sqlite_commit() -> tuple[float, float]:
    """(p50 seconds, CPU seconds) of one insert + commit in WAL mode, synchronous=NORMAL."""
    path = Path(tempfile.mkdtemp(prefix="icep-bench-floor-")) / "floor.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, body TEXT)")
        took = []
        cpu0 = time.process_time()
        for _ in range(COMMITS):
            started = time.perf_counter()
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t VALUES (?, ?)", (uuid.uuid4().hex, "x" * 300))
            conn.execute("COMMIT")
            took.append(time.perf_counter() - started)
        return percentile(took, 50), (time.process_time() - cpu0) / COMMITS
    finally:
        conn.close()


async def postgres_commit(admin_url: str) -> tuple[float, float]:
    """(p50 seconds, client CPU seconds) of one insert + commit with asyncpg, on a throwaway database."""
    import asyncpg

    databases = PgDatabases(admin_url)
    try:
        url = (await databases.create("floor")).replace("postgresql+asyncpg://", "postgresql://", 1)
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, body TEXT)")
            took = []
            cpu0 = time.process_time()
            for _ in range(COMMITS):
                started = time.perf_counter()
                async with conn.transaction():
                    await conn.execute("INSERT INTO t VALUES ($1, $2)", uuid.uuid4().hex, "x" * 300)
                took.append(time.perf_counter() - started)
            return percentile(took, 50), (time.process_time() - cpu0) / COMMITS
        finally:
            await conn.close()
    finally:
        await databases.drop()


async def http_hop() -> tuple[float, float]:
    """(p50 seconds, server CPU seconds per request) of GETs to a minimal FastAPI app under uvicorn."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bench.minimal_app:app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    server = subprocess.Popen(command, cwd=REPO)  # noqa: ASYNC220 (starting it does not block)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

            async def up() -> bool:
                try:
                    return (await http.get("/ping")).status_code == 200
                except httpx.HTTPError:
                    return False

            await wait_for(up, timeout=30, interval=0.1, what="the minimal app")
            for _ in range(50):
                await http.get("/ping")
            took = []
            cpu0 = cpu_seconds(server.pid)
            for _ in range(HOPS):
                started = time.perf_counter()
                r = await http.get("/ping")
                took.append(time.perf_counter() - started)
                r.raise_for_status()
            cpu = cpu_seconds(server.pid) - cpu0
        return percentile(took, 50), cpu / HOPS
    finally:
        server.terminate()
        server.wait(10)


async def measure(bootstrap: str, results: list[Result], notes: list[str]) -> None:
    FLOORS["kafka_round_trip"] = await kafka_round_trip(bootstrap)
    FLOORS["kafka_produce_rate"], produce_cpu = await kafka_pipelined(bootstrap)
    FLOORS["kafka_produce_cpu"] = produce_cpu
    FLOORS["commit_sqlite"], sqlite_cpu = await asyncio.to_thread(sqlite_commit)
    FLOORS["http_hop"], FLOORS["http_hop_cpu"] = await http_hop()
    ms = 1000.0
    results.append(
        Result(
            "Kafka round trip (produce acks=all -> consume), p50",
            FLOORS["kafka_round_trip"] * ms,
            "ms",
            "floor",
            True,
        )
    )
    results.append(
        Result(
            "Kafka pipelined produce (raw aiokafka, acks=all)",
            FLOORS["kafka_produce_rate"],
            "msg/s",
            "floor",
            True,
        )
    )
    results.append(Result("  client CPU per message produced", produce_cpu * ms, "ms", "floor", True))
    results.append(
        Result(
            "bare commit, sqlite3 WAL synchronous=NORMAL, p50",
            FLOORS["commit_sqlite"] * ms,
            "ms",
            "floor",
            True,
        )
    )
    results.append(Result("  CPU per commit (sqlite3)", sqlite_cpu * ms, "ms", "floor", True))
    admin = os.environ.get("ICEP_BENCH_DATABASE_URL", "")
    if admin.startswith("postgres"):
        FLOORS["commit_postgres"], pg_cpu = await postgres_commit(admin)
        results.append(
            Result(
                "bare commit, asyncpg on PostgreSQL, p50", FLOORS["commit_postgres"] * ms, "ms", "floor", True
            )
        )
        results.append(Result("  client CPU per commit (asyncpg)", pg_cpu * ms, "ms", "floor", True))
    results.append(
        Result(
            "one HTTP hop (minimal FastAPI app under uvicorn), p50",
            FLOORS["http_hop"] * ms,
            "ms",
            "floor",
            True,
        )
    )
    results.append(
        Result("  server CPU per request (minimal app)", FLOORS["http_hop_cpu"] * ms, "ms", "floor", True)
    )
    for database in ("sqlite", "postgres"):
        if f"commit_{database}" in FLOORS:
            results.append(
                Result(
                    f"floor sum submit -> webhook ({database}): round trip + 4 commits + 3 hops",
                    floor_sum(database) * ms,
                    "ms",
                    "floor",
                    True,
                )
            )
    notes.append(
        f"{ROUND_TRIPS} Kafka round trips (300 B, one partition), {PRODUCE} pipelined messages over 6"
        f" partitions, {COMMITS} commits, {HOPS} HTTP GETs on one keep-alive connection"
    )


async def ensure(bootstrap: str) -> None:
    """Measure the floors unless this run has already (a section run on its own)."""
    if "http_hop" not in FLOORS:
        await measure(bootstrap, [], [])
