"""Benchmark: what the gateway costs. The same GETs, with the same token, straight at the plans service and
through the gateway (which checks the token and the client's rate limit, then forwards):

- latency: GET one plan and GET a page of the plans list, REQUESTS times each way, one request at a time
  on a warm keep-alive connection, the two ways alternating so both see the same machine; the gateway's
  added latency is gateway minus direct at each percentile (p50, p99);
- throughput: GET one plan, THROUGHPUT_REQUESTS in all from CONCURRENCY requests in flight at once over
  warm keep-alive connections, direct and through the gateway in alternating rounds: requests per second.

The client is Python (httpx) on the same machine as the processes it measures, so on a small machine the
throughput figures are partly the client's own; the gap between the two is the gateway's. The gateway's
rate limit is raised for the run (`ICEP_GATEWAY_RATE_LIMITS`) so that it is checked on every request but
never refuses one.

Run standalone with `uv run python -m bench.gateway_latency`, or from the bench runner
(`uv run python -m bench gateway_latency`). Uses KAFKA_BOOTSTRAP_SERVERS or a local broker. All traffic is
loopback; every loop is bounded in count, every request in time.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import floors
from bench.broker import with_broker
from bench.common import CpuMeter, finish_profiles, profiling_wanted, start_profiles
from bench.results import Result, print_results
from icep.platform.launcher import Launcher, free_platform_ports, platform_env

REQUESTS = int(os.environ.get("ICEP_BENCH_GATEWAY_REQUESTS", "500"))
THROUGHPUT_REQUESTS = int(os.environ.get("ICEP_BENCH_GATEWAY_THROUGHPUT_REQUESTS", "1500"))
CONCURRENCY = int(os.environ.get("ICEP_BENCH_GATEWAY_CONCURRENCY", "16"))
ROUNDS = 3
WARMUP = 50
PLANS = 20
#: Far above what the run sends, so the limiter is consulted on every request and never refuses.
RATE_LIMITS = {"standard": "1000000/minute"}
CLIENT = "deu-planner"
PROFILE_SECONDS = float(os.environ.get("ICEP_BENCH_PYSPY_SECONDS", "8"))


def _percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


async def _get(client: httpx.AsyncClient, path: str) -> float:
    """One GET, timed; anything but 200 (a 429 from the limiter, say) ends the run."""
    started = time.perf_counter()
    r = await client.get(path)
    took = time.perf_counter() - started
    if r.status_code != 200:
        raise RuntimeError(f"GET {client.base_url}{path}: {r.status_code} {r.text[:200]}")
    return took


async def latencies(
    direct: httpx.AsyncClient, gateway: httpx.AsyncClient, path: str
) -> dict[str, list[float]]:
    """REQUESTS sequential GETs each way, alternating (and alternating which goes first)."""
    for _ in range(WARMUP):
        await _get(direct, path)
        await _get(gateway, path)
    took: dict[str, list[float]] = {"direct": [], "gateway": []}
    for i in range(REQUESTS):
        pair = [("direct", direct), ("gateway", gateway)]
        for name, client in pair if i % 2 == 0 else reversed(pair):
            took[name].append(await _get(client, path))
    return took


async def throughput(
    clients: dict[str, httpx.AsyncClient], path: str, pids: dict[str, dict[str, int]]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Requests per second of each client with CONCURRENCY in flight, over connections opened (and
    warmed) beforehand; in ROUNDS alternating rounds, so both see the same machine. Also the CPU seconds
    per request of the processes `pids[client]` names (process -> pid) during that client's rounds."""
    for client in clients.values():
        await asyncio.gather(*(_get(client, path) for _ in range(CONCURRENCY)))
    took = dict.fromkeys(clients, 0.0)
    cpu = {name: dict.fromkeys(pids[name], 0.0) for name in clients}
    per_round = THROUGHPUT_REQUESTS // ROUNDS
    for _ in range(ROUNDS):
        for name, client in clients.items():
            meter = CpuMeter(pids[name]).start()
            took[name] += await _burst(client, path, per_round)
            for process, seconds in meter.stop().items():
                cpu[name][process] += seconds
    rates = {name: per_round * ROUNDS / seconds for name, seconds in took.items()}
    per_request = {
        name: {process: seconds / (per_round * ROUNDS) for process, seconds in spent.items()}
        for name, spent in cpu.items()
    }
    return rates, per_request


async def _burst(client: httpx.AsyncClient, path: str, count: int) -> float:
    """Seconds `count` GETs take from CONCURRENCY workers."""
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await _get(client, path)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.perf_counter() - started


def _client(base_url: str, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        limits=httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY),
    )


