"""Dead letters and reprocessing on the consumer side: real Kafka, a real database, real consumer runners.

- A handler that keeps failing gives a record on `icep.dlq.<group>`, a `dead_letters` row pointing at it,
  and one error line in the log.
- A redrive goes to the origin topic: the failing group handles it once (then the row is resolved); a group
  that had handled the event skips it; a resolved row is not redriven again; failing again puts the row
  back to waiting.
- Reprocessing from an offset, with the group stopped, handles each event once more and no more; it is
  refused while the group's consumers run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession

from icep.platform.consumer import ConsumerRunner, RetryPolicy
from icep.platform.db import Database
from icep.platform.errors import Conflict
from icep.platform.events import ReceivedEvent, encode
from icep.platform.ids import new_id
from icep.platform.kafka import dlq_topic, ensure_topics
from icep.platform.operations import reprocess
from icep.platform.operations.dead_letters import DeadLetterQuery, DeadLetters
from icep.platform.tables import PlatformTables
from icep.platform.testing import consumer_caught_up, read_records, wait_for

TYPE = "icep.test.thing.done.v1"


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


async def send(producer: AIOKafkaProducer, topic: str, event_id: str, value: str) -> RecordMetadata:
    key, body, headers = encode(
        id=event_id,
        type=TYPE,
        source="/icep/test",
        subject="thing-1",
        time=datetime.now(UTC),
        nation="DEU",
        releasable_to="DEU",
        data_json=f'{{"value": "{value}"}}',
    )
    return await producer.send_and_wait(topic, value=body, key=key, headers=headers)


class Group:
    """One consumer group over the topic, whose handler fails on `poison...` values while `broken`."""

    def __init__(
        self,
        db: Database,
        tables: PlatformTables,
        effects: sa.Table,
        topic: str,
        bootstrap: str,
        broken: bool,
    ) -> None:
        self.db, self.tables, self.effects, self.topic, self.bootstrap = db, tables, effects, topic, bootstrap
        self.name = f"icep-test-{new_id()[-8:]}"
        self.broken = broken
        self.calls: list[str] = []
        self.task: asyncio.Task[None] | None = None

    async def handle(self, session: AsyncSession, event: ReceivedEvent) -> None:
        value = event.data["value"]
        self.calls.append(value)
        if self.broken and value.startswith("poison"):
            raise ValueError(f"cannot handle {value}")
        await session.execute(sa.insert(self.effects).values(event_id=event.id, value=f"{self.name}:{value}"))

    def start(self) -> None:
        runner = ConsumerRunner(
            db=self.db,
            inbox=self.tables.inbox,
            group=self.name,
            topics=[self.topic],
            handlers={TYPE: self.handle},
            bootstrap=self.bootstrap,
            retry=RetryPolicy(max_attempts=2, backoff_seconds=0.01, backoff_max_seconds=0.02),
            dead_letters=self.tables.dead_letters,
            service="testing",
        )
        self.task = asyncio.create_task(runner.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None

    async def effects_of(self) -> list[str]:
        async with self.db.sessions() as s:
            rows = await s.execute(
                sa.select(self.effects.c.value)
                .where(self.effects.c.value.startswith(f"{self.name}:"))
                .order_by(self.effects.c.id)
            )
        return [v.split(":", 1)[1] for v in rows.scalars()]

    def store(self) -> DeadLetters:
        return DeadLetters(
            self.db,
            self.tables.dead_letters,
            group=self.name,
            service="testing",
            bootstrap=self.bootstrap,
            dlq_topic=dlq_topic(self.name),
        )

    async def caught_up(self) -> bool:
        try:
            return await consumer_caught_up(self.bootstrap, self.name, self.topic)
        except KafkaError:  # a fresh broker's group coordinator may not be there yet
            return False


@pytest.fixture
async def groups(
    db: Database, tables: PlatformTables, effects_table: sa.Table, topic: str, kafka_bootstrap: str
) -> AsyncIterator[tuple[Group, Group]]:
    broken = Group(db, tables, effects_table, topic, kafka_bootstrap, broken=True)
    healthy = Group(db, tables, effects_table, topic, kafka_bootstrap, broken=False)
    await ensure_topics(kafka_bootstrap, [dlq_topic(g.name) for g in (broken, healthy)], 1, 1)
    try:
        yield broken, healthy
    finally:
        await broken.stop()
        await healthy.stop()


def waiting_gauge(topic: str) -> float:
    return (
        REGISTRY.get_sample_value("icep_dead_letters_waiting", {"service": "testing", "topic": topic}) or 0.0
    )


async def test_a_dead_letter_is_on_the_topic_in_the_table_and_logged_once(
    groups: tuple[Group, Group], producer: AIOKafkaProducer, caplog: pytest.LogCaptureFixture
) -> None:
    broken, _ = groups
    poison_id = new_id()
    await send(producer, broken.topic, new_id(), "fine-1")
    sent = await send(producer, broken.topic, poison_id, "poison-1")
    await send(producer, broken.topic, new_id(), "fine-2")
    with caplog.at_level(logging.ERROR, logger="icep.consumer"):
        broken.start()
        await wait_for(broken.caught_up, timeout=30, what="the group past the poison record")
    assert await broken.effects_of() == ["fine-1", "fine-2"]

    [row], _ = await broken.store().query(DeadLetterQuery())
    [copy] = await read_records(broken.bootstrap, dlq_topic(broken.name), expect=1)
    assert row["event_id"] == poison_id and row["event_type"] == TYPE and row["owner_nation"] == "DEU"
    assert row["status"] == "waiting" and row["attempts"] == 2 and row["redrive_count"] == 0
    assert row["error"] == "ValueError: cannot handle poison-1"
    assert (row["origin_topic"], row["origin_partition"], row["origin_offset"]) == (
        broken.topic,
        sent.partition,
        1,
    )
    assert (row["dlq_topic"], row["dlq_partition"], row["dlq_offset"]) == (
        copy.topic,
        copy.partition,
        copy.offset,
    )
    assert row["record_value"] == copy.value == b'{"value": "poison-1"}' and row["record_key"] == b"thing-1"
    names = [h["name"] for h in row["headers"]]
    assert "ce_id" in names and not any(n.startswith("icep_dlq_") for n in names)
    assert dict(copy.headers)["icep_dlq_error"] == b"ValueError: cannot handle poison-1"
    assert waiting_gauge(dlq_topic(broken.name)) == 1

    lines = [r for r in caplog.records if r.name == "icep.consumer" and r.levelno >= logging.ERROR]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    message = lines[0].getMessage()
    assert poison_id in message and TYPE in message and f"{broken.topic}[{sent.partition}]@1" in message
    assert "cannot handle poison-1" in message
    assert lines[0].__dict__["event_id"] == poison_id


async def test_a_redriven_record_is_handled_once_by_its_group_and_skipped_by_the_others(
    groups: tuple[Group, Group], producer: AIOKafkaProducer, db: Database, tables: PlatformTables
) -> None:
    broken, healthy = groups
    poison_id = new_id()
    await send(producer, broken.topic, poison_id, "poison-2")
    broken.start()
    healthy.start()
    await wait_for(broken.caught_up, timeout=30, what="the broken group past the poison record")
    await wait_for(healthy.caught_up, timeout=30, what="the healthy group past it")
    store = broken.store()
    [row], _ = await store.query(DeadLetterQuery(status="waiting"))
    assert await healthy.store().query(DeadLetterQuery()) == ([], None)
    assert await healthy.effects_of() == ["poison-2"]

    # Redriven while the bug is still there: dead-lettered again, the row back to waiting.
    first_copy = row["dlq_offset"]
    await store.redrive(row["id"])

    async def waiting_again() -> dict[str, object] | None:
        again = await store.get(row["id"])
        return again if again["status"] == "waiting" and again["dlq_offset"] != first_copy else None

    again = await wait_for(waiting_again, timeout=30, what="the second dead letter")
    assert again["redrive_count"] == 1 and again["attempts"] == 2 and again["origin_offset"] == 1
    assert waiting_gauge(dlq_topic(broken.name)) == 1

    broken.broken = False  # the fix
    # The healthy group's inbox no longer remembers the event (its retention has passed): the redriven
    # copy is addressed to the broken group alone, so the healthy group must not apply it again.
    async with db.transaction() as session:
        await session.execute(
            sa.delete(tables.inbox).where(
                (tables.inbox.c.consumer == healthy.name) & (tables.inbox.c.event_id == poison_id)
            )
        )
    calls_before = list(broken.calls)
    redriven = await store.redrive(row["id"])
    assert redriven["status"] in ("redriven", "resolved") and redriven["redrive_count"] == 2

    async def resolved() -> bool:
        return (await store.get(row["id"]))["status"] == "resolved"

    await wait_for(resolved, timeout=30, what="the dead letter resolved")
    await wait_for(broken.caught_up, timeout=30, what="the broken group caught up")
    await wait_for(healthy.caught_up, timeout=30, what="the healthy group caught up")
    assert await broken.effects_of() == ["poison-2"]
    assert broken.calls[len(calls_before) :] == ["poison-2"]
    # The other group had handled the event: three copies on the topic, its handler ran once.
    assert healthy.calls == ["poison-2"] and await healthy.effects_of() == ["poison-2"]
    final = await store.get(row["id"])
    assert final["resolved_at"] is not None and final["redrive_count"] == 2
    assert waiting_gauge(dlq_topic(broken.name)) == 0

    # A resolved dead letter is not redriven again; "all" finds nothing waiting.
    with pytest.raises(Conflict):
        await store.redrive(row["id"])
    assert await store.redrive_all() == []
    assert len(await read_records(broken.bootstrap, broken.topic, expect=3)) == 3
    assert await store.purge(status="resolved") == 1
    assert await store.query(DeadLetterQuery()) == ([], None)


async def test_reprocessing_from_an_offset_handles_each_event_once_more(
    groups: tuple[Group, Group], producer: AIOKafkaProducer
) -> None:
    _, group = groups
    ids = [new_id() for _ in range(3)]
    for n, event_id in enumerate(ids):
        sent = await send(producer, group.topic, event_id, f"v{n}")
    group.start()
    await wait_for(group.caught_up, timeout=30, what="three events handled")
    assert await group.effects_of() == ["v0", "v1", "v2"]

    async def plan() -> reprocess.ReprocessPlan:
        return await reprocess.plan_reprocess(
            group.bootstrap,
            group.db,
            group.tables.inbox,
            group=group.name,
            topics=[group.topic],
            from_offset=1,
            topic=group.topic,
            partition=sent.partition,
        )

    with pytest.raises(reprocess.GroupActive, match="is active"):
        await plan()
    await group.stop()

    async def inactive() -> bool:
        state, members = await reprocess.group_state(group.bootstrap, group.name)
        return state in reprocess.INACTIVE_STATES and members == 0

    await wait_for(inactive, timeout=30, what="the group to be empty")
    the_plan = await plan()
    [move] = the_plan.moves
    assert (move.committed, move.target, move.end) == (3, 1, 3) and the_plan.inbox_rows == 2
    assert await reprocess.apply_reprocess(group.bootstrap, group.db, group.tables.inbox, the_plan) == 2
    lags = {p.partition: p for p in await reprocess.lag(group.bootstrap, group.name, [group.topic])}
    lag = lags[sent.partition]
    assert (lag.committed, lag.end, lag.lag) == (1, 3, 2) and len(lags) == 3

    group.start()
    await wait_for(group.caught_up, timeout=30, what="the range handled again")
    assert await group.effects_of() == ["v0", "v1", "v2", "v1", "v2"]
    # Copies of the reprocessed events are duplicates again.
    for n, event_id in enumerate(ids):
        await send(producer, group.topic, event_id, f"v{n}")
    await wait_for(group.caught_up, timeout=30, what="the copies read")
    assert await group.effects_of() == ["v0", "v1", "v2", "v1", "v2"]
    assert group.calls == ["v0", "v1", "v2", "v1", "v2"]


async def test_reprocessing_from_a_time_takes_the_offsets_of_that_time(
    groups: tuple[Group, Group], producer: AIOKafkaProducer
) -> None:
    _, group = groups
    await send(producer, group.topic, new_id(), "before")
    later = await send(producer, group.topic, new_id(), "after")
    group.start()
    await wait_for(group.caught_up, timeout=30, what="both events handled")
    await group.stop()
    since = datetime.fromtimestamp(later.timestamp / 1000, UTC)
    # An inbox row from before the origin columns: matched by its time.
    async with group.db.transaction() as s:
        await s.execute(
            sa.insert(group.tables.inbox).values(
                consumer=group.name,
                event_id=new_id(),
                event_type=TYPE,
                processed_at=since + timedelta(seconds=1),
            )
        )
    the_plan = await reprocess.plan_reprocess(
        group.bootstrap, group.db, group.tables.inbox, group=group.name, topics=[group.topic], from_time=since
    )
    targets = {(m.topic, m.partition): m.target for m in the_plan.moves}
    assert targets[(group.topic, later.partition)] == later.offset == 1
    assert (the_plan.inbox_rows, the_plan.legacy_rows) == (1, 1)
    assert await reprocess.apply_reprocess(group.bootstrap, group.db, group.tables.inbox, the_plan) == 2
    group.start()
    await wait_for(group.caught_up, timeout=30, what="the later event handled again")
    assert await group.effects_of() == ["before", "after", "after"]


async def test_a_record_that_is_no_event_is_a_dead_letter_named_by_its_position(
    groups: tuple[Group, Group], producer: AIOKafkaProducer
) -> None:
    broken, _ = groups
    sent = await producer.send_and_wait(broken.topic, value=b"not json", key=b"k", headers=[("x", b"\xff")])
    broken.start()
    await wait_for(broken.caught_up, timeout=30, what="the group past the record")
    [row], _ = await broken.store().query(DeadLetterQuery())
    assert row["event_id"] == f"{broken.topic}/{sent.partition}/{sent.offset}"
    assert row["event_type"] is None and row["owner_nation"] is None and row["attempts"] == 1
    assert row["error"].startswith("InvalidEnvelope") and row["record_value"] == b"not json"
    assert row["headers"] == [{"name": "x", "base64": "/w=="}]
