"""Benchmark: what the audit trail costs a request. Two plans services side by side, the same in all but
`ICEP_AUDIT_ENABLED` (each with its own database), the same requests sent straight to each, the two
alternating request by request so both see the same machine:

- a read the audit records: NATO's reviewer GETs a submitted DEU plan (another nation's read: queued in
  memory, written in batches by the audit writer);
- a change: DEU's planner creates a plan (its entry written in the change's own transaction);
- the floor: GET /healthz (no token, no database), the cost of a round trip on this machine in this run.

Added latency: the median of the differences of neighbouring requests (audit on minus audit off), the
typical cost; and at the tail, p95 with the audit trail minus p95 without (a percentile of paired
differences would measure the machine's noise, not the audit, when the cost is near zero). CPU is
each process's user + system time over the run (its background tasks included: the outbox relay, the audit
writer) divided by the requests it answered.

Run standalone with `uv run python -m bench.audit_overhead`, or from the bench runner
(`uv run python -m bench audit_overhead`). Uses KAFKA_BOOTSTRAP_SERVERS or a local broker. All traffic is
loopback; every loop is bounded in count, every request in time.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from bench.broker import with_broker
from bench.results import Result, print_results
from icep.platform.kafka_local import free_port
from icep.platform.launcher import SERVICES, Launcher, platform_env

READS = int(os.environ.get("ICEP_BENCH_AUDIT_READS", "600"))
CHANGES = int(os.environ.get("ICEP_BENCH_AUDIT_CHANGES", "300"))
WARMUP = 30
PLAN = {
    "title": "Bench plan",
    "period_start": "2025-01-01",
    "period_end": "2029-12-31",
    "capability_areas": ["munitions"],
    "releasability": {"scope": "allies"},
}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


Send = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


async def _timed(client: httpx.AsyncClient, send: Send, status: int) -> float:
    started = time.perf_counter()
    r = await send(client)
    took = time.perf_counter() - started
    if r.status_code != status:
        raise RuntimeError(f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:200]}")
    return took


async def paired(
    on: httpx.AsyncClient, off: httpx.AsyncClient, send: Send, count: int, status: int = 200
) -> dict[str, list[float]]:
    """`count` requests each way, alternating (and alternating which goes first)."""
    for _ in range(WARMUP):
        await _timed(on, send, status)
        await _timed(off, send, status)
    took: dict[str, list[float]] = {"on": [], "off": []}
    for i in range(count):
        pair = [("on", on), ("off", off)]
        for name, client in pair if i % 2 == 0 else reversed(pair):
            took[name].append(await _timed(client, send, status))
    return took


async def _token(gateway: str, client_id: str) -> str:
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        r = await http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, f"{client_id}-dev-secret"),
        )
        r.raise_for_status()
        return str(r.json()["access_token"])


async def _submitted_plan(base_url: str, token: str) -> str:
    async with httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        plan = (await http.post("/v1/plans", json=PLAN)).raise_for_status().json()
        r = await http.post(f"/v1/plans/{plan['id']}/submit", headers={"If-Match": f'"{plan["version"]}"'})
        r.raise_for_status()
        return str(plan["id"])


async def measure(bootstrap: str, results: list[Result], notes: list[str]) -> None:
    var_dir = Path(tempfile.mkdtemp(prefix="icep-bench-audit-"))
    ports = {name: free_port() for name in SERVICES}
    launcher = Launcher(
        env=platform_env(ports, bootstrap=bootstrap, var_dir=var_dir), log_dir=var_dir / "logs", ports=ports
    )
    # The same plans service with the audit trail off: its own port, database and topics.
    off_ports = {**ports, "plans": free_port()}
    off_env = platform_env(
        off_ports,
        bootstrap=bootstrap,
        var_dir=var_dir / "audit-off",
        extra={"ICEP_AUDIT_ENABLED": "false", "ICEP_TOPIC_NAMESPACE": "auditoff."},
    )
    without = Launcher(env=off_env, log_dir=var_dir / "logs-audit-off", ports=off_ports)
    urls = {"on": f"http://127.0.0.1:{ports['plans']}", "off": f"http://127.0.0.1:{off_ports['plans']}"}
    try:
        launcher.start_all(topics=True)
        without.start("plans")
        without.wait_ready("plans", topics=True)
        gateway = f"http://127.0.0.1:{ports['gateway']}"
        deu, nato = await _token(gateway, "deu-planner"), await _token(gateway, "nato-reviewer")
        plan = {name: await _submitted_plan(url, deu) for name, url in urls.items()}
        pids = {"on": launcher.processes["plans"].process.pid, "off": without.processes["plans"].process.pid}

        def client(name: str, token: str) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                base_url=urls[name], headers={"Authorization": f"Bearer {token}"}, timeout=30
            )

        load_before = os.getloadavg()[0]
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        async with (
            client("on", nato) as nato_on,
            client("off", nato) as nato_off,
            client("on", deu) as deu_on,
            client("off", deu) as deu_off,
        ):
            floor = await paired(nato_on, nato_off, lambda c: c.get("/healthz"), READS)
            reads = await paired(
                nato_on,
                nato_off,
                lambda c: c.get(f"/v1/plans/{plan['on' if c is nato_on else 'off']}"),
                READS,
            )
            changes = await paired(deu_on, deu_off, lambda c: c.post("/v1/plans", json=PLAN), CHANGES, 201)
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        answered = 3 * WARMUP + 2 * READS + CHANGES  # per process: floor, reads, changes

        for label, took, targets in (
            ("GET another nation's plan (read recorded)", reads, (2.0, 10.0)),
            ("POST a plan (change recorded in its transaction)", changes, (3.0, 15.0)),
        ):
            diffs = [a - b for a, b in zip(took["on"], took["off"], strict=True)]
            ms = {(n, p): _percentile(took[n], p) * 1000 for n in ("on", "off") for p in (50, 95)}
            added = {
                "added by the audit trail, median of paired differences": statistics.median(diffs) * 1000,
                "added by the audit trail at p95 (p95 on - p95 off)": ms["on", 95] - ms["off", 95],
            }
            for (what, value), target in zip(added.items(), targets, strict=True):
                results.append(Result(f"{label}: {what}", value, "ms", f"<= {target:g}", value <= target))
            notes.append(
                f"{label}: audit on p50 {ms['on', 50]:.1f} ms, p95 {ms['on', 95]:.1f} ms; audit off p50"
                f" {ms['off', 50]:.1f} ms, p95 {ms['off', 95]:.1f} ms"
                f" ({len(took['on'])} requests each way, alternating, keep-alive)"
            )
        floor50 = _percentile(floor["on"] + floor["off"], 50) * 1000
        results.append(
            Result("floor: GET /healthz, p50 (both processes)", floor50, "ms", "<= 5", floor50 <= 5)
        )
        per_request = {name: cpu[name] / answered * 1000 for name in cpu}
        share = per_request["on"] / per_request["off"] * 100 if per_request["off"] else 0.0
        results.append(
            Result("CPU per request, audit on", per_request["on"], "ms", "<= 20", per_request["on"] <= 20)
        )
        results.append(
            Result("CPU per request, audit off", per_request["off"], "ms", "<= 20", per_request["off"] <= 20)
        )
        results.append(Result("CPU per request, audit on / off", share, "%", "<= 125", share <= 125))
        notes.append(
            f"CPU: user + system time of each plans process over the run ({cpu['on']:.2f} s with the audit"
            f" trail, {cpu['off']:.2f} s without) over the {answered} requests each answered, background"
            " tasks included; the client runs on the same machine"
        )
        notes.append(
            f"audit overhead: 1-minute load average {load_before:.1f} before and {os.getloadavg()[0]:.1f}"
            f" after the measurements on {os.cpu_count()} cores (anything else running shares them)"
        )
    finally:
        without.stop_all()
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