async def measure(bootstrap: str, results: list[Result], notes: list[str]) -> None:
    var_dir = Path(tempfile.mkdtemp(prefix="icep-bench-gateway-"))
    ports, management_ports = free_platform_ports()
    env = platform_env(
        ports,
        management_ports=management_ports,
        bootstrap=bootstrap,
        var_dir=var_dir,
        extra={"ICEP_GATEWAY_RATE_LIMITS": json.dumps(RATE_LIMITS)},
    )
    launcher = Launcher(env=env, log_dir=var_dir / "logs", ports=ports, management_ports=management_ports)
    gateway_url = f"http://127.0.0.1:{ports['gateway']}"
    plans_url = f"http://127.0.0.1:{ports['plans']}"
    try:
        launcher.start_all(topics=True)
        async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as http:
            r = await http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(CLIENT, f"{CLIENT}-dev-secret"),
            )
            r.raise_for_status()
            token = str(r.json()["access_token"])
            plan_ids = []
            for n in range(PLANS):
                r = await http.post(
                    "/v1/plans",
                    headers={"Authorization": f"Bearer {token}"},
                    json={
                        "title": f"Bench plan {n}",
                        "period_start": "2025-01-01",
                        "period_end": "2029-12-31",
                        "capability_areas": ["munitions"],
                        "releasability": {"scope": "allies"},
                    },
                )
                r.raise_for_status()
                plan_ids.append(str(r.json()["id"]))
        one_plan, plan_list = f"/v1/plans/{plan_ids[0]}", f"/v1/plans?limit={PLANS}"
        load_before = os.getloadavg()[0]
        async with _client(plans_url, token) as direct, _client(gateway_url, token) as gateway:
            for label, path in (("GET one plan", one_plan), (f"GET the plans list ({PLANS})", plan_list)):
                took = await latencies(direct, gateway, path)
                figures = {
                    (name, p): _percentile(values, p) * 1000
                    for name, values in took.items()
                    for p in (50, 99)
                }
                # Added latency per pair of neighbouring requests (one each way, same moment), so the
                # percentiles describe the gateway's own cost, not the difference of two distributions.
                paired = [g - d for d, g in zip(took["direct"], took["gateway"], strict=True)]
                for p, target in ((50, 1.5), (99, 20.0)):
                    added = _percentile(paired, p) * 1000
                    results.append(
                        Result(
                            f"{label} through the gateway: added latency, p{p}",
                            added,
                            "ms",
                            f"<= {target:g}",
                            added <= target,
                            goal=f"gateway added p50, {label}" if p == 50 else "",
                            floor=f"direct p50 {figures['direct', 50]:.2f} ms" if p == 50 else "",
                        )
                    )
                notes.append(
                    f"gateway latency, {label}: direct to plans p50 {figures['direct', 50]:.1f} ms,"
                    f" p99 {figures['direct', 99]:.1f} ms; through the gateway p50"
                    f" {figures['gateway', 50]:.1f} ms, p99 {figures['gateway', 99]:.1f} ms"
                    f" ({REQUESTS} sequential requests each way,"
                    " alternating, keep-alive)"
                )
            gateway_pid = launcher.processes["gateway"].process.pid
            plans_pid = launcher.processes["plans"].process.pid
            rates, cpu = await throughput(
                {"direct": direct, "gateway": gateway},
                one_plan,
                {"direct": {"plans": plans_pid}, "gateway": {"gateway": gateway_pid, "plans": plans_pid}},
            )
            if profiling_wanted():  # after the measured rounds: py-spy's sampling costs CPU of its own
                profiled = {"gateway": gateway_pid, "plans": plans_pid}
                spies = start_profiles(profiled, "gateway", PROFILE_SECONDS)
                profiled_until = time.perf_counter() + PROFILE_SECONDS
                while time.perf_counter() < profiled_until:
                    await _burst(gateway, one_plan, CONCURRENCY * 20)
                notes.extend(finish_profiles(spies, "gateway"))
        direct_rate, gateway_rate = rates["direct"], rates["gateway"]
        await floors.ensure(bootstrap)
        minimal = floors.FLOORS["http_hop_cpu"] * 1000
        gateway_cpu = cpu["gateway"]["gateway"] * 1000
        results.append(
            Result(
                "CPU per proxied GET in the gateway process",
                gateway_cpu,
                "ms",
                "<= 1.5",
                gateway_cpu <= 1.5,
                goal="gateway CPU per proxied request",
                floor=f"minimal app {minimal:.3f} ms ({gateway_cpu / minimal:.0f}x)",
            )
        )
        plans_cpu = cpu["direct"]["plans"] * 1000
        results.append(
            Result(
                f"GET one plan direct: CPU in the plans service (minimal app {minimal:.3f} ms,"
                f" {plans_cpu / minimal:.0f}x)",
                plans_cpu,
                "ms",
                "-",
                True,
            )
        )
        label = f"GET one plan, {CONCURRENCY} in flight"
        results.append(
            Result(f"{label}: throughput direct to plans", direct_rate, "req/s", ">= 100", direct_rate >= 100)
        )
        results.append(
            Result(
                f"{label}: throughput through the gateway",
                gateway_rate,
                "req/s",
                ">= 100",
                gateway_rate >= 100,
            )
        )
        share = gateway_rate / direct_rate * 100
        results.append(
            Result(
                f"{label}: gateway throughput / direct",
                share,
                "%",
                ">= 75",
                share >= 75,
                goal="gateway throughput / direct",
                floor=f"direct {direct_rate:,.0f} req/s",
            )
        )
        notes.append(
            f"gateway throughput: {THROUGHPUT_REQUESTS} requests each way in {ROUNDS} alternating rounds"
            f" from one Python client with {CONCURRENCY} in flight on the same machine (the client's own"
            f" CPU is part of the figure); the gateway's rate limit raised to {RATE_LIMITS['standard']}"
            " for the run, checked on every request"
        )
        notes.append(
            f"gateway overhead: 1-minute load average {load_before:.1f} before and {os.getloadavg()[0]:.1f}"
            f" after the measurements on {os.cpu_count()} cores (anything else running shares them)"
        )
    finally:
        launcher.stop_all()


async def run(results: list[Result], notes: list[str]) -> None:
    """Standalone: uses KAFKA_BOOTSTRAP_SERVERS, or starts a local broker for the run."""
    await with_broker(measure, results, notes)


async def main() -> int:
    results: list[Result] = []
    notes: list[str] = []
    await run(results, notes)
    print_results(results)
    for n in notes:
        print(f"- {n}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
