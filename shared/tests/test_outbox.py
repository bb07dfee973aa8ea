"""The transactional outbox and its relay, against a real broker and a real database."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer

from icep.contracts import EventPayload, Releasability
from icep.platform.db import Database
from icep.platform.domain import Aggregate, DomainEvent
from icep.platform.events import OutgoingEvent, decode, utcnow
from icep.platform.kafka import new_producer
from icep.platform.outbox import UnitOfWork, UnitOfWorkFactory
from icep.platform.relay import OutboxRelay
from icep.platform.tables import PlatformTables
from icep.platform.testing import read_records, wait_for

T: PlatformTables


@pytest.fixture(autouse=True)
def _tables(tables: PlatformTables) -> None:
    global T
    T = tables


class CounterBumped(EventPayload):
    event_type: ClassVar[str] = "icep.test.counter.bumped.v1"
    aggregate: ClassVar[str] = "counter"

    n: int
    note: str = ""


def bump(key: str, n: int, note: str = "") -> OutgoingEvent:
    return OutgoingEvent(
        payload=CounterBumped(n=n, note=note), subject=key, releasability=Releasability(owner="DEU")
    )


async def unsent(db: Database) -> int:
    async with db.sessions() as s:
        return int(
            (await s.execute(sa.select(sa.func.count()).where(T.outbox.c.sent_at.is_(None)))).scalar_one()
        )


async def all_sent(db: Database) -> bool:
    return await unsent(db) == 0


def relay_for(db: Database, bootstrap: str, **kw: object) -> OutboxRelay:
    return OutboxRelay(db=db, outbox=T.outbox, service="test", bootstrap=bootstrap, **kw)  # type: ignore[arg-type]


async def test_events_commit_with_the_transaction_or_not_at_all(db: Database, topic: str) -> None:
    uow = UnitOfWorkFactory(db, T.outbox, "test", topic)
    async with uow() as tx:
        tx.publish(bump("a", 1))
    with pytest.raises(RuntimeError):
        async with uow() as tx:
            tx.publish(bump("a", 2))
            raise RuntimeError("the use case failed after raising its event")
    async with db.sessions() as s:
        rows = (await s.execute(sa.select(T.outbox.c.data))).scalars().all()
    assert [json.loads(r)["n"] for r in rows] == [1]


@dataclass(frozen=True, kw_only=True)
class Bumped(DomainEvent):
    by: int


@dataclass(frozen=True, kw_only=True)
class Quietly(DomainEvent):
    """A change that is the owner's business alone: recorded, published as nothing."""


@dataclass(frozen=True, kw_only=True)
class Counter(Aggregate):
    id: str
    n: int = 0
    owner: str = "DEU"

    def bump(self, by: int, now: datetime) -> Counter:
        return self.recorded(Bumped(by=by, at=now), n=self.n + by)

    def touch(self, now: datetime) -> Counter:
        return self.recorded(Quietly(at=now))


def counter_events(counter: Counter, event: DomainEvent) -> Iterable[OutgoingEvent]:
    """The `events.py` of this test's service."""
    if isinstance(event, Bumped):
        yield OutgoingEvent(
            payload=CounterBumped(n=counter.n, note=f"+{event.by}"),
            subject=counter.id,
            releasability=Releasability(owner=counter.owner),
            time=event.at,
        )


async def published_data(db: Database) -> list[dict[str, object]]:
    async with db.sessions() as s:
        rows = (await s.execute(sa.select(T.outbox.c.data).order_by(T.outbox.c.position))).scalars().all()
    return [json.loads(r) for r in rows]


async def test_aggregates_record_events_the_unit_of_work_maps_and_publishes_at_commit(
    db: Database, topic: str
) -> None:
    uow = UnitOfWorkFactory(db, T.outbox, "test", topic, counter_events)
    now = utcnow()
    counter = Counter(id="c1")
    async with uow() as tx:
        counter = counter.bump(2, now).touch(now).bump(3, now)
        tx.collect(counter)
        tx.collect(counter)  # collecting again publishes nothing twice
        counter = counter.bump(1, now)
        tx.collect(counter)  # only what was recorded since
    assert counter.n == 6 and len(counter.events) == 4
    assert Counter(id="c1", n=6) == counter  # recorded events are not part of the aggregate's value
    # The mapper saw the aggregate as collected: both first bumps carry n=5, the last n=6.
    assert [(d["n"], d["note"]) for d in await published_data(db)] == [(5, "+2"), (5, "+3"), (6, "+1")]

    with pytest.raises(RuntimeError, match="refused"):
        async with uow() as tx:
            tx.collect(Counter(id="c2").bump(9, now))
            raise RuntimeError("refused after the change")
    assert len(await published_data(db)) == 3  # a rolled-back change publishes nothing


