"""A broker outage is one warning per Kafka client and one line when it is back, not thousands of lines:
`KafkaOutageFilter` fed by the records real aiokafka clients write while their broker is stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from icep.platform.kafka import ensure_topics, new_producer, start_with_retry
from icep.platform.kafka_local import LocalKafka, fetch_jars, free_port
from icep.platform.logs import KafkaOutageFilter, kafka_client
from icep.platform.testing import wait_for


class Kept(logging.Handler):
    """Keeps the records it is given (after its filters, if it has any)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalKafka]:
    """A broker this test stops and starts again (the shared one must stay up for the others)."""
    fetch_jars()
    broker = LocalKafka(data_dir=tmp_path / "kafka", port=free_port(), controller_port=free_port())
    broker.start()
    try:
        broker.wait_ready(120)
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def handlers() -> Iterator[tuple[Kept, Kept]]:
    """(everything aiokafka writes at WARNING and above, what passes the filter), as `setup_logging` wires
    it: aiokafka at WARNING, its connection logger at DEBUG for the filter to see requests go out."""
    raw, shown = Kept(), Kept()
    raw.setLevel(logging.WARNING)
    shown.addFilter(KafkaOutageFilter(quiet_seconds=0.5))
    aiokafka, conn = logging.getLogger("aiokafka"), logging.getLogger("aiokafka.conn")
    levels = aiokafka.level, conn.level
    aiokafka.setLevel(logging.WARNING)
    conn.setLevel(logging.DEBUG)
    aiokafka.addHandler(raw)
    aiokafka.addHandler(shown)
    try:
        yield raw, shown
    finally:
        aiokafka.removeHandler(raw)
        aiokafka.removeHandler(shown)
        aiokafka.setLevel(levels[0])
        conn.setLevel(levels[1])


@contextlib.asynccontextmanager
async def clients(bootstrap: str, topic: str) -> AsyncIterator[None]:
    """A producer sending and a consumer polling, as the outbox relay and a consumer group do."""
    producer = new_producer(bootstrap, "outage-test")
    await start_with_retry(producer, "test producer")
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id="outage-test", enable_auto_commit=False
    )
    await start_with_retry(consumer, "test consumer")

    async def produce() -> None:
        while True:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.send_and_wait(topic, b"x"), 5)
            await asyncio.sleep(0.2)

    async def consume() -> None:
        while True:
            try:
                await consumer.getmany(timeout_ms=200)
            except Exception:
                await asyncio.sleep(0.2)

    tasks = [asyncio.create_task(produce()), asyncio.create_task(consume())]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await consumer.stop()
        await producer.stop()


