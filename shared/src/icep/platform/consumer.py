"""The consumer runner: an idempotent consumer in a consumer group.

Each handled event runs in one transaction together with an inbox row `(consumer, event id)`; a
duplicate finds the row and is skipped. Offsets are committed only after that transaction committed. A
failing handler is retried with backoff; after the last try the record goes to `icep.dlq.<group>` with
the error, the attempt count and its origin in headers, is recorded in the service's `dead_letters` table
and logged once, and the partition moves on. A redriven record (`icep_redrive` header) that is handled
resolves its dead letter in the handling transaction (`icep.platform.operations.dead_letters`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.util.types import AttributeValue
from prometheus_client import Counter
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from icep.platform import faults
from icep.platform.db import Database, insert_ignore, insert_ignore_many
from icep.platform.events import InvalidEnvelope, ReceivedEvent, decode, utcnow
from icep.platform.kafka import dlq_topic, new_producer, start_with_retry
from icep.platform.operations import dead_letters as dead_letter_rows
from icep.platform.outbox import SESSION_KEY, UnitOfWorkFactory
from icep.platform.telemetry import (
    LinkReason,
    continued_or_linked_span,
    messaging_attributes,
    recording,
    span_context_from,
    tracer,
)

log = logging.getLogger("icep.consumer")

#: Set on a record an operator sent back from a dead-letter topic (its processing is a new, linked trace).
REDRIVE_HEADER = "icep_redrive"

Handler = Callable[[AsyncSession, ReceivedEvent], Awaitable[None]]

HANDLED = Counter("icep_consumer_handled_total", "Events handled", ["group", "outcome"])
HANDLER_FAILURES = Counter("icep_consumer_handler_failures_total", "Failed handler attempts", ["group"])
DEAD_LETTERS = Counter("icep_consumer_dead_letters_total", "Records sent to the dead-letter topic", ["group"])


def _replayed(event: ReceivedEvent) -> LinkReason | None:
    """ "redrive" for a dead letter sent back to its topic by an operator, else None."""
    return "redrive" if event.header(REDRIVE_HEADER) is not None else None


def _trace_headers(record: ConsumerRecord[bytes, bytes]) -> dict[str, str | None]:
    found = {k: v.decode(errors="replace") for k, v in (record.headers or ()) if v is not None}
    return {"traceparent": found.get("traceparent"), "tracestate": found.get("tracestate")}


def _in_batch() -> list[Link]:
    """A link to the batch span around the current event (see `ConsumerRunner._batch_span`)."""
    return [Link(trace.get_current_span().get_span_context(), {"icep.link.reason": "batch"})]


def is_transient(exc: BaseException) -> bool:
    """Errors of the infrastructure (database connection lost, timeouts), not of the event."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(
        exc, OperationalError | InterfaceError | DisconnectionError | ConnectionError | TimeoutError
    )


class _BatchFailed(Exception):
    def __init__(self, index: int, cause: Exception) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.index = index


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_seconds: float = 0.2
    backoff_max_seconds: float = 5.0

    def delay(self, attempt: int) -> float:
        return float(min(self.backoff_max_seconds, self.backoff_seconds * 2 ** (attempt - 1)))


