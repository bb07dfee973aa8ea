"""ICEP benchmarks, by section (issue 14): the machine's floors (bench/floors.py), the event pipeline
without HTTP (bench/pipeline.py), end to end from an API write to the signed webhook with CPU per event,
throughput and a rate sweep (bench/e2e.py), webhook delivery (bench/notifications_delivery.py), the
gateway's overhead (bench/gateway_latency.py), replicas on PostgreSQL (bench/scale.py), the capacity
summary (bench/plans_summary.py) and the audit trail's overhead (bench/audit_overhead.py).

Run with `make bench` (or `uv run python -m bench`) for all of them, or `uv run python -m bench
gateway_latency ...` for the sections named (`--list` lists them): only their parts of bench/REPORT.md are
rewritten. Uses a local broker started from the jars unless KAFKA_BOOTSTRAP_SERVERS is set; SQLite, and
PostgreSQL too when ICEP_BENCH_DATABASE_URL is a PostgreSQL admin URL (throwaway databases are created on
it); `scale` starts a PostgreSQL cluster of its own. `--profile` (or ICEP_BENCH_PYSPY=1) records each
service with py-spy under load. Prints the figures and writes bench/REPORT.md. Every loop is bounded in
count and time; all traffic is loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform as pyplatform
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench import (
    audit_overhead,
    e2e,
    floors,
    gateway_latency,
    notifications_delivery,
    pipeline,
    plans_summary,
    scale,
)
from bench.broker import start_broker
from bench.results import Result, Section, print_results, write_report
from icep.platform.kafka_local import LocalKafka

REPORT = Path(__file__).with_name("REPORT.md")

#: A section measures against a broker (its bootstrap servers) and adds its figures and notes.
Measure = Callable[[str, list[Result], list[str]], Awaitable[None]]


def sections() -> dict[str, tuple[str, Measure]]:
    """Section key -> (title, what measures it), in the report's (and the run's) order: the floors first,
    so every later section compares against floors of the same run."""
    return {
        "floors": ("Floors", floors.measure),
        "outbox": ("Event pipeline without HTTP, SQLite", pipeline.measure_sqlite),
        "outbox_postgres": ("Event pipeline without HTTP, PostgreSQL", pipeline.measure_postgres),
        "end_to_end": ("End to end: API write to webhook, SQLite", e2e.measure_sqlite),
        "end_to_end_postgres": ("End to end: API write to webhook, PostgreSQL", e2e.measure_postgres),
        "notifications_delivery": ("Webhook delivery", notifications_delivery.measure),
        "gateway_latency": ("Gateway overhead", gateway_latency.measure),
        "scale": ("Replicas on PostgreSQL", scale.measure),
        "plans_summary": ("Capacity summary", plans_summary.measure),
        "audit_overhead": ("Audit trail overhead", audit_overhead.measure),
    }


async def main(argv: list[str]) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="icep-bench-"))
    available = sections()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("section", nargs="*", help="sections to run (all when none is named)")
    parser.add_argument("--list", action="store_true", help="list the sections and stop")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy each service under load (as ICEP_BENCH_PYSPY=1)"
    )
    args = parser.parse_args(argv)
    if args.list:
        for key, (title, _) in available.items():
            print(f"{key:<24} {title}")
        return 0
    unknown = [name for name in args.section if name not in available]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(available)}")
    chosen = [key for key in available if not args.section or key in args.section]
    if args.profile:
        os.environ["ICEP_BENCH_PYSPY"] = "1"

    machine = f"{os.cpu_count()} cores, Python {pyplatform.python_version()}"
    databases = {
        "outbox_postgres": "PostgreSQL",
        "end_to_end_postgres": "PostgreSQL",
        "scale": "PostgreSQL (a throwaway cluster of the bench's own)",
    }
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    kafka = "an external Kafka" if bootstrap else "a single local Kafka broker"
    broker: LocalKafka | None = None
    done: list[Section] = []
    try:
        if not bootstrap:
            broker = start_broker(tmp)
            bootstrap = broker.bootstrap_servers
        for key in chosen:
            title, measure = available[key]
            section = Section(key, title, f"{machine}, {databases.get(key, 'SQLite (WAL)')}, {kafka}")
            print(f"== {key}: {title}", flush=True)
            started = time.monotonic()
            try:
                await measure(bootstrap, section.results, section.notes)
            except Exception as exc:  # one broken section must not lose the others' figures
                section.notes.append(f"FAILED: {type(exc).__name__}: {str(exc)[:500]}")
                section.results.append(Result("section completed", 0, "", "-", False))
                traceback.print_exc()
            section.notes.append(f"section took {time.monotonic() - started:.0f} s")
            print_results(section.results)
            for note in section.notes:
                print(f"- {note}")
            done.append(section)
    finally:
        if broker is not None:
            broker.stop()
    write_report(REPORT, done, list(available))
    print(f"wrote {REPORT}")
    return 0 if all(r.ok for section in done for r in section.results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
