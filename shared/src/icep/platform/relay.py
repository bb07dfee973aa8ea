"""The outbox relay: publishes what units of work wrote to the outbox (`icep.platform.outbox`).

The relay publishes the rows with an idempotent producer (`acks=all`) and marks a row sent only after the
broker acknowledged it. Per key (aggregate) the order holds: the rows of one key are sent one after another,
and a failure stops that key's later rows until the next round, while other keys go on. A round reads a
batch (one statement), hands all of it to the producer, waits once for the acknowledgements and marks the
sent rows in one statement; the next batch is read while those acknowledgements are awaited. The relay is
woken right after a commit (in every replica: `icep.platform.wakeups`) and also polls, to pick up what a
crash left behind. On PostgreSQL the outbox is cut into shards by the row's key, each published by one
replica (`icep.platform.shards`), so replicas share the work and a key's rows still go out in order. Sent
rows are purged after a retention period.

An operator may park a row that cannot be published (`icep.platform.outbox_admin`): the relay skips it.
Parking is the operator's explicit decision to let the key's later rows go on without it, so that key's
order is broken on purpose for that one row; retrying (or unparking) it puts it back in the queue.

How one key's rows are handed to the producer, with their spans, is in `icep.platform.relay_sends`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine, Sequence
from contextlib import suppress
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from opentelemetry.trace import Span
from prometheus_client import Counter, Gauge
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from icep.platform import events, faults
from icep.platform.aio import wait_event, within
from icep.platform.db import Database
from icep.platform.events import utcnow
from icep.platform.kafka import new_producer
from icep.platform.logs import kafka_client
from icep.platform.observe import set_leader
from icep.platform.relay_sends import _failed, _KeySends, _resume, _SendSpans
from icep.platform.shards import ShardLocks
from icep.platform.telemetry import (
    trace_headers_of,
)

log = logging.getLogger("icep.outbox")


RELAY_CLIENT = "outbox producer"


OUTBOX_PUBLISHED = Counter("icep_outbox_published_total", "Outbox rows published", ["service"])


OUTBOX_FAILURES = Counter("icep_outbox_publish_failures_total", "Failed publish attempts", ["service"])


OUTBOX_BLOCKED = Gauge(
    "icep_outbox_relay_blocked", "1 while the relay cannot publish (broker down, sends failing)", ["service"]
)


def publishable(outbox: sa.Table) -> sa.ColumnElement[bool]:
    """The rows the relay is to publish: not yet sent and not parked by an operator."""
    return sa.and_(outbox.c.sent_at.is_(None), outbox.c.parked_at.is_(None))


#: The outbox columns a send reads.
_SEND_COLUMNS = (
    "id",
    "topic",
    "key",
    "type",
    "source",
    "time",
    "nation",
    "releasable_to",
    "data",
    "traceparent",
    "tracestate",
    "attempts",
)


class OutboxRelay:
    def __init__(
        self,
        *,
        db: Database,
        outbox: sa.Table,
        service: str,
        bootstrap: str,
        batch_size: int = 1000,
        poll_seconds: float = 1.0,
        retention: timedelta = timedelta(hours=24),
        producer: AIOKafkaProducer | None = None,
        send_timeout: float = 10.0,
        shards: int = 16,
        rebalance_seconds: float = 1.0,
        producer_batch_bytes: int = 262144,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.service = service
        self.bootstrap = bootstrap
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.retention = retention
        self._producer = producer
        #: The producer's batch per partition: 16 KiB (aiokafka's default) holds some 25 outbox records, and
        #: a send waits whenever its partition's batch is full and the one before it still in flight.
        self.producer_batch_bytes = producer_batch_bytes
        self._wake = asyncio.Event()
        #: The shards of the outbox (by the row's key) this replica publishes (`icep.platform.shards`).
        self.leadership = ShardLocks(
            db,
            f"icep-outbox-{service}",
            shards=shards,
            rebalance_seconds=rebalance_seconds,
            service=service,
            role="outbox-relay",
        )
        self.active = False
        #: How long one round waits for a send's acknowledgement (and a producer's start) before it counts a
        #: failure and moves on: the relay never hangs for a whole broker outage.
        self.send_timeout = send_timeout
        #: Row id -> its send still waiting for the broker: a later round waits for that same send again
        #: instead of sending a second copy (an outage must not multiply the records on the topic).
        self._unacked: dict[str, asyncio.Future[Any]] = {}
        self.blocked = False
        #: Called after a round that marked rows sent (the backlog observer counts again).
        self.after_sent: list[Callable[[], None]] = []
        OUTBOX_BLOCKED.labels(service).set(0)
        OUTBOX_PUBLISHED.labels(service)  # exported from the start, so rates and alerts see a 0
        OUTBOX_FAILURES.labels(service)

    def wake(self) -> None:
        self._wake.set()

    async def _ensure_producer(self) -> AIOKafkaProducer:
        """The producer, started now if need be: one bounded try per round (the next round tries again)."""
        if self._producer is None:
            producer = new_producer(
                self.bootstrap, f"icep-{self.service}-relay", max_batch_size=self.producer_batch_bytes
            )
            # The tasks the producer starts log under the relay's client name, the same for every producer
            # made anew, so a broker outage is one warning and one recovery line for the relay.
            token = kafka_client.set(RELAY_CLIENT)
            try:
                await within(self.send_timeout, producer.start())
            except BaseException:
                with suppress(Exception):
                    await within(self.send_timeout, producer.stop())
                raise
            finally:
                kafka_client.reset(token)
            self._producer = producer
        return self._producer

    def mark_blocked(self, reason: str) -> None:
        """The relay cannot publish: say so once (log, gauge), not once per row per round."""
        if not self.blocked:
            self.blocked = True
            OUTBOX_BLOCKED.labels(self.service).set(1)
            log.warning(
                "outbox relay of %s is blocked (%s); events wait in the outbox until the broker takes them",
                self.service,
                reason,
            )

    def mark_unblocked(self) -> None:
        if self.blocked:
            self.blocked = False
            OUTBOX_BLOCKED.labels(self.service).set(0)
            log.info("outbox relay of %s is no longer blocked", self.service)

    def _forget_producer(self) -> None:
        """After a failed round of the loop: the next producer is a new one, and waits for nothing old."""
        for pending in self._unacked.values():
            pending.cancel()
        self._unacked.clear()

    async def run(self) -> None:
        """Publish until cancelled. Any failure (broker, database, lock) is logged and retried; the
        producer is made anew after a failure of the loop itself so a restart never reuses a stopped one."""
        try:
            while True:
                more = False
                try:
                    self.active = bool(await self.leadership.hold())
                    set_leader(self.service, "outbox-relay", self.active)
                    if self.active:
                        # Batch after batch for up to a rebalance period, then the shards are seen to.
                        more = await self.publish_once(more_for=self.leadership.rebalance_seconds)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("outbox relay round failed; retrying")
                    self.active = False
                    set_leader(self.service, "outbox-relay", False)
                if more:
                    continue
                # Also the rebalance's beat: a replica that died leaves shards to take over.
                await wait_event(self._wake, min(self.poll_seconds, self.leadership.rebalance_seconds))
                self._wake.clear()
        finally:
            set_leader(self.service, "outbox-relay", False)
            await self.leadership.release()
            self._forget_producer()
            producer, self._producer = self._producer, None
            if producer is not None:
                # Bounded: stopping flushes what waits for a broker that may be gone.
                with suppress(Exception):
                    await within(self.send_timeout, producer.stop())

    async def _read(self, conn: AsyncConnection, leave_out: Sequence[str] = ()) -> Sequence[Any]:
        """The next batch: only the columns a send needs, in publication order (`leave_out`: the rows of
        the batch whose acknowledgements are awaited meanwhile). Parked rows are left out altogether: a
        full batch of publishable rows still means "there may be more", and a parked row never blocks
        its key."""
        o = self.outbox
        query = sa.select(*(o.c[name] for name in _SEND_COLUMNS)).where(
            publishable(o), self.leadership.condition(o.c.key)
        )
        if leave_out:
            query = query.where(sa.not_(self._one_of(leave_out)))
        try:
            return (await conn.execute(query.order_by(o.c.position).limit(self.batch_size))).all()
        finally:
            # A read: end its transaction before the sends (SQLite, or a connection SQLAlchemy reconnected,
            # which is transactional again; nothing to end on PostgreSQL's `reading` connection).
            await conn.rollback()

    def _one_of(self, ids: Sequence[str]) -> sa.ColumnElement[bool]:
        """`id IN (...)` with the ids as ONE parameter (an array on PostgreSQL, a JSON array on SQLite),
        not one each: a batch's thousand parameters were rendered into the statement on every round."""
        column = self.outbox.c.id
        if self.db.is_postgres:
            # A subquery, not `= ANY(array)`: its NOT IN is hashed whatever plan the prepared statement
            # settles on (a generic plan scanned the array once per row).
            ids_array = sa.bindparam(None, list(ids), type_=postgresql.ARRAY(sa.String))
            return column.in_(sa.select(sa.func.unnest(ids_array)))
        values = sa.func.json_each(sa.bindparam(None, json.dumps(list(ids)), type_=sa.String))
        return column.in_(sa.select(sa.column("value")).select_from(values))

    async def publish_once(self, *, more_for: float = 0.0) -> bool:
        """Publish a batch of unsent rows. True when a full batch was read (there may be more).

        A round hands every row of the batch to the producer first (each key's rows in order, a key whose
        send has to wait for the producer's buffer waiting alone), then waits once for all the
        acknowledgements, bounded by `send_timeout`, and marks what the broker took in one statement.
        For up to `more_for` seconds, a full batch is followed by the next one, read while this one's
        acknowledgements are awaited (its rows left out); it is handed to the producer only once this
        batch is marked, and only if all of this batch went out, so a key's later rows never go before
        its earlier ones are acknowledged and marked. (The shards held do not change meanwhile: only
        `run` rebalances, between calls.)"""
        loop = asyncio.get_running_loop()
        until = loop.time() + more_for
        async with self.db.reading() as conn:
            rows = await self._read(conn)
            while True:
                await self._settle_late_acks({row.id for row in rows})
                if not rows:
                    return False
                try:
                    producer = await self._ensure_producer()
                except Exception as exc:
                    OUTBOX_FAILURES.labels(self.service).inc()
                    self.mark_blocked(f"the producer does not start: {type(exc).__name__}: {exc}")
                    return False
                keys = await self._hand_over_batch(producer, rows)
                full = len(rows) == self.batch_size
                following: asyncio.Future[Sequence[Any]] | None = None
                if full and loop.time() < until:
                    following = asyncio.ensure_future(self._read(conn, [row.id for row in rows]))
                try:
                    sent, failed = await self._acknowledged(keys)
                    faults.point("relay.after_publish")
                    if following is not None:
                        await asyncio.wait([following])  # the connection is free for the marks
                    await self._mark(conn, sent, failed)
                    self._count(sent, failed)
                    if failed:
                        return False  # back off until the next wake-up or poll instead of spinning
                    if len(sent) != len(rows):
                        # Some rows of a key waited behind an earlier send of theirs (acknowledged since):
                        # the next batch, read without them, holds that key's later rows, which must not
                        # go first. They are read again at once.
                        return True
                    if following is None:
                        return full
                    taken, following = following, None
                finally:
                    if following is not None:  # not taken (a failure, a cancellation, rows held back)
                        if not following.done():
                            following.cancel()
                            await asyncio.wait([following])  # the connection is closed after the read
                        if not following.cancelled():
                            following.exception()  # retrieved: neither the batch nor its failure is taken
                rows = taken.result()  # a failed read fails the call, after this batch is marked

    def _count(self, sent: list[str], failed: dict[str, str]) -> None:
        OUTBOX_PUBLISHED.labels(self.service).inc(len(sent))
        if sent:
            for hook in self.after_sent:
                hook()
        if failed:
            OUTBOX_FAILURES.labels(self.service).inc(len(failed))
            self.mark_blocked(next(iter(failed.values())))
        else:
            self.mark_unblocked()

    async def _mark(self, conn: AsyncConnection, sent: list[str], failed: dict[str, str]) -> None:
        """Mark the round's rows: the sent ones in one statement, each failure apart. On SQLite in one
        transaction; on PostgreSQL the connection is outside any transaction block (`Database.reading`),
        so each statement commits by itself, the sent rows' one without a BEGIN and a COMMIT round trip
        (a failure's count and error stand on their own: nothing is lost when one is written and the next
        is not)."""
        if not sent and not failed:
            return
        o = self.outbox
        if conn.dialect.name == "sqlite":
            await conn.exec_driver_sql("BEGIN IMMEDIATE")  # as `begin_write`: take the write lock first
        try:
            if sent:
                await conn.execute(
                    sa.update(o)
                    .where(self._one_of(sent))
                    .values(sent_at=utcnow(), attempts=o.c.attempts + 1, last_error=None)
                )
            for row_id, err in failed.items():
                await conn.execute(
                    sa.update(o)
                    .where(o.c.id == row_id)
                    .values(attempts=o.c.attempts + 1, last_error=err[:2000])
                )
        except BaseException:
            await conn.rollback()
            raise
        await conn.commit()

    async def _settle_late_acks(self, batch: set[str]) -> None:
        """Sends that timed out earlier and were acknowledged since, for rows no longer in the batch (an
        operator parked them meanwhile): the record is on Kafka, so the row is sent (and no longer parked),
        and a later retry cannot publish it a second time."""
        late: list[str] = []
        for row_id, pending in list(self._unacked.items()):
            if row_id in batch or not pending.done():
                continue
            del self._unacked[row_id]
            if not pending.cancelled() and pending.exception() is None:
                late.append(row_id)
        if late:
            async with self.db.transaction() as session:
                await session.execute(
                    sa.update(self.outbox)
                    .where(self.outbox.c.id.in_(late), self.outbox.c.sent_at.is_(None))
                    .values(sent_at=utcnow(), parked_at=None, parked_reason=None, last_error=None)
                )
            OUTBOX_PUBLISHED.labels(self.service).inc(len(late))

    async def _hand_over_batch(self, producer: AIOKafkaProducer, rows: Sequence[Any]) -> list[_KeySends]:
        """Hand a batch to the producer, each key's rows in order.

        Handing over seldom waits (only for a full buffer of a partition, or a topic's metadata while the
        broker is away), so a key is handed over right here, and only a key whose hand-over has to wait
        goes on as a task of its own, bounded by `send_timeout`, while the other keys go on: no task and
        no timer per key in the common case."""
        by_key: dict[str, list[Any]] = {}
        for row in rows:
            by_key.setdefault(row.key, []).append(row)
        spans = _SendSpans(self.bootstrap)
        deadline = asyncio.get_running_loop().time() + self.send_timeout
        keys: list[_KeySends] = []
        waiting: list[asyncio.Future[None]] = []
        started: list[Coroutine[Any, Any, None]] = []
        try:
            for key_rows in by_key.values():
                key = _KeySends()
                keys.append(key)
                handing_over = self._hand_over(producer, key_rows, spans, key)
                try:
                    blocked_on = handing_over.send(None)
                except StopIteration:
                    continue  # handed over without waiting
                started.append(handing_over)
                waiting.append(
                    asyncio.ensure_future(self._finish_hand_over(handing_over, blocked_on, key, deadline))
                )
            if waiting:
                await asyncio.gather(*waiting)
        except BaseException:
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
            for coroutine in started:
                coroutine.close()  # one whose task never ran (closing a finished one does nothing)
            raise
        return keys

    async def _acknowledged(self, keys: list[_KeySends]) -> tuple[list[str], dict[str, str]]:
        """(rows the broker acknowledged, row id -> error of each key's first failure), after one wait
        for the whole batch (the acknowledgements of a partition come in order), bounded like each send:
        a send still unacknowledged then stays in `_unacked` for the next round."""
        unacked = [ack for key in keys for _, ack, _ in key.sends if not ack.done()]
        if unacked:
            await asyncio.wait(unacked, timeout=self.send_timeout)
        sent: list[str] = []
        failed: dict[str, str] = {}
        for key in keys:
            failure = self._settle_key(key.sends, key.failure, sent)
            if failure is not None:
                failed[failure[0]] = failure[1]
        return sent, failed

    async def _finish_hand_over(
        self, handing_over: Coroutine[Any, Any, None], blocked_on: Any, key: _KeySends, deadline: float
    ) -> None:
        """The rest of a key's hand-over that had to wait (at most until `deadline`): a send the producer
        did not take by then fails, and ends the key's round."""
        try:
            async with asyncio.timeout_at(deadline):
                await _resume(handing_over, blocked_on)
        except TimeoutError:
            row, span = key.current
            timed_out = TimeoutError(f"the producer took no record within {self.send_timeout:g}s")
            if span is not None:
                _failed(span, timed_out)
            log.debug("publishing outbox row %s failed: %s", row.id, timed_out)  # see mark_blocked
            key.failure = (row.id, repr(timed_out))
        except BaseException as exc:  # a cancellation from outside: the row's span ends all the same
            _, span = key.current
            if span is not None:
                _failed(span, exc)
            raise

    def _settle_key(
        self,
        sends: list[tuple[str, asyncio.Future[Any], Span | None]],
        failure: tuple[str, str] | None,
        sent: list[str],
    ) -> tuple[str, str] | None:
        """Take one key's acknowledgements in order (appending its rows the broker took to `sent`). The
        first failure ends the key's round: the rows before it are sent, it and the rows after it are not
        marked sent. A later row's send still in flight (or acknowledged) stays in `_unacked`, so the next
        round waits for that same send instead of publishing a second copy."""
        for row_id, ack, sending in sends:
            if failure is not None:
                if sending is not None:
                    sending.end()  # sent after a row that failed: it is not marked sent this round
                if ack.done() and (ack.cancelled() or ack.exception() is not None):
                    self._unacked.pop(row_id, None)  # failed too: the next round sends it again
                continue
            if not ack.done():
                exc: BaseException = TimeoutError(
                    f"no acknowledgement from the broker within {self.send_timeout:g}s"
                )
            else:
                self._unacked.pop(row_id, None)  # settled
                if not ack.cancelled() and ack.exception() is None:
                    if sending is not None:
                        sent_to = ack.result()
                        sending.set_attribute("messaging.destination.partition.id", str(sent_to.partition))
                        sending.set_attribute("messaging.kafka.offset", sent_to.offset)
                        sending.end()
                    sent.append(row_id)
                    continue
                exc = asyncio.CancelledError() if ack.cancelled() else ack.exception()  # type: ignore[assignment]
            if sending is not None:
                _failed(sending, exc)
            log.debug("outbox row %s unacknowledged: %s", row_id, exc)  # see mark_blocked
            failure = (row_id, repr(exc))
        return failure

    async def _hand_over(
        self, producer: AIOKafkaProducer, rows: list[Any], spans: _SendSpans, key: _KeySends
    ) -> None:
        """Hand one key's rows to the producer in order, without waiting for each acknowledgement (the
        idempotent producer keeps a partition's order, its retries included). A send that fails ends the
        key's round; each acknowledgement's future is kept in `_unacked` until it is settled, so a later
        round waits for that send instead of sending a copy."""
        for row in rows:
            earlier = self._unacked.get(row.id)
            if earlier is not None and earlier.done() and (earlier.cancelled() or earlier.exception()):
                # That earlier send failed meanwhile: the row goes again now, in its place, before any
                # later row of its key (the failure was reported when it happened).
                del self._unacked[row.id]
                earlier = None
            if earlier is not None:
                # An earlier send of this row still waits for the broker (or was acknowledged since):
                # take that one (no new send, so no new span: a long outage does not make a trace per
                # blocked key per round).
                key.sends.append((row.id, earlier, None))
                if not earlier.done():
                    # Still in flight: no later row of the key is handed to the producer before it is
                    # acknowledged, so a send that fails late can never be overtaken by a newer row.
                    return
                continue
            span = spans.start(row)
            record_key, value, headers = events.encode(
                id=row.id,
                type=row.type,
                source=row.source,
                subject=row.key,
                time=row.time,
                nation=row.nation,
                releasable_to=row.releasable_to,
                data_json=row.data,
                # A span without a valid context (no tracer provider at all) has no trace context to send.
                trace_headers=trace_headers_of(span) if span.get_span_context().is_valid else None,
            )
            faults.point("relay.before_publish")
            key.current = (row, span)
            try:
                ack: asyncio.Future[Any] = await producer.send(
                    row.topic, value=value, key=record_key, headers=headers
                )
            except Exception as exc:
                _failed(span, exc)
                log.debug("publishing outbox row %s failed: %s", row.id, exc)  # see mark_blocked
                key.failure = (row.id, repr(exc))
                return
            self._unacked[row.id] = ack
            key.sends.append((row.id, ack, span))

    async def purge(self) -> int:
        """Delete rows sent before the retention period; unsent rows are never deleted. (The service's
        retention loop does this on schedule: `icep.platform.retention`.)"""
        from icep.platform.retention import purge_sent_outbox_rows

        return await purge_sent_outbox_rows(self.db, self.outbox, utcnow() - self.retention)