class ConsumerRunner:
    def __init__(
        self,
        *,
        db: Database,
        inbox: sa.Table,
        group: str,
        topics: list[str],
        handlers: Mapping[str, Handler],
        bootstrap: str,
        retry: RetryPolicy | None = None,
        after_commit: Callable[[], None] | None = None,
        dead_letter_topic: str | None = None,
        uow: UnitOfWorkFactory | None = None,
        dead_letters: sa.Table | None = None,
        service: str | None = None,
        session_timeout_ms: int = 3000,
        heartbeat_interval_ms: int = 1000,
        group_instance_id: str | None = None,
    ) -> None:
        self.db = db
        #: How soon a killed member's partitions go to the others (`ServiceSettings.consumer_session_*`).
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.group_instance_id = group_instance_id
        self.inbox = inbox
        self.group = group
        self.topics = topics
        self.handlers = dict(handlers)
        self.bootstrap = bootstrap
        self.retry = retry or RetryPolicy()
        self.after_commit = after_commit
        self.dead_letter_topic = dead_letter_topic or dlq_topic(group)
        #: Lets handlers raise events in their transaction (`outbox.joined_unit_of_work`).
        self.uow = uow
        #: Where dead letters are recorded for operators (None: the Kafka topic only).
        self.dead_letters = dead_letters
        self.service = service or group
        self._origin_columns = "origin_topic" in inbox.c
        self.consumer: AIOKafkaConsumer | None = None
        self._dlq: AIOKafkaProducer | None = None

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            client_id=f"{self.group}-consumer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=200,
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            group_instance_id=self.group_instance_id,
            # A rebalance waits this long for the live members to rejoin (it was the old session timeout):
            # independent of how soon a dead member is noticed.
            rebalance_timeout_ms=max(10_000, self.session_timeout_ms),
        )
        await start_with_retry(consumer, f"consumer {self.group}")
        self.consumer = consumer
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=200)
                await self._process_poll(consumer, batches)
        finally:
            self.consumer = None
            await consumer.stop()
            # A supervised restart of run() must not reuse a stopped producer.
            dlq, self._dlq = self._dlq, None
            if dlq is not None:
                await dlq.stop()

    async def _process_poll(
        self, consumer: AIOKafkaConsumer, batches: Mapping[Any, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        """Handle what one poll brought, partition by partition, then commit all their offsets at once: one
        broker round trip per poll rather than one per partition's batch. A crash before the commit only
        redelivers records whose effects are committed with their inbox rows (skipped as duplicates)."""
        offsets: dict[Any, int] = {}
        for tp, records in batches.items():
            if not records:
                continue
            await self.process_batch(records)
            offsets[tp] = records[-1].offset + 1
        # A partition taken away by a rebalance meanwhile would fail the commit of every other one: its new
        # owner gets its records again (harmless: the inbox), the others are committed now.
        assigned = consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not offsets:
            return
        faults.point("consumer.before_commit")
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # A rebalance took a partition away: its new owner gets these records again, and the inbox
            # makes that harmless.
            log.warning("committing %s failed (%s); the records will come again", list(offsets), exc)

    async def process_batch(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Handle a partition's batch in one transaction when all of it goes well (one commit instead of
        one per event); otherwise roll it back and take the records one by one, with retries and dead
        letters. Either way each event's effects and its inbox row commit together."""
        failed_at = -1
        if len(records) > 1:
            try:
                # The batch's own work (the inbox statement, the commit) is under a span of a new trace,
                # linked to every record's context; each fresh event's handler is under a span continuing
                # its producer's trace. A duplicate (a redelivery) gets no span in its original trace.
                with self._batch_span(records):
                    outcomes = await self._handle_together(records)
            except _BatchFailed as failure:
                failed_at = failure.index
                log.info("batch of %d failed at %d (%s); one by one now", len(records), failed_at, failure)
            else:
                for outcome in outcomes:
                    HANDLED.labels(self.group, outcome).inc()
                if self.after_commit is not None and "handled" in outcomes:
                    self.after_commit()
                return
        for index, record in enumerate(records):
            # The record that failed inside the batch has had its first try.
            await self.process(record, tries_made=1 if index == failed_at else 0)

    async def _handle_together(self, records: list[ConsumerRecord[bytes, bytes]]) -> list[str]:
        """One transaction: one inbox statement for the batch, then each fresh event's handler."""
        events: list[ReceivedEvent] = []
        for index, record in enumerate(records):
            try:
                events.append(self._decode(record))
            except InvalidEnvelope as exc:
                raise _BatchFailed(index, exc) from exc
        outcomes: list[str] = []
        try:
            async with self.db.transaction() as session:
                session.info[SESSION_KEY] = self.uow
                wanted = {e.id: self._inbox_row(e) for e in events if self._handler_for(e)}
                fresh = await insert_ignore_many(session, self.inbox, list(wanted.values()), "event_id")
                for index, (record, event) in enumerate(zip(records, events, strict=True)):
                    handler = self._handler_for(event)
                    if handler is None:
                        outcomes.append("ignored")
                    elif event.id not in fresh:
                        # A redriven copy of an event handled meanwhile: its dead letter is settled too.
                        await self._resolve_redriven(session, event)
                        outcomes.append("duplicate")
                    else:
                        fresh.discard(event.id)  # a second copy in the same batch is a duplicate
                        try:
                            with self._span(
                                record, event, attempt=1, again=_replayed(event), links=_in_batch()
                            ):
                                faults.fail(f"consumer.fail:{event.type}")
                                await handler(session, event)
                                await self._resolve_redriven(session, event)
                        except Exception as exc:
                            raise _BatchFailed(index, exc) from exc
                        outcomes.append("handled")
        except _BatchFailed:
            raise
        except Exception as exc:  # the commit itself failed: no record had its try
            raise _BatchFailed(-1, exc) from exc
        return outcomes

    def _decode(self, record: ConsumerRecord[bytes, bytes]) -> ReceivedEvent:
        return decode(
            record.key,
            record.value,
            record.headers,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )

    def _handler_for(self, event: ReceivedEvent) -> Handler | None:
        redriven_for = event.header(dead_letter_rows.REDRIVE_GROUP_HEADER)
        if redriven_for is not None and redriven_for != self.group:
            return None  # another group's redriven dead letter: not this group's to handle again
        return self.handlers.get(event.type) or self.handlers.get("*")

    def _inbox_row(self, event: ReceivedEvent) -> dict[str, Any]:
        row: dict[str, Any] = {
            "consumer": self.group,
            "event_id": event.id,
            "event_type": event.type,
            "processed_at": utcnow(),
        }
        if self._origin_columns:  # where it was read: reprocessing from an offset starts there
            row |= {
                "origin_topic": event.topic,
                "origin_partition": event.partition,
                "origin_offset": event.offset,
            }
        return row

    async def _resolve_redriven(self, session: AsyncSession, event: ReceivedEvent) -> None:
        """A redriven record handled: its dead letter is resolved, in the inbox row's transaction."""
        if self.dead_letters is None:
            return
        dead_letter_id = event.header(dead_letter_rows.REDRIVE_HEADER)
        if dead_letter_id is not None:
            await dead_letter_rows.resolve(session, self.dead_letters, self.group, dead_letter_id)

    async def _mark_seen(self, session: AsyncSession, event: ReceivedEvent) -> bool:
        """The inbox row; False when this consumer has already handled the event."""
        return await insert_ignore(session, self.inbox, self._inbox_row(event))

    def _attributes(self, record: ConsumerRecord[bytes, bytes]) -> dict[str, AttributeValue]:
        return messaging_attributes(
            "process",
            topic=record.topic,
            bootstrap=self.bootstrap,
            partition=record.partition,
            group=self.group,
        )

    def _span(
        self,
        record: ConsumerRecord[bytes, bytes],
        event: ReceivedEvent,
        attempt: int,
        *,
        again: LinkReason | None,
        links: Sequence[Link] = (),
    ) -> AbstractContextManager[Span]:
        """The span of one try at one record: the first continues the producer's trace; a retry, a
        redelivery or a redriven dead letter (`again`) is a new trace linked to it."""
        key = record.key.decode(errors="replace") if record.key is not None else None
        return continued_or_linked_span(
            f"process {record.topic}",
            {"traceparent": event.header("traceparent"), "tracestate": event.header("tracestate")},
            again=again,
            kind=SpanKind.CONSUMER,
            attributes={
                **self._attributes(record),
                "messaging.message.id": event.id,
                "messaging.kafka.offset": record.offset,
                **({"messaging.kafka.message.key": key} if key is not None else {}),
                "cloudevents.event_type": event.type,
                "icep.attempt": attempt,
            },
            tracer_name="icep.consumer",
            links=links,
        )

    def _batch_span(self, records: list[ConsumerRecord[bytes, bytes]]) -> AbstractContextManager[Span]:
        links = [
            Link(found, {"icep.link.reason": "batch"})
            for found in (span_context_from(_trace_headers(record)) for record in records)
            if found is not None
        ]
        return tracer("icep.consumer").start_as_current_span(
            f"process {records[0].topic}",
            context=otel_context.Context(),
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={**self._attributes(records[0]), "messaging.batch.message_count": len(records)},
        )

    async def _seen(self, event: ReceivedEvent) -> bool:
        """Whether this consumer has handled the event already (a redelivery), before its span starts: a
        redelivery is a new trace, not a second processing in the original one. Unsure is "no"."""
        try:
            async with self.db.sessions() as session:
                found = await session.execute(
                    sa.select(sa.literal(1))
                    .select_from(self.inbox)
                    .where(self.inbox.c.consumer == self.group, self.inbox.c.event_id == event.id)
                )
                return found.first() is not None
        except Exception:
            return False

    async def process(self, record: ConsumerRecord[bytes, bytes], tries_made: int = 0) -> str:
        """Handle one record to the end: 'handled', 'duplicate', 'ignored' or 'dead-lettered'."""
        try:
            event = self._decode(record)
        except InvalidEnvelope as exc:
            await self._dead_letter(record, exc, attempts=1)
            return "dead-lettered"
        handler = self._handler_for(event)
        if handler is None:
            HANDLED.labels(self.group, "ignored").inc()
            return "ignored"
        attempt = tries_made
        outage = 0
        again = _replayed(event)
        if again is None and tries_made:
            again = "retry"
        elif again is None and recording() and await self._seen(event):
            # Only the trace differs for a redelivery (a new one, linked), and only a recorded trace shows
            # it: without an exporter the read is skipped (the inbox still stops a duplicate).
            again = "redelivery"
        while True:
            attempt += 1
            with self._span(record, event, attempt, again=again) as span:
                again = again or "retry"  # any further try is a new trace
                try:
                    outcome = await self._handle_once(handler, event)
                except Exception as exc:
                    span.record_exception(exc)
                    span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
                    HANDLER_FAILURES.labels(self.group).inc()
                    if is_transient(exc):
                        # The database is unreachable: no fault of this event, so it is not counted
                        # against it and never dead-lettered; the partition waits (order is kept).
                        attempt -= 1
                        outage += 1
                        log.warning("database unavailable while handling %s (%s); waiting", event.id, exc)
                        await asyncio.sleep(self.retry.delay(min(outage, 8)))
                        continue
                    if attempt >= self.retry.max_attempts:
                        await self._dead_letter(record, exc, attempts=attempt, event=event)
                        return "dead-lettered"
                    log.warning("handler for %s failed (attempt %d): %s", event.id, attempt, exc)
                else:
                    HANDLED.labels(self.group, outcome).inc()
                    return outcome
            await asyncio.sleep(self.retry.delay(attempt))

    async def _handle_once(self, handler: Handler, event: ReceivedEvent) -> str:
        async with self.db.transaction() as session:
            session.info[SESSION_KEY] = self.uow
            fresh = await self._mark_seen(session, event)
            if not fresh:
                await self._resolve_redriven(session, event)  # a redriven copy of an event handled since
                return "duplicate"
            faults.fail(f"consumer.fail:{event.type}")
            await handler(session, event)
            await self._resolve_redriven(session, event)
        if self.after_commit is not None:
            self.after_commit()
        return "handled"

    async def _dead_letter(
        self,
        record: ConsumerRecord[bytes, bytes],
        exc: BaseException,
        attempts: int,
        event: ReceivedEvent | None = None,
    ) -> None:
        """Send the record to the dead-letter topic (the durable copy), record it in `dead_letters`, log
        it once; only then may the offset move on."""
        if self._dlq is None:
            self._dlq = new_producer(self.bootstrap, f"{self.group}-dlq")
            await start_with_retry(self._dlq, "dead-letter producer")
        own_headers = dead_letter_rows.kept_headers(record.headers)
        reason = f"{type(exc).__name__}: {exc}"[:4000]
        headers: list[tuple[str, bytes]] = [
            (k, v) for k, v in (record.headers or ()) if not k.startswith("icep_dlq_")
        ]
        headers += [
            ("icep_dlq_error", reason.encode()),
            ("icep_dlq_attempts", str(attempts).encode()),
            ("icep_dlq_origin_topic", record.topic.encode()),
            ("icep_dlq_origin_partition", str(record.partition).encode()),
            ("icep_dlq_origin_offset", str(record.offset).encode()),
            ("icep_dlq_group", self.group.encode()),
            ("icep_dlq_time", utcnow().isoformat().encode()),
        ]
        # Until the dead letter is safely stored the offset must not move on, so this waits for the ack.
        sent = await self._dlq.send_and_wait(
            self.dead_letter_topic, value=record.value, key=record.key, headers=headers
        )
        DEAD_LETTERS.labels(self.group).inc()
        event_id = event.id if event else dead_letter_rows.header(own_headers, "ce_id")
        event_type = event.type if event else dead_letter_rows.header(own_headers, "ce_type")
        if self.dead_letters is not None:
            await self._record_dead_letter(
                record,
                sent_to=dead_letter_rows.Origin(sent.topic, sent.partition, sent.offset),
                event_id=event_id or f"{record.topic}/{record.partition}/{record.offset}",
                event_type=event_type,
                owner_nation=event.nation if event else dead_letter_rows.header(own_headers, "ce_nation"),
                headers=own_headers,
                reason=reason,
                attempts=attempts,
            )
        log.error(
            "dead-lettered event %s (%s) from %s[%d]@%d after %d attempts: %s",
            event_id,
            event_type,
            record.topic,
            record.partition,
            record.offset,
            attempts,
            reason,
            extra={
                "event_id": event_id,
                "event_type": event_type,
                "consumer_group": self.group,
                "origin": f"{record.topic}/{record.partition}/{record.offset}",
                "dead_letter_topic": self.dead_letter_topic,
                "reason": reason,
            },
        )

    async def _record_dead_letter(
        self,
        record: ConsumerRecord[bytes, bytes],
        *,
        sent_to: dead_letter_rows.Origin,
        event_id: str,
        event_type: str | None,
        owner_nation: str | None,
        headers: list[tuple[str, bytes]],
        reason: str,
        attempts: int,
    ) -> None:
        """The row operators list and redrive; waits out a database outage (the record is on the DLQ
        topic already, and the offset must not move before the row exists)."""
        assert self.dead_letters is not None
        outage = 0
        while True:
            try:
                async with self.db.transaction() as session:
                    await dead_letter_rows.record(
                        session,
                        self.dead_letters,
                        group=self.group,
                        event_id=event_id[:300],
                        event_type=event_type[:200] if event_type else None,
                        owner_nation=owner_nation[:8] if owner_nation else None,
                        origin=dead_letter_rows.Origin(record.topic, record.partition, record.offset),
                        dead_letter=sent_to,
                        key=record.key,
                        value=record.value,
                        headers=headers,
                        error=reason,
                        attempts=attempts,
                    )
                break
            except Exception as exc:
                if not is_transient(exc):
                    # Never a reason to stop the partition: the record is safe on the dead-letter topic.
                    log.exception(
                        "could not record dead letter %s (it is on %s at %d)",
                        event_id,
                        sent_to.topic,
                        sent_to.offset,
                    )
                    return
                outage += 1
                log.warning(
                    "database unavailable while recording dead letter %s (%s); waiting", event_id, exc
                )
                await asyncio.sleep(self.retry.delay(min(outage, 8)))
        try:
            await dead_letter_rows.refresh_gauge(
                self.db, self.dead_letters, self.service, [self.dead_letter_topic]
            )
        except Exception as exc:  # only the gauge: the loop in the service refreshes it again
            log.warning("could not count the dead letters waiting (%s)", exc)
