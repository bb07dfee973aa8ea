"""The operators' observers: pure pieces, and the relay's blocked state, backlog and lag on real parts."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import REGISTRY

from icep.contracts import EventPayload, Releasability
from icep.platform.db import Database
from icep.platform.events import OutgoingEvent
from icep.platform.kafka_local import free_port
from icep.platform.observe import (
    LagObserver,
    OutboxObserver,
    Transitions,
    age_seconds,
    build_info,
    partition_lag,
)
from icep.platform.outbox import UnitOfWorkFactory
from icep.platform.problems import database_unavailable
from icep.platform.relay import OutboxRelay
from icep.platform.tables import PlatformTables
from icep.platform.testing import wait_for


class Noted(EventPayload):
    event_type: ClassVar[str] = "icep.test.note.noted.v1"
    aggregate: ClassVar[str] = "note"

    n: int


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_lag_is_end_minus_committed_and_from_the_beginning_without_a_commit() -> None:
    ends = {"a": 10, "b": 7, "c": 5, "d": 3}
    committed: dict[str, int | None] = {"a": 4, "b": 7, "c": None}
    beginnings = {"a": 0, "b": 0, "c": 2, "d": 1}
    assert partition_lag(ends, committed, beginnings) == {"a": 6, "b": 0, "c": 3, "d": 2}


def test_age_of_the_oldest_row() -> None:
    now = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)
    assert age_seconds(None, now) == 0.0
    assert age_seconds(datetime(2026, 1, 1, 12, 0, 0), now) == 30.0  # naive: UTC
    assert age_seconds(now + timedelta(seconds=5), now) == 0.0  # clock skew never gives a negative age


def test_transitions_log_once_per_change(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "icep.observe")
    seen = Transitions("kafka")
    assert not seen.note(True)  # up at the first look: nothing to say
    assert seen.note(False, "refused")
    assert not seen.note(False)
    assert not seen.note(False)
    assert seen.note(True)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["kafka is unreachable (refused)", "kafka is reachable again"]


def test_build_info_names_version_and_revision() -> None:
    version, revision = build_info("plans", {"ICEP_BUILD_REVISION": "abc1234"})
    assert version != "unknown" and revision == "abc1234"
    assert sample("icep_build_info", service="plans", version=version, revision="abc1234") == 1
    assert build_info("nothing-such", {})[1] == "unknown"


async def test_an_unreachable_database_is_unavailable_not_a_bug() -> None:
    db = Database(f"postgresql://icep:icep@127.0.0.1:{free_port()}/nothing")
    try:
        with pytest.raises(Exception) as refused:
            await db.ping()
    finally:
        await db.dispose()
    assert database_unavailable(refused.value)
    assert not database_unavailable(ValueError("a bug"))
    assert not database_unavailable(FileNotFoundError(2, "a missing file is a bug, not an outage"))
    assert database_unavailable(ConnectionRefusedError(111, "refused"))


async def _write(db: Database, tables: PlatformTables, topic: str, n: int) -> None:
    uow = UnitOfWorkFactory(db, tables.outbox, "observe", topic)
    async with uow() as tx:
        for i in range(n):
            tx.publish(
                OutgoingEvent(payload=Noted(n=i), subject=f"k{i}", releasability=Releasability(owner="DEU"))
            )


async def test_backlog_is_counted_apart_from_the_relay(db: Database, tables: PlatformTables) -> None:
    observer = OutboxObserver(db.sessions, tables.outbox, "observed", interval=0.1)
    assert await observer.observe() == (0, 0.0)
    await _write(db, tables, "icep.nowhere.events", 3)
    count, age = await observer.observe()
    assert count == 3 and age >= 0
    assert sample("icep_outbox_backlog", service="observed") == 3


async def test_a_blocked_relay_says_so_once_and_recovers(
    db: Database, tables: PlatformTables, topic: str, kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "icep.outbox")
    service = f"blocked-{uuid.uuid4().hex[:6]}"
    relay = OutboxRelay(
        db=db,
        outbox=tables.outbox,
        service=service,
        bootstrap=f"127.0.0.1:{free_port()}",  # nobody listens: the broker is down
        send_timeout=2.0,
    )
    await _write(db, tables, topic, 2)
    for _ in range(3):
        assert await relay.publish_once() is False
    assert relay.blocked
    assert sample("icep_outbox_relay_blocked", service=service) == 1
    assert sample("icep_outbox_publish_failures_total", service=service) == 3
    # The relay says it once (aiokafka's own client says so too, once, under its own logger).
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "icep.outbox"]
    assert len(warnings) == 1 and "blocked" in warnings[0].getMessage()

    relay.bootstrap = kafka_bootstrap  # the broker is back
    try:
        await relay.publish_once()
    finally:
        producer = relay._producer
        if producer is not None:
            await producer.stop()
    assert not relay.blocked
    assert sample("icep_outbox_relay_blocked", service=service) == 0
    assert sample("icep_outbox_published_total", service=service) == 2
    assert any("no longer blocked" in r.getMessage() for r in caplog.records)


async def test_lag_is_seen_without_the_groups_consumer(kafka_bootstrap: str, topic: str) -> None:
    group = f"lag-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i in range(4):
            await producer.send_and_wait(topic, value=b"x", key=f"k{i}".encode(), partition=0)
    finally:
        await producer.stop()
    lag = LagObserver(kafka_bootstrap, group, [topic])
    try:
        seen: dict[tuple[str, int], int] = {}

        async def observed() -> bool:
            seen.update(await lag.observe())  # empty while a new broker makes its offsets topic
            return bool(seen)

        await wait_for(observed, timeout=30, what="the group's lag")
        assert seen[(topic, 0)] == 4 and sum(seen.values()) == 4
        assert sample("icep_consumer_lag", group=group, topic=topic, partition="0") == 4
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group)
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, 0)])
            await consumer.commit({TopicPartition(topic, 0): 3})
        finally:
            await consumer.stop()
        assert (await lag.observe())[(topic, 0)] == 1
    finally:
        await lag.close()
