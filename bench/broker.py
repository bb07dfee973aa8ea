"""The Kafka broker a bench section runs against when started on its own, and its JVM's PID (whose CPU the
end-to-end figures count) when the bench started it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.results import Result
from icep.platform.kafka_local import LocalKafka, fetch_jars, free_port

Measure = Callable[[str, list[Result], list[str]], Awaitable[None]]

_started: list[LocalKafka] = []


def start_broker(tmp: Path) -> LocalKafka:
    """A local broker from the jars, ready; remembered for `broker_pid()`. The caller stops it."""
    fetch_jars()
    broker = LocalKafka(data_dir=tmp / "kafka", port=free_port(), controller_port=free_port())
    _started.append(broker)
    broker.start()
    broker.wait_ready(120)
    return broker


def broker_pid() -> int | None:
    """The JVM of the broker this bench started (None for an external Kafka)."""
    for broker in reversed(_started):
        if broker.is_running():
            return broker.pid
    return None


async def with_broker(measure: Measure, results: list[Result], notes: list[str]) -> None:
    """Run `measure` against KAFKA_BOOTSTRAP_SERVERS, or a local broker started (and stopped) for it."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    broker: LocalKafka | None = None
    try:
        if not bootstrap:
            broker = start_broker(Path(tempfile.mkdtemp(prefix="icep-bench-kafka-")))
            bootstrap = broker.bootstrap_servers
        await measure(bootstrap, results, notes)
    finally:
        if broker is not None:
            broker.stop()
