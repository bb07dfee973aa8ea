"""Benchmark: GET /v1/capacity/summary through the gateway with 32 nations' plans of 20 commitments each.

Run standalone with `uv run python -m bench.plans_summary`, or call `run(results, notes)` from the bench
runner. The plans database is filled through the plans service's own use cases (draft, submit, review,
accept: the same rules and events as through the API), then the whole platform is started on it and the
summary is asked for through the gateway, as a partner would. Uses KAFKA_BOOTSTRAP_SERVERS or a local broker.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from bench.broker import with_broker
from bench.results import Result
from icep.contracts import ReleasabilityScope
from icep.contracts.nations import ALLIES
from icep.plans.app import MIGRATIONS
from icep.plans.models import tables
from icep.plans.plans import use_cases as plan_use_cases
from icep.plans.plans.model import (
    Actor,
    BottleneckInput,
    CapacityCommitment,
    Operator,
    PlanContent,
    RampStep,
)
from icep.plans.targets import use_cases as target_use_cases
from icep.platform import migrations
from icep.platform.db import Database
from icep.platform.launcher import Launcher, free_platform_ports, platform_env
from icep.platform.outbox import UnitOfWorkFactory
from icep.platform.testing import wait_for

NATIONS = sorted(ALLIES)
COMMITMENTS = 20
REQUESTS = int(os.environ.get("ICEP_BENCH_SUMMARY_REQUESTS", "200"))
PRODUCTS = ["155mm artillery round", "120mm tank round", "PAC-3 MSE interceptor", "GEM-T interceptor"]
REVIEWER = Actor("nato-reviewer", "NATO", frozenset({"reviewer"}))


def _content(nation: str) -> PlanContent:
    """Synthetic figures: 20 commitments over four products, each with a ramp and two bottlenecks."""
    return PlanContent(
        commitments=tuple(
            CapacityCommitment(
                key=f"{nation.lower()}-{i}",
                product=PRODUCTS[i % len(PRODUCTS)],
                capability_area="munitions" if i % len(PRODUCTS) < 2 else "air_missile_defence",
                site=f"Synthetic site {i}",
                site_country=nation,
                unit="rounds",
                baseline_per_month=1_000 + i,
                current_per_month=2_000 + i,
                target_per_month=5_000 + i,
                ramp=(
                    RampStep(date(2025, 7, 1), 3_000 + i),
                    RampStep(date(2026, 7, 1), 4_000 + i),
                    RampStep(date(2027, 7, 1), 5_000 + i),
                ),
                surge_per_month=6_000 + i,
                surge_days=120,
                lead_time_days=540,
                operator=Operator(f"Synthetic Industries {nation}", sme=i % 3 == 0),
                bottlenecks=(
                    BottleneckInput("nitrocellulose", "energetics", ("CHN",), True, 60),
                    BottleneckInput("solid rocket motor", "rocket_motors", ("USA", "NOR"), False, None),
                ),
            )
            for i in range(COMMITMENTS)
        )
    )


async def fill(url: str) -> None:
    await asyncio.to_thread(migrations.upgrade, MIGRATIONS, url)
    db = Database(url)
    uow = UnitOfWorkFactory(db, tables.outbox, "plans", "icep.plans.events")
    try:
        for n, nation in enumerate(NATIONS):
            planner = Actor(f"{nation.lower()}-planner", nation, frozenset({"planner"}))
            # A mix of releasabilities, so the visibility filter has work to do.
            scope = [ReleasabilityScope.ALLIES, ReleasabilityScope.NATIONAL, ReleasabilityScope.NATIONS][
                n % 3
            ]
            plan = await plan_use_cases.create_plan(
                uow,
                planner,
                plan_use_cases.DraftPlan(
                    title=f"Synthetic plan of {nation}",
                    period_start=date(2025, 1, 1),
                    period_end=date(2029, 12, 31),
                    capability_areas=("munitions", "air_missile_defence"),
                    release_scope=scope,
                    release_nations=("DEU",) if scope is ReleasabilityScope.NATIONS else (),
                    content=_content(nation),
                ),
            )
            await plan_use_cases.submit_plan(uow, planner, plan.id, None)
            await plan_use_cases.start_review(uow, REVIEWER, plan.id, None)
            await plan_use_cases.accept_plan(uow, REVIEWER, plan.id, None)
        for product in PRODUCTS:
            for year in range(2025, 2030):
                await target_use_cases.set_capability_target(
                    uow,
                    REVIEWER,
                    capability_area="munitions",
                    product=product,
                    year=year,
                    required_quantity=2_000_000,
                    unit="rounds",
                )
    finally:
        await db.dispose()


async def _token(http: httpx.AsyncClient, client_id: str) -> str:
    r = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, f"{client_id}-dev-secret"),
    )
    r.raise_for_status()
    return str(r.json()["access_token"])


async def _measure(http: httpx.AsyncClient, token: str, params: dict[str, Any]) -> tuple[float, float, int]:
    headers = {"Authorization": f"Bearer {token}"}
    lines = 0
    for _ in range(10):  # warm up
        r = await http.get("/v1/capacity/summary", params=params, headers=headers)
        r.raise_for_status()
        lines = len(r.json()["items"])
    took: list[float] = []
    for _ in range(REQUESTS):
        t0 = time.perf_counter()
        r = await http.get("/v1/capacity/summary", params=params, headers=headers)
        took.append(time.perf_counter() - t0)
        r.raise_for_status()
    return statistics.median(took) * 1000, statistics.quantiles(took, n=20)[18] * 1000, lines


async def _backlog_empty(http: httpx.AsyncClient, port: int) -> bool:
    text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    return any(
        line.startswith("icep_outbox_backlog{") and line.endswith(" 0.0") for line in text.splitlines()
    )


async def measure(bootstrap: str, results: list[Result], notes: list[str]) -> None:
    var_dir = Path(tempfile.mkdtemp(prefix="icep-bench-summary-"))
    url = f"sqlite+aiosqlite:///{var_dir / 'plans.db'}"
    started = time.perf_counter()
    await fill(url)
    notes.append(
        f"capacity summary: {len(NATIONS)} accepted plans of {COMMITMENTS} commitments each (filled through"
        f" the use cases in {time.perf_counter() - started:.1f} s), {REQUESTS} sequential requests per case"
    )
    ports, management_ports = free_platform_ports()
    env = platform_env(
        ports,
        management_ports=management_ports,
        bootstrap=bootstrap,
        var_dir=var_dir,
        extra={"ICEP_PLANS_DATABASE_URL": url},
    )
    launcher = Launcher(env=env, log_dir=var_dir / "logs", ports=ports, management_ports=management_ports)
    try:
        launcher.start_all(topics=True)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['gateway']}", timeout=30) as http:
            # Measure a quiet service: the relay first publishes the events the fill wrote.
            await wait_for(
                lambda: _backlog_empty(http, management_ports["plans"]),
                timeout=120,
                what="the plans outbox to drain",
            )
            cases = [
                ("deu-planner", {}, "DEU, no filter"),
                ("nato-reviewer", {}, "NATO reviewer, no filter"),
                ("fra-planner", {"product": PRODUCTS[0], "year": 2027}, "FRA, product and year"),
            ]
            for client_id, params, label in cases:
                p50, p95, lines = await _measure(http, await _token(http, client_id), params)
                results.append(
                    Result(f"GET /v1/capacity/summary ({label}), p50", p50, "ms", "<= 100", p50 <= 100)
                )
                results.append(
                    Result(f"GET /v1/capacity/summary ({label}), p95", p95, "ms", "<= 100", p95 <= 100)
                )
                notes.append(f"capacity summary ({label}): {lines} lines per answer")
    finally:
        launcher.stop_all()


async def run(results: list[Result], notes: list[str]) -> None:
    """The bench runner's hook: uses KAFKA_BOOTSTRAP_SERVERS, or starts a local broker for the run."""
    await with_broker(measure, results, notes)


async def main() -> int:
    results: list[Result] = []
    notes: list[str] = []
    await run(results, notes)
    for r in results:
        print(f"{r.name:<62} {r.value:>8,.1f} {r.unit:<3} target {r.target:<7} {'ok' if r.ok else 'MISSED'}")
    for n in notes:
        print(f"- {n}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
