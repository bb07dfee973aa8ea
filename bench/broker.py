"""The Kafka broker a bench section runs against when started on its own."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.results import Result
from icep.platform.kafka_local import LocalKafka, fetch_jars, free_port

Measure = Callable[[str, list[Result], list[str]], Awaitable[None]]


async def with_broker(measure: Measure, results: list[Result], notes: list[str]) -> None:
    """Run `measure` against KAFKA_BOOTSTRAP_SERVERS, or a local broker started (and stopped) for it."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    broker: LocalKafka | None = None
    try:
        if not bootstrap:
            fetch_jars()
            tmp = Path(tempfile.mkdtemp(prefix="icep-bench-kafka-"))
            broker = LocalKafka(data_dir=tmp / "kafka", port=free_port(), controller_port=free_port())
            broker.start()
            broker.wait_ready(120)
            bootstrap = broker.bootstrap_servers
        await measure(bootstrap, results, notes)
    finally:
        if broker is not None:
            broker.stop()
