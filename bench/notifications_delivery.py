"""Benchmark: webhook delivery to a local receiver.

- throughput: the notifications service starts on a database holding DELIVERIES pending deliveries
  (over AGGREGATES aggregates, so ordering per aggregate is in play) and sends them all, signed, to a fast
  local receiver (`bench.receiver`, its own process); events/s from the first webhook received to the last;
- latency: a plan submitted through the gateway -> the signed webhook received (Kafka, consumer, fan-out,
  dispatcher), PLANS times one after another; p50 and p99.

Run standalone with `uv run python -m bench.notifications_delivery`, or from the bench runner. Uses
KAFKA_BOOTSTRAP_SERVERS or a local broker. All traffic is loopback; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from bench.broker import with_broker
from bench.results import Result
from icep.notifications.app import MIGRATIONS
from icep.notifications.deliveries.model import DeliveryStatus
from icep.notifications.deliveries.rows import DeliveryRow
from icep.notifications.subscriptions.model import SubscriptionStatus, new_signing_secret
from icep.notifications.subscriptions.rows import SubscriptionRow
from icep.platform import migrations, secrets
from icep.platform.db import Database
from icep.platform.events import utcnow
from icep.platform.ids import new_id
from icep.platform.kafka_local import free_port
from icep.platform.launcher import Launcher, free_platform_ports, platform_env
from icep.platform.testing import WebhookReceiver, wait_for

DELIVERIES = int(os.environ.get("ICEP_BENCH_DELIVERIES", "3000"))
AGGREGATES = 300
PLANS = int(os.environ.get("ICEP_BENCH_DELIVERY_PLANS", "200"))


async def fill(url: str, endpoint: str, var_dir: Path) -> None:
    """One subscription and DELIVERIES pending deliveries of realistic size, as the consumer leaves them.
    The subscription's signing secret is sealed with the development key the service will use (the one
    in its var dir), so the service can open it."""
    await asyncio.to_thread(migrations.upgrade, MIGRATIONS, url)
    secrets.install(secrets.box_from_settings("notifications", "", str(var_dir), required=False))
    db = Database(url)
    now = utcnow()
    sub = SubscriptionRow(
        id=new_id(),
        owner="bench-subscriber",
        nation="DEU",
        url=endpoint,
        description="bench",
        event_types=["*"],
        status=SubscriptionStatus.ACTIVE.value,
        secret=new_signing_secret(),
        version=1,
        created_at=now,
        updated_at=now,
    )
    try:
        async with db.transaction() as session:
            session.add(sub)
        rows = []
        # Each aggregate's deliveries carry increasing `data.version`s in the order they were made: the
        # receiver counts any that arrive after a later one of their aggregate.
        for n in range(DELIVERIES):
            event_id = new_id()
            subject = f"plan-{n % AGGREGATES}"
            body = {
                "id": event_id,
                "type": "icep.plans.plan.submitted.v1",
                "source": "/icep/plans",
                "subject": subject,
                "time": now.isoformat(),
                "nation": "DEU",
                "releasableto": "ALLIES",
                "data": {"plan_id": subject, "version": n, "submitted_by": "deu-planner", "note": "x" * 300},
            }
            rows.append(
                {
                    "id": new_id(),
                    "subscription_id": sub.id,
                    "event_id": event_id,
                    "event_type": "icep.plans.plan.submitted.v1",
                    "subject": subject,
                    "body": json.dumps(body, separators=(",", ":")),
                    "status": DeliveryStatus.PENDING.value,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "generation": 0,
                }
            )
        async with db.transaction() as session:
            await session.execute(sa.insert(DeliveryRow.__table__), rows)  # type: ignore[attr-defined]
    finally:
        await db.dispose()


async def _token(http: httpx.AsyncClient, client_id: str) -> str:
    r = await http.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, f"{client_id}-dev-secret")
    )
    r.raise_for_status()
    return str(r.json()["access_token"])


def _percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def start_receiver(port: int) -> subprocess.Popen[bytes]:
    """`bench.receiver` in a process of its own, on 127.0.0.1."""
    command = [sys.executable, "-m", "uvicorn", "bench.receiver:app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    return subprocess.Popen(command, cwd=Path(__file__).resolve().parents[1])


async def _stats(http: httpx.AsyncClient, url: str) -> dict[str, float]:
    try:
        found: dict[str, float] = (await http.get(url)).json()
    except httpx.HTTPError:
        return {}
    return found


def _concurrency() -> int:
    """The dispatcher's concurrency in this run (its setting, or the environment's override)."""
    from icep.notifications.settings import NotificationsSettings

    return NotificationsSettings().dispatch_concurrency


async def measure(bootstrap: str, results: list[Result], notes: list[str]) -> None:
    var_dir = Path(tempfile.mkdtemp(prefix="icep-bench-delivery-"))
    url = f"sqlite+aiosqlite:///{var_dir / 'notifications.db'}"
    bulk_port = free_port()
    bulk = start_receiver(bulk_port)
    bulk_url = f"http://127.0.0.1:{bulk_port}"
    live = WebhookReceiver().start()
    ports, management_ports = free_platform_ports()
    env = platform_env(
        ports,
        management_ports=management_ports,
        bootstrap=bootstrap,
        var_dir=var_dir,
        extra={"ICEP_NOTIFICATIONS_ALLOW_LOOPBACK_ENDPOINTS": "true", "ICEP_NOTIFICATIONS_DATABASE_URL": url},
    )
    launcher = Launcher(env=env, log_dir=var_dir / "logs", ports=ports, management_ports=management_ports)
    try:
        await fill(url, f"{bulk_url}/hooks", var_dir)
        async with httpx.AsyncClient(timeout=5) as http:
            await wait_for(lambda: _stats(http, f"{bulk_url}/stats"), timeout=30, what="the receiver")
            launcher.start_all(topics=True)

            # Throughput: the backlog drains as soon as the service is up.
            async def all_sent() -> dict[str, float] | None:
                found = await _stats(http, f"{bulk_url}/stats")
                return found if found.get("received", 0) >= DELIVERIES else None

            stats = await wait_for(all_sent, timeout=300, interval=0.1, what="the backlog sent")
        distinct = int(stats["distinct"])
        out_of_order = int(stats.get("out_of_order", 0))
        span = stats["last"] - stats["first"]
        rate = (stats["received"] - 1) / span if span > 0 else 0.0
        results.append(
            Result(
                "webhook delivery throughput to one local receiver",
                rate,
                "events/s",
                ">= 600",
                rate >= 600 and distinct == DELIVERIES and out_of_order == 0,
                goal="webhook deliveries to one receiver, order per aggregate kept",
                floor=f"{distinct} distinct of {DELIVERIES}, {out_of_order} out of order",
            )
        )
        results.append(
            Result(
                "deliveries received out of order within their aggregate",
                out_of_order,
                "",
                "= 0",
                out_of_order == 0,
            )
        )
        results.append(
            Result(
                "deliveries lost or duplicated",
                abs(DELIVERIES - distinct) + stats["received"] - distinct,
                "",
                "= 0",
                distinct == DELIVERIES and stats["received"] == DELIVERIES,
            )
        )
        notes.append(
            f"delivery throughput: {DELIVERIES} pending deliveries over {AGGREGATES} aggregates, one"
            f" subscriber, {distinct} distinct webhook-ids received in {span:.1f} s (dispatch_concurrency"
            f" {_concurrency()}, SQLite, each attempt recorded before the next of its aggregate goes)"
        )

        # Latency: API write -> webhook received.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['gateway']}", timeout=30) as http:
            http.headers["Authorization"] = f"Bearer {await _token(http, 'deu-planner')}"
            r = await http.post(
                "/v1/subscriptions",
                json={"url": live.url, "event_types": ["icep.plans.plan.submitted.v1"]},
            )
            r.raise_for_status()
            body = {"title": "Bench plan", "period_start": "2025-01-01", "period_end": "2029-12-31"}
            latencies: list[float] = []
            for _ in range(PLANS):
                plan = (await http.post("/v1/plans", json=body)).json()
                before = len(live.received())
                sent_at = time.time()
                r = await http.post(
                    f"/v1/plans/{plan['id']}/submit", headers={"If-Match": f'"{plan["version"]}"'}
                )
                r.raise_for_status()
                await wait_for(lambda: len(live.received()) > before, timeout=30, interval=0.002)  # noqa: B023
                latencies.append(live.received()[-1].at - sent_at)
        p50, p99 = _percentile(latencies, 50) * 1000, _percentile(latencies, 99) * 1000
        label = "plan submit (API write) -> webhook received"
        results.append(Result(f"{label}, p50", p50, "ms", "<= 250", p50 <= 250))
        results.append(Result(f"{label}, p99", p99, "ms", "<= 1000", p99 <= 1000))
        notes.append(
            f"delivery latency: {PLANS} plans submitted through the gateway one after another, each timed"
            " from sending the submit to the receiver getting the signed webhook"
        )
    finally:
        bulk.terminate()
        bulk.wait(10)
        live.stop()
        launcher.stop_all()


async def run(results: list[Result], notes: list[str]) -> None:
    """The bench runner's hook: uses KAFKA_BOOTSTRAP_SERVERS, or starts a local broker for the run."""
    await with_broker(measure, results, notes)


async def main() -> int:
    results: list[Result] = []
    notes: list[str] = []
    await run(results, notes)
    for r in results:
        print(f"{r.name:<56} {r.value:>9,.1f} {r.unit:<8} target {r.target:<7} {'ok' if r.ok else 'MISSED'}")
    for n in notes:
        print(f"- {n}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
