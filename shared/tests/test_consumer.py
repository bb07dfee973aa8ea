"""The consumer runner: inbox dedup, offsets after the transaction, retries, dead letters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession

from icep.platform.consumer import ConsumerRunner, RetryPolicy
from icep.platform.db import Database
from icep.platform.events import ReceivedEvent, encode
from icep.platform.ids import new_id
from icep.platform.kafka import dlq_topic, ensure_topics
from icep.platform.tables import PlatformTables
from icep.platform.testing import consumer_caught_up, read_records, wait_for


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


async def send(
    producer: AIOKafkaProducer, topic: str, event_id: str, value: str, type: str = "icep.test.thing.done.v1"
) -> None:
    key, body, headers = encode(
        id=event_id,
        type=type,
        source="/icep/test",
        subject="thing-1",
        time=datetime.now(UTC),
        nation="DEU",
        releasable_to="DEU",
        data_json=f'{{"value": "{value}"}}',
    )
    await producer.send_and_wait(topic, value=body, key=key, headers=headers)


async def count_effects(db: Database, effects: sa.Table) -> list[str]:
    async with db.sessions() as s:
        return list((await s.execute(sa.select(effects.c.value).order_by(effects.c.id))).scalars().all())


class Harness:
    def __init__(
        self, db: Database, tables: PlatformTables, effects: sa.Table, topic: str, bootstrap: str
    ) -> None:
        self.db, self.tables, self.effects, self.topic, self.bootstrap = db, tables, effects, topic, bootstrap
        self.group = f"icep-test-{new_id()[-8:]}"
        self.calls: list[str] = []

    async def record(self, session: AsyncSession, event: ReceivedEvent) -> None:
        self.calls.append(event.data["value"])
        if event.data["value"].startswith("poison"):
            raise ValueError(f"cannot handle {event.data['value']}")
        await session.execute(sa.insert(self.effects).values(event_id=event.id, value=event.data["value"]))

    def runner(self) -> ConsumerRunner:
        return ConsumerRunner(
            db=self.db,
            inbox=self.tables.inbox,
            group=self.group,
            topics=[self.topic],
            handlers={"icep.test.thing.done.v1": self.record},
            bootstrap=self.bootstrap,
            retry=RetryPolicy(max_attempts=3, backoff_seconds=0.01, backoff_max_seconds=0.05),
        )


@pytest.fixture
async def harness(
    db: Database, tables: PlatformTables, effects_table: sa.Table, topic: str, kafka_bootstrap: str
) -> Harness:
    h = Harness(db, tables, effects_table, topic, kafka_bootstrap)
    await ensure_topics(kafka_bootstrap, [dlq_topic(h.group)], partitions=1, replication=1)
    return h


async def run_until(harness: Harness, condition: object, what: str) -> None:
    task = asyncio.create_task(harness.runner().run())
    try:
        await wait_for(condition, timeout=30, what=what)  # type: ignore[arg-type]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_same_message_twice_is_handled_once(harness: Harness, producer: AIOKafkaProducer) -> None:
    event_id = new_id()
    await send(producer, harness.topic, event_id, "first")
    await send(producer, harness.topic, event_id, "first")  # the broker redelivers, or a producer retried
    await send(producer, harness.topic, new_id(), "second")

    async def both_seen() -> bool:
        return await count_effects(harness.db, harness.effects) == ["first", "second"]

    await run_until(harness, both_seen, "both events handled")
    assert harness.calls == ["first", "second"]  # the duplicate never reached the handler
    async with harness.db.sessions() as s:
        inbox = (await s.execute(sa.select(sa.func.count()).select_from(harness.tables.inbox))).scalar_one()
    assert inbox == 2


async def test_offsets_are_committed_so_a_restart_handles_nothing_again(
    harness: Harness, producer: AIOKafkaProducer
) -> None:
    for n in range(5):
        await send(producer, harness.topic, new_id(), f"v{n}")

    async def five() -> bool:
        # Handled and committed: cancelling before the commit would make the restart redo them.
        return len(await count_effects(harness.db, harness.effects)) == 5 and await consumer_caught_up(
            harness.bootstrap, harness.group, harness.topic
        )

    await run_until(harness, five, "five events handled")
    # Drop the inbox: if offsets had not been committed, a restart would handle all five again.
    async with harness.db.transaction() as s:
        await s.execute(sa.delete(harness.tables.inbox))
    await send(producer, harness.topic, new_id(), "after-restart")

    async def six() -> bool:
        return len(await count_effects(harness.db, harness.effects)) == 6

    await run_until(harness, six, "the new event handled after restart")
    assert await count_effects(harness.db, harness.effects) == [f"v{n}" for n in range(5)] + ["after-restart"]


async def test_poison_message_goes_to_dead_letters_and_later_ones_flow(
    harness: Harness, producer: AIOKafkaProducer
) -> None:
    poison_id = new_id()
    await send(producer, harness.topic, new_id(), "before")
    await send(producer, harness.topic, poison_id, "poison-1")
    await send(producer, harness.topic, new_id(), "after")

    async def flowed() -> bool:
        return await count_effects(harness.db, harness.effects) == ["before", "after"]

    await run_until(harness, flowed, "the message after the poison handled")
    assert harness.calls.count("poison-1") == 3  # max_attempts
    [dead] = await read_records(harness.bootstrap, dlq_topic(harness.group), expect=1)
    headers = dict(dead.headers)
    assert headers["ce_id"] == poison_id.encode()
    assert headers["icep_dlq_attempts"] == b"3"
    assert headers["icep_dlq_error"].startswith(b"ValueError: cannot handle poison-1")
    assert headers["icep_dlq_origin_topic"] == harness.topic.encode()
    assert int(headers["icep_dlq_origin_offset"]) == 1
    assert dead.value == b'{"value": "poison-1"}'
    # The poison's inbox row was rolled back with its failed transaction: nothing half-done remains.
    async with harness.db.sessions() as s:
        ids = (await s.execute(sa.select(harness.tables.inbox.c.event_id))).scalars().all()
    assert poison_id not in ids


async def test_record_that_is_no_cloudevent_is_dead_lettered(
    harness: Harness, producer: AIOKafkaProducer
) -> None:
    # Same key as the valid event: one partition, so "fine handled" means the bad record was passed.
    await producer.send_and_wait(harness.topic, value=b"not json", key=b"thing-1")
    await send(producer, harness.topic, new_id(), "fine")

    async def fine() -> bool:
        return await count_effects(harness.db, harness.effects) == ["fine"]

    await run_until(harness, fine, "the valid event after a malformed record")
    [dead] = await read_records(harness.bootstrap, dlq_topic(harness.group), expect=1)
    assert dict(dead.headers)["icep_dlq_error"].startswith(b"InvalidEnvelope")