def test_aggregates_changed_and_dropped_in_a_loop_each_publish_their_events(topic: str) -> None:
    """A batch job changes many aggregates in one unit of work and keeps none of them. Every event is
    published once: none is taken for an earlier one whose memory (and so whose `id`) it reuses."""
    published = OutgoingEvent(
        payload=CounterBumped(n=1), subject="c", releasability=Releasability(owner="DEU")
    )
    # The mapper allocates nothing, so the allocator hands a dropped event's memory to the next one.
    tx = UnitOfWork(None, T.outbox, "test", topic, lambda _counter, _event: (published,))  # type: ignore[arg-type]
    now = utcnow()
    for n in range(200):
        tx.collect(Counter(id=f"c{n}").bump(n, now))
    assert len(tx.published) == 200


async def test_a_service_without_a_mapper_cannot_drop_recorded_events(db: Database, topic: str) -> None:
    uow = UnitOfWorkFactory(db, T.outbox, "test", topic)
    with pytest.raises(RuntimeError, match="maps no domain events"):
        async with uow() as tx:
            tx.collect(Counter(id="c3").bump(1, utcnow()))
    assert await published_data(db) == []


async def test_relay_publishes_in_order_per_key_and_marks_sent(
    db: Database, topic: str, kafka_bootstrap: str
) -> None:
    uow = UnitOfWorkFactory(db, T.outbox, "test", topic)
    relay = relay_for(db, kafka_bootstrap, batch_size=7)
    uow.after_commit.append(relay.wake)
    for n in range(20):
        async with uow() as tx:
            tx.publish(bump(f"k{n % 4}", n))
    task = asyncio.create_task(relay.run())
    try:
        await wait_for(lambda: all_sent(db), timeout=30, what="all rows sent")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    records = await read_records(kafka_bootstrap, topic, expect=20)
    assert len(records) == 20
    by_key: dict[str, list[int]] = defaultdict(list)
    for r in records:
        event = decode(r.key, r.value, r.headers)
        by_key[event.subject].append(event.data["n"])
        assert r.key == event.subject.encode()
    assert dict(by_key) == {f"k{i}": list(range(i, 20, 4)) for i in range(4)}


async def test_failing_key_blocks_only_its_own_later_rows(
    db: Database, topic: str, kafka_bootstrap: str
) -> None:
    """A row the broker refuses (too large for this producer) fails; its key's next row waits for it,
    while other keys go on."""
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all", max_request_size=4096
    )
    await producer.start()
    relay = relay_for(db, kafka_bootstrap, producer=producer)
    uow = UnitOfWorkFactory(db, T.outbox, "test", topic)
    async with uow() as tx:
        tx.publish(bump("blocked", 1, note="x" * 8000))
        tx.publish(bump("blocked", 2))
        tx.publish(bump("free", 3))
    try:
        more = await relay.publish_once()
    finally:
        await producer.stop()
    assert more is False
    async with db.sessions() as s:
        state = {
            (row.key, json.loads(row.data)["n"]): (
                row.sent_at is not None,
                row.attempts,
                row.last_error is not None,
            )
            for row in (await s.execute(sa.select(T.outbox))).all()
        }
    assert state[("blocked", 1)] == (False, 1, True)
    assert state[("blocked", 2)] == (False, 0, False)  # never tried: it must not overtake n=1
    assert state[("free", 3)] == (True, 1, False)
    records = await read_records(kafka_bootstrap, topic)
    assert [decode(r.key, r.value, r.headers).data["n"] for r in records] == [3]