def outage_lines(records: list[logging.LogRecord], kind: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        if getattr(record, "kafka_outage", None) == kind:
            client = str(getattr(record, "kafka_client", "?"))
            counts[client] = counts.get(client, 0) + 1
    return counts


async def test_a_broker_outage_is_one_warning_per_client_and_one_line_when_back(
    own_broker: LocalKafka, handlers: tuple[Kept, Kept]
) -> None:
    raw, shown = handlers
    topic = "outage-test"
    await ensure_topics(own_broker.bootstrap_servers, [topic], partitions=1, replication=1)
    async with clients(own_broker.bootstrap_servers, topic):
        await asyncio.sleep(0)  # both clients run
        assert outage_lines(shown.records, "started") == {}
        # (A fresh broker's first coordinator lookup may fail once: that line is shown as it is.)
        before = len(shown.records)
        await asyncio.to_thread(own_broker.stop)
        # aiokafka repeats itself: dozens of lines within seconds ...
        await wait_for(lambda: len(raw.records) >= 50, timeout=60, what="aiokafka's repeated errors")
        down = outage_lines(shown.records, "started")
        # ... of which each client shows one.
        assert down == {"test producer": 1, "test consumer": 1}, [r.getMessage() for r in shown.records]
        warning = next(r for r in shown.records if getattr(r, "kafka_outage", None) == "started")
        assert warning.levelno == logging.WARNING and "cannot reach the broker" in warning.getMessage()

        await asyncio.to_thread(own_broker.start)
        await asyncio.to_thread(own_broker.wait_ready, 120)
        await wait_for(
            lambda: set(outage_lines(shown.records, "ended")) == {"test producer", "test consumer"},
            timeout=60,
            what="a line per client when it is connected again",
        )
        back = [r for r in shown.records if getattr(r, "kafka_outage", None) == "ended"]
        assert all(r.levelno == logging.INFO for r in back)
        assert all("connected to the broker again" in r.getMessage() for r in back)
        assert sum(int(getattr(r, "suppressed", 0)) for r in back) > 0

    # Nothing else from aiokafka got through: no DEBUG request lines, no repeats.
    others = [r for r in shown.records[before:] if getattr(r, "kafka_outage", None) is None]
    assert all(r.levelno >= logging.WARNING for r in others)
    assert len(others) <= 2, [r.getMessage() for r in others]
    assert outage_lines(shown.records, "started") == {"test producer": 1, "test consumer": 1}
    assert outage_lines(shown.records, "ended") == {"test producer": 1, "test consumer": 1}


def test_other_aiokafka_errors_pass_unchanged() -> None:
    kept = Kept()
    kept.addFilter(KafkaOutageFilter())
    logger = logging.getLogger("aiokafka.consumer.group_coordinator")
    logger.addHandler(kept)
    try:
        logger.error("Unexpected error in coordinator routine")
        logger.error("Unexpected error in coordinator routine")
        logger.warning("Unable connect to node with id 1: refused")  # the outage's first line ...
        logger.warning("Unable connect to node with id 1: refused")  # ... and its repeat, held back
        logger.debug("Request to %s:%d %d: %s", "127.0.0.1", 9092, 1, "req")  # no outage long enough yet
    finally:
        logger.removeHandler(kept)
    messages = [r.getMessage() for r in kept.records]
    assert messages[:2] == ["Unexpected error in coordinator routine"] * 2
    assert len(messages) == 3 and "cannot reach the broker" in messages[2]


async def test_an_idle_client_is_announced_back_after_its_one_request(handlers: tuple[Kept, Kept]) -> None:
    """The outbox relay sends its backlog as soon as the broker is back, right after its last error, and may
    send nothing more for minutes: that one request is enough once the quiet period (0.5 s here) passes
    without another error. A request followed by an error is not."""
    _raw, shown = handlers
    conn = logging.getLogger("aiokafka.conn")
    token = kafka_client.set("idle producer")
    try:
        conn.warning("Unable connect to node with id 1: refused")
        conn.debug("Request to %s:%d %d: %s", "127.0.0.1", 9092, 1, "ProduceRequest")
        # The broker goes away again before the quiet period can pass (nothing yields in between, so this
        # holds however slow the machine is).
        conn.warning("Unable connect to node with id 1: refused")
        await asyncio.sleep(1.0)
        # (Only this client's lines count: a client of an earlier test may still announce itself here.)
        assert "idle producer" not in outage_lines(shown.records, "ended")
        conn.warning("Unable connect to node with id 1: refused")
        conn.debug("Request to %s:%d %d: %s", "127.0.0.1", 9092, 2, "ProduceRequest")  # and then nothing
    finally:
        kafka_client.reset(token)
    await wait_for(
        lambda: "idle producer" in outage_lines(shown.records, "ended"),
        timeout=5,
        what="the idle client's recovery line",
    )
    await asyncio.sleep(0.8)  # and only one
    assert outage_lines(shown.records, "started").get("idle producer") == 1
    assert outage_lines(shown.records, "ended").get("idle producer") == 1
    back = next(
        r
        for r in shown.records
        if getattr(r, "kafka_outage", None) == "ended" and getattr(r, "kafka_client", None) == "idle producer"
    )
    assert back.levelno == logging.INFO and "connected to the broker again" in back.getMessage()
    assert back.suppressed == 2  # type: ignore[attr-defined]
