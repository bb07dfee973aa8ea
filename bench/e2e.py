"""Benchmark: end to end, an API write through the gateway -> plans -> outbox -> Kafka -> notifications
-> the signed webhook at a local receiver (`bench.receiver`, a process of its own), against the floors of
the same run (bench/floors.py).

The platform is started (Launcher, as `icep up` does) twice per database: with every span exported to a
local OTLP sink (`OtlpCollector`, OTEL_TRACES_SAMPLER=always_on) and with tracing off (no exporter). In
each:

- latency: LATENCY_PLANS plans, created beforehand, submitted one after another; each timed from sending
  the submit to the receiver getting its webhook: p50 / p99 against the floor sum (Kafka round trip + 4
  commits + 3 HTTP hops);
- CPU per end-to-end event: CPU seconds of the gateway, plans, notifications and the broker's JVM
  (/proc/<pid>/stat) over a phase, divided by the webhooks of that phase (one per API write);
- throughput: WRITES plan creates through the gateway from IN_FLIGHT requests at once: writes/s at the
  API and events/s to the last webhook (tracing off only);
- a rate sweep (tracing off only): creates sent open-loop at each of SWEEP_RATES per second for
  SWEEP_SECONDS; the highest rate whose p99 create -> webhook stays within 1 s (the sweep stops at the
  first rate that misses).

SQLite by default; the same on PostgreSQL (section end_to_end_postgres) when ICEP_BENCH_DATABASE_URL names
a PostgreSQL admin URL (throwaway databases are created per service and dropped). With ICEP_BENCH_PYSPY=1,
py-spy records each service during the throughput phase and the report lists the top functions.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import floors
from bench.broker import broker_pid
from bench.common import (
    CpuMeter,
    PgDatabases,
    Receiver,
    finish_profiles,
    percentile,
    start_platform,
    start_profiles,
    token,
)
from bench.results import Result
from icep.platform.launcher import Launcher
from icep.platform.testing import OtlpCollector

LATENCY_PLANS = int(os.environ.get("ICEP_BENCH_E2E_PLANS", "100"))
WRITES = int(os.environ.get("ICEP_BENCH_E2E_WRITES", "800"))
IN_FLIGHT = int(os.environ.get("ICEP_BENCH_E2E_IN_FLIGHT", "16"))
SWEEP_RATES = [int(r) for r in os.environ.get("ICEP_BENCH_SWEEP_RATES", "25,50,100,150,250").split(",")]
SWEEP_SECONDS = float(os.environ.get("ICEP_BENCH_SWEEP_SECONDS", "4"))
#: No phase sends for longer than this, however slow the platform (the run stays bounded).
PHASE_SECONDS = float(os.environ.get("ICEP_BENCH_PHASE_SECONDS", "45"))
PROFILE_SECONDS = float(os.environ.get("ICEP_BENCH_PYSPY_SECONDS", "8"))
CREATED, SUBMITTED = "icep.plans.plan.created.v1", "icep.plans.plan.submitted.v1"
PLAN = {"title": "Bench plan", "period_start": "2025-01-01", "period_end": "2029-12-31"}
#: Goals of issue 14.
CPU_GOAL_MS, P50_RATIO, P99_RATIO, WRITES_GOAL, SWEEP_GOAL = 6.0, 4.0, 10.0, 250.0, 150
PROCESSES = ("gateway", "plans", "notifications")


@dataclass
class Run:
    """One started platform with the receiver subscribed to plan creates and submits."""

    launcher: Launcher
    receiver: Receiver
    http: httpx.AsyncClient
    #: (event type, plan id) -> arrival (epoch seconds) of its webhook.
    arrived: dict[tuple[str, str], float] = field(default_factory=dict)
    webhook_ids: set[str] = field(default_factory=set)
    duplicates: int = 0
    #: API writes that failed (a 504 from the gateway, say): counted, not fatal.
    failures: list[str] = field(default_factory=list)
    #: API writes sent (creates and submits).
    writes: int = 0

    def pids(self) -> dict[str, int]:
        pids = {name: self.launcher.processes[name].process.pid for name in PROCESSES}
        kafka = broker_pid()
        if kafka is not None:
            pids["kafka"] = kafka
        return pids

    async def poll(self) -> None:
        for a in await self.receiver.new_arrivals():
            if a.webhook_id in self.webhook_ids:
                self.duplicates += 1
            self.webhook_ids.add(a.webhook_id)
            self.arrived.setdefault((a.type, a.subject), a.at)

    async def wait_for(self, wanted: set[tuple[str, str]], timeout: float) -> float:
        """Until every wanted webhook has arrived (or timeout): the last arrival, or NaN when some are
        missing."""
        deadline = time.monotonic() + timeout
        while True:
            await self.poll()
            if wanted <= self.arrived.keys():
                return max(self.arrived[w] for w in wanted) if wanted else 0.0
            if time.monotonic() > deadline:
                return float("nan")
            await asyncio.sleep(0.005)

    async def create(self) -> tuple[str, int, float]:
        """(plan id, version, when the create was sent)."""
        sent = time.time()
        self.writes += 1
        r = await self.http.post("/v1/plans", json=PLAN)
        if r.status_code != 201:
            raise RuntimeError(f"create: {r.status_code} {r.text[:300]}")
        body = r.json()
        return str(body["id"]), int(body["version"]), sent


async def _in_flight(run: Run, count: int, concurrency: int) -> tuple[list[tuple[str, int, float]], float]:
    """`count` creates from `concurrency` workers, or as many as PHASE_SECONDS allow: what they made and
    the seconds the API took."""
    made: list[tuple[str, int, float]] = []
    remaining = count
    deadline = time.monotonic() + PHASE_SECONDS

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0 and time.monotonic() < deadline:
            remaining -= 1
            try:
                made.append(await run.create())
            except (httpx.HTTPError, RuntimeError) as exc:  # counted and reported, the run goes on
                run.failures.append(str(exc)[:200])

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return made, time.perf_counter() - started


async def start_run(bootstrap: str, extra: Mapping[str, str]) -> Run:
    receiver = Receiver()
    launcher: Launcher | None = None
    try:
        await receiver.ready()
        launcher = await asyncio.to_thread(start_platform, bootstrap, extra)
        gateway = f"http://127.0.0.1:{launcher.ports['gateway']}"
        limits = httpx.Limits(max_connections=IN_FLIGHT * 2, max_keepalive_connections=IN_FLIGHT * 2)
        http = httpx.AsyncClient(base_url=gateway, timeout=30, limits=limits)
        http.headers["Authorization"] = f"Bearer {await token(http)}"
        r = await http.post(
            "/v1/subscriptions", json={"url": receiver.hooks, "event_types": [CREATED, SUBMITTED]}
        )
        r.raise_for_status()
        return Run(launcher, receiver, http)
    except BaseException:
        if launcher is not None:
            launcher.stop_all()
        await receiver.stop()
        raise


async def stop_run(run: Run) -> None:
    await run.http.aclose()
    run.launcher.stop_all()
    await run.receiver.stop()


def _cpu_results(
    label: str, spent: Mapping[str, float], events: int, results: list[Result], *, goal: bool = False
) -> None:
    per = {name: seconds / events * 1000 for name, seconds in spent.items()}
    total = sum(per.values())
    minimal = floors.FLOORS["http_hop_cpu"] * 1000
    results.append(
        Result(
            f"platform CPU per end-to-end event, {label}",
            total,
            "ms",
            f"<= {CPU_GOAL_MS:g}",
            total <= CPU_GOAL_MS,
            goal=f"CPU per end-to-end event, {label}" if goal else "",
            floor=f"minimal app {minimal:.2f} ms per request" if goal else "",
        )
    )
    for name, ms in per.items():
        results.append(Result(f"  of which {name}", ms, "ms", "-", True))


async def latency_phase(run: Run, label: str, floor: float, results: list[Result], notes: list[str]) -> None:
    made, _ = await _in_flight(run, LATENCY_PLANS, 4)
    await run.wait_for({(CREATED, plan_id) for plan_id, _, _ in made}, timeout=60)
    await asyncio.sleep(0.5)  # let the creates' work settle before the meter starts
    tag = "e2e-sequential-" + "".join(c if c.isalnum() else "-" for c in label.lower())
    spies = start_profiles({n: pid for n, pid in run.pids().items() if n != "kafka"}, tag, PROFILE_SECONDS)
    meter = CpuMeter(run.pids()).start()
    took = []
    deadline = time.monotonic() + PHASE_SECONDS
    for plan_id, version, _ in made:
        if time.monotonic() > deadline and len(took) >= 10:
            break
        sent = time.time()
        run.writes += 1
        r = await run.http.post(f"/v1/plans/{plan_id}/submit", headers={"If-Match": f'"{version}"'})
        if r.status_code != 200:
            run.failures.append(f"submit: {r.status_code} {r.text[:200]}")
            continue
        at = await run.wait_for({(SUBMITTED, plan_id)}, timeout=30)
        if at != at:  # NaN: no webhook within the wait
            run.failures.append(f"submit of {plan_id}: no webhook within 30 s")
            continue
        took.append(at - sent)
    if not took:
        raise RuntimeError(f"no submit reached its webhook: {run.failures[:3]}")
    spent = meter.stop()
    notes.extend(finish_profiles(spies, tag))
    ms = 1000.0
    p50, p99 = percentile(took, 50), percentile(took, 99)
    for name, value, ratio in (("p50", p50, P50_RATIO), ("p99", p99, P99_RATIO)):
        results.append(
            Result(
                f"submit -> signed webhook {name}, {label} (floor {floor * ms:.1f} ms, {value / floor:.1f}x)",
                value * ms,
                "ms",
                f"<= {ratio:g}x floor = {ratio * floor * ms:.1f}",
                value <= ratio * floor,
                goal=f"submit -> webhook {name}, {label}",
                floor=f"floor sum {floor * ms:.1f} ms, {value / floor:.1f}x",
            )
        )
    _cpu_results(f"{label}, {len(took)} sequential submits", spent, len(took), results)


async def throughput_phase(
    run: Run, label: str, results: list[Result], notes: list[str], *, writes_goal: bool = False
) -> None:
    await asyncio.sleep(0.5)
    tag = "e2e-" + "".join(c if c.isalnum() else "-" for c in label.lower())
    python = {name: pid for name, pid in run.pids().items() if name != "kafka"}  # py-spy reads Python only
    spies = start_profiles(python, tag, PROFILE_SECONDS)
    meter = CpuMeter(run.pids()).start()
    started = time.time()
    made, api_seconds = await _in_flight(run, WRITES, IN_FLIGHT)
    last = await run.wait_for({(CREATED, plan_id) for plan_id, _, _ in made}, timeout=120)
    spent = meter.stop()
    notes.extend(finish_profiles(spies, tag))
    writes = len(made) / api_seconds
    results.append(
        Result(
            f"API writes through the gateway, {IN_FLIGHT} in flight, {label}",
            writes,
            "writes/s",
            f">= {WRITES_GOAL:g}",
            writes >= WRITES_GOAL,
            goal=f"API writes, {IN_FLIGHT} in flight, {label}" if writes_goal else "",
        )
    )
    events = len(made) / (last - started) if last == last else 0.0
    results.append(
        Result(f"  end-to-end events/s (to the last webhook), {label}", events, "events/s", "-", events > 0)
    )
    _cpu_results(f"{label}, {IN_FLIGHT} in flight", spent, len(made), results, goal=True)
    failed, run.failures[:] = list(run.failures), []
    results.append(Result(f"  API writes that failed, {label}", len(failed), "", "= 0", not failed))
    if failed:
        notes.append(f"{label}: {len(failed)} writes failed, the first: {failed[0]}")
    if len(made) < WRITES:
        notes.append(f"{label}: {len(made)} of {WRITES} writes in the phase's {PHASE_SECONDS:g} s")


async def _create_into(run: Run, sent_at: dict[str, float]) -> bool:
    """One create; its send time recorded by plan id. False when it failed."""
    try:
        plan_id, _, sent = await run.create()
    except (httpx.HTTPError, RuntimeError):
        return False
    sent_at[plan_id] = sent
    return True


async def sweep_phase(run: Run, label: str, results: list[Result], notes: list[str]) -> None:
    best = 0
    for rate in SWEEP_RATES:
        count = max(1, round(rate * SWEEP_SECONDS))
        sent_at: dict[str, float] = {}
        tasks = []
        start = time.monotonic()
        for k in range(count):
            delay = start + k / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_create_into(run, sent_at)))
        failures = sum(not ok for ok in await asyncio.gather(*tasks))
        await run.wait_for({(CREATED, p) for p in sent_at}, timeout=10)
        took = [run.arrived.get((CREATED, p), float("inf")) - s for p, s in sent_at.items()]
        p50 = percentile(sorted(took), 50) if took else float("inf")
        p99 = percentile(sorted(took), 99) if took else float("inf")
        ok = failures == 0 and p99 <= 1.0
        notes.append(
            f"sweep {label}, {rate}/s for {SWEEP_SECONDS:g} s ({count} creates): p50 {p50 * 1000:,.0f} ms,"
            f" p99 {p99 * 1000:,.0f} ms, {failures} failed -> {'within' if ok else 'over'} 1 s"
        )
        if not ok:
            break
        best = rate
    results.append(
        Result(
            f"highest rate with p99 create -> webhook <= 1 s, {label}",
            best,
            "writes/s",
            f">= {SWEEP_GOAL} (3x 50/s)",
            best >= SWEEP_GOAL,
            goal=f"highest rate with p99 <= 1 s, {label}",
        )
    )


async def _nothing() -> dict[str, str]:
    return {}


async def scenario(
    bootstrap: str,
    database: str,
    name: str,
    results: list[Result],
    notes: list[str],
    fresh: Callable[[], Awaitable[dict[str, str]]] = _nothing,
) -> None:
    """Both platform runs; `fresh()` gives each its own databases (environment)."""
    await floors.ensure(bootstrap)
    floor = floors.floor_sum(database)
    collector = OtlpCollector().start()
    try:
        traced = {
            **await fresh(),
            "OTEL_TRACES_SAMPLER": "always_on",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        }
        run = await start_run(bootstrap, traced)
        try:
            await latency_phase(run, f"{name}, tracing exported at 100%", floor, results, notes)
            await throughput_phase(run, f"{name}, tracing exported at 100%", results, notes)
            lost, writes = run.duplicates, run.writes
        finally:
            await stop_run(run)
        notes.append(
            f"tracing on: the OTLP sink got {len(collector.spans):,} spans for"
            f" {writes} API writes (creates and submits), about"
            f" {len(collector.spans) / max(writes, 1):.0f} per write (some may still be"
            f" queued in the exporters); {lost} duplicate webhook-ids"
        )
    finally:
        collector.stop()
    run = await start_run(bootstrap, {**await fresh(), "OTEL_TRACES_EXPORTER": "none"})
    try:
        await latency_phase(run, f"{name}, tracing off", floor, results, notes)
        await throughput_phase(run, f"{name}, tracing off", results, notes, writes_goal=True)
        await sweep_phase(run, f"{name}, tracing off", results, notes)
        for process in PROCESSES:
            pid = run.launcher.processes[process].process.pid
            results.append(
                Result(
                    f"resident memory of {process} at the end",
                    _rss_mib(pid),
                    "MiB",
                    "<= 200",
                    _rss_mib(pid) <= 200,
                )
            )
        notes.append(f"tracing off: {run.duplicates} duplicate webhook-ids")
    finally:
        await stop_run(run)
    notes.append(
        f"up to {LATENCY_PLANS} sequential submits and {WRITES} creates at {IN_FLIGHT} in flight (each phase"
        f" at most {PHASE_SECONDS:g} s), sweep over"
        f" {SWEEP_RATES}/s for {SWEEP_SECONDS:g} s each; CPU of {', '.join(PROCESSES)} and the Kafka JVM"
        " from /proc/<pid>/stat"
    )


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def measure_sqlite(bootstrap: str, results: list[Result], notes: list[str]) -> None:
    await scenario(bootstrap, "sqlite", "SQLite", results, notes)


async def measure_postgres(bootstrap: str, results: list[Result], notes: list[str]) -> None:
    admin = os.environ.get("ICEP_BENCH_DATABASE_URL", "")
    if not admin.startswith("postgres"):
        notes.append("not measured: set ICEP_BENCH_DATABASE_URL to a PostgreSQL admin URL")
        return
    databases = PgDatabases(admin)
    try:

        async def fresh() -> dict[str, str]:
            return await databases.service_urls(["plans", "procurement", "standards", "notifications"])

        await scenario(bootstrap, "postgres", "PostgreSQL", results, notes, fresh)
    finally:
        await databases.drop()