async def test_batch_after_batch_in_one_call_until_a_batch_fails(
    db: Database, topic: str, kafka_bootstrap: str
) -> None:
    """`publish_once(more_for=...)` goes on with the next batch (read while the acknowledgements of the
    one before were awaited) only after that one is marked and only if all of it went out: per-key order
    holds across batches, and a failing batch ends the call before the next batch is handed over."""
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all", max_request_size=4096
    )
    await producer.start()
    relay = relay_for(db, kafka_bootstrap, producer=producer, batch_size=2)
    uow = UnitOfWorkFactory(db, T.outbox, "test", topic)
    async with uow() as tx:
        for n in range(6):
            tx.publish(bump(f"k{n % 2}", n))
        tx.publish(bump("big", 6, note="x" * 8000))  # refused by this producer: its batch fails
        tx.publish(bump("k0", 7))
        tx.publish(bump("k1", 8))  # the next batch, read but never handed over
    try:
        assert await relay.publish_once(more_for=30) is False
    finally:
        await producer.stop()
    async with db.sessions() as s:
        state = {
            json.loads(row.data)["n"]: (row.sent_at is not None, row.attempts)
            for row in (await s.execute(sa.select(T.outbox))).all()
        }
    assert state == {**dict.fromkeys((0, 1, 2, 3, 4, 5, 7), (True, 1)), 6: (False, 1), 8: (False, 0)}
    records = await read_records(kafka_bootstrap, topic, expect=7)
    by_key: dict[str, list[int]] = defaultdict(list)
    for r in records:
        event = decode(r.key, r.value, r.headers)
        by_key[event.subject].append(event.data["n"])
    assert dict(by_key) == {"k0": [0, 2, 4, 7], "k1": [1, 3, 5]}


async def test_rows_held_behind_an_earlier_send_are_not_overtaken_by_the_next_batch(
    db: Database, topic: str, kafka_bootstrap: str
) -> None:
    """A key's rows that wait behind an earlier send of theirs still in flight are left out of the round;
    when that send is acknowledged during the round, the next batch (read without them, holding the
    key's later rows) must not go before them."""
    producer = new_producer(kafka_bootstrap, "test-relay")
    await producer.start()
    relay = relay_for(db, kafka_bootstrap, producer=producer, batch_size=3)
    uow = UnitOfWorkFactory(db, T.outbox, "test", topic)
    async with uow() as tx:
        for n in range(5):
            tx.publish(bump("k", n))
    async with db.sessions() as s:
        first = (await s.execute(sa.select(T.outbox.c.id).order_by(T.outbox.c.position))).scalars().first()
    assert first is not None
    # Row 0 was sent in an earlier round, whose acknowledgement is still awaited; it comes in this round.
    earlier: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    relay._unacked[first] = earlier
    asyncio.get_running_loop().call_later(0.05, earlier.set_result, None)
    try:
        await relay.publish_once(more_for=30)
        while await relay.publish_once(more_for=30):
            pass
    finally:
        await producer.stop()
    assert await all_sent(db)
    records = await read_records(kafka_bootstrap, topic, expect=4)
    assert [decode(r.key, r.value, r.headers).data["n"] for r in records] == [1, 2, 3, 4]


async def test_a_send_that_has_to_wait_holds_only_its_own_key(
    db: Database, topic: str, kafka_bootstrap: str
) -> None:
    """A send the producer cannot take (its topic's metadata never comes: the name is invalid) waits at
    most `send_timeout` and fails; its key's next row waits for it, while the other keys go on."""
    producer = new_producer(kafka_bootstrap, "test-relay")
    await producer.start()
    relay = relay_for(db, kafka_bootstrap, producer=producer, send_timeout=0.5)
    nowhere = UnitOfWorkFactory(db, T.outbox, "test", "icep.test.no such topic!")
    uow = UnitOfWorkFactory(db, T.outbox, "test", topic)
    async with nowhere() as tx:
        tx.publish(bump("stuck", 1))
    async with uow() as tx:
        tx.publish(bump("stuck", 2))
        tx.publish(bump("free", 3))
        tx.publish(bump("free", 4))
    try:
        more = await relay.publish_once()
    finally:
        await producer.stop()
    assert more is False
    async with db.sessions() as s:
        state = {
            json.loads(row.data)["n"]: (row.sent_at is not None, row.attempts, row.last_error or "")
            for row in (await s.execute(sa.select(T.outbox))).all()
        }
    assert state[1][:2] == (False, 1) and "took no record within 0.5s" in state[1][2]
    assert state[2] == (False, 0, "")  # never tried: it must not overtake n=1
    assert state[3] == (True, 1, "") and state[4] == (True, 1, "")
    records = await read_records(kafka_bootstrap, topic)
    assert [decode(r.key, r.value, r.headers).data["n"] for r in records] == [3, 4]


async def test_purge_deletes_only_sent_rows_past_retention(
    db: Database, topic: str, kafka_bootstrap: str
) -> None:
    uow = UnitOfWorkFactory(db, T.outbox, "test", topic)
    async with uow() as tx:
        tx.publish(bump("old", 1))
        tx.publish(bump("recent", 2))
        tx.publish(bump("unsent", 3))
    now = utcnow()
    async with db.transaction() as s:
        await s.execute(
            sa.update(T.outbox).where(T.outbox.c.key == "old").values(sent_at=now - timedelta(hours=30))
        )
        await s.execute(
            sa.update(T.outbox).where(T.outbox.c.key == "recent").values(sent_at=now - timedelta(hours=1))
        )
    relay = relay_for(db, kafka_bootstrap, retention=timedelta(hours=24))
    assert await relay.purge() == 1
    async with db.sessions() as s:
        keys = sorted((await s.execute(sa.select(T.outbox.c.key))).scalars().all())
    assert keys == ["recent", "unsent"]


async def test_relays_share_the_outbox_shards(db: Database, kafka_bootstrap: str) -> None:
    """PostgreSQL: each shard of the outbox is held by one relay (advisory locks); two relays split them,
    and the one left takes all of them when the other's session ends.

    SQLite is a file of one process, whose relay holds every shard.
    """
    first = relay_for(db, kafka_bootstrap, shards=8).leadership
    second = relay_for(db, kafka_bootstrap, shards=8).leadership
    everything = frozenset(range(8))
    try:
        assert await first.hold() == everything
        if not db.is_postgres:
            assert await second.hold() == everything
            return
        # The second joins: it may take its half only once the first lets go of it.
        assert await second.hold() == frozenset()
        evens, odds = await first.hold(force=True), await second.hold(force=True)
        assert evens | odds == everything and not evens & odds and len(evens) == len(odds) == 4
        assert await second.hold(force=True) == odds  # holding again changes nothing
        await first.release()
        assert await second.hold(force=True) == everything
    finally:
        await first.release()
        await second.release()


async def test_a_relay_publishes_only_its_shards(db: Database, topic: str, kafka_bootstrap: str) -> None:
    """Two relays on one PostgreSQL database: each key's rows are published by the relay holding the key's
    shard, so every row is published once and in order per key. (On SQLite the first relay, holding every
    shard, publishes all.)"""
    uow = UnitOfWorkFactory(db, T.outbox, "test", topic)
    relays = [relay_for(db, kafka_bootstrap, shards=8) for _ in range(2)]
    try:
        for relay in relays:
            await relay.leadership.hold()
        for relay in relays:
            await relay.leadership.hold(force=True)
        if db.is_postgres:
            assert relays[0].leadership.held.isdisjoint(relays[1].leadership.held)
            assert all(relay.leadership.held for relay in relays)
        for n in range(40):
            async with uow() as tx:
                tx.publish(bump(f"k{n % 10}", n))
        assert await relays[0].publish_once() is False
        if db.is_postgres:
            assert 0 < await unsent(db) < 40  # the other relay's keys wait for it
        assert await relays[1].publish_once() is False
        assert await all_sent(db)
        records = await read_records(kafka_bootstrap, topic, expect=40)
        by_key: dict[str, list[int]] = defaultdict(list)
        for r in records:
            event = decode(r.key, r.value, r.headers)
            by_key[event.subject].append(event.data["n"])
        assert by_key == {f"k{i}": list(range(i, 40, 10)) for i in range(10)}
    finally:
        for relay in relays:
            await relay.leadership.release()
            if relay._producer is not None:
                await relay._producer.stop()
