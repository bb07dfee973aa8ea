"""The relay's and the consumer's spans on real Kafka and a real database: the first try continues the
trace it came with; a re-send, a retry, a redelivery and a redriven record are new traces linked to it; a
batch's database work is under its spans."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import ClassVar

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy.ext.asyncio import AsyncSession

from icep.contracts import EventPayload, Releasability
from icep.platform import telemetry
from icep.platform.consumer import REDRIVE_HEADER, ConsumerRunner, RetryPolicy
from icep.platform.db import Database
from icep.platform.events import OutgoingEvent, ReceivedEvent, decode, encode
from icep.platform.ids import new_id
from icep.platform.kafka import dlq_topic, ensure_topics
from icep.platform.outbox import UnitOfWorkFactory
from icep.platform.relay import OutboxRelay
from icep.platform.tables import PlatformTables
from icep.platform.testing import read_records, recording_spans, wait_for


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    with recording_spans() as exporter:
        yield exporter


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


class Flaky:
    """A handler that fails the first try of each event whose value starts with `flaky`."""

    def __init__(self, effects: sa.Table) -> None:
        self.effects = effects
        self.failed: set[str] = set()
        self.handled: list[str] = []

    async def __call__(self, session: AsyncSession, event: ReceivedEvent) -> None:
        value = str(event.data["value"])
        if value.startswith("flaky") and event.id not in self.failed:
            self.failed.add(event.id)
            raise ValueError("first try fails")
        await session.execute(sa.insert(self.effects).values(event_id=event.id, value=value))
        self.handled.append(value)


async def send(
    producer: AIOKafkaProducer, topic: str, event_id: str, value: str, *, redrive: bool = False
) -> str:
    """Publish under a producer span (as the relay does); returns that span's trace id."""
    with telemetry.tracer("test").start_as_current_span(f"send {topic}", kind=SpanKind.PRODUCER) as span:
        key, body, headers = encode(
            id=event_id,
            type="icep.test.thing.done.v1",
            source="/icep/test",
            subject="thing-1",
            time=datetime.now(UTC),
            nation="DEU",
            releasable_to="DEU",
            data_json=f'{{"value": "{value}"}}',
            trace_headers=telemetry.current_trace_headers(),
        )
        if redrive:
            headers.append((REDRIVE_HEADER, b"operator"))
        await producer.send_and_wait(topic, value=body, key=key, headers=headers)
    return format(span.get_span_context().trace_id, "032x")


def hex_trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def process_spans(exported: InMemorySpanExporter, topic: str) -> list[ReadableSpan]:
    return [s for s in exported.get_finished_spans() if s.name == f"process {topic}"]


@pytest.fixture
async def runner(
    db: Database, tables: PlatformTables, effects_table: sa.Table, topic: str, kafka_bootstrap: str
) -> AsyncIterator[tuple[ConsumerRunner, Flaky]]:
    group = f"icep-test-{new_id()[-8:]}"
    await ensure_topics(kafka_bootstrap, [dlq_topic(group)], partitions=1, replication=1)
    handler = Flaky(effects_table)
    made = ConsumerRunner(
        db=db,
        inbox=tables.inbox,
        group=group,
        topics=[topic],
        handlers={"icep.test.thing.done.v1": handler},
        bootstrap=kafka_bootstrap,
        retry=RetryPolicy(max_attempts=3, backoff_seconds=0.01, backoff_max_seconds=0.05),
    )
    yield made, handler


async def test_retry_redelivery_and_redrive_are_new_traces_linked_to_the_original(
    exported: InMemorySpanExporter,
    runner: tuple[ConsumerRunner, Flaky],
    producer: AIOKafkaProducer,
    topic: str,
) -> None:
    consumer, handler = runner
    task = asyncio.create_task(consumer.run())
    try:
        # One record at a time, each handled before the next is sent: each is a batch of one.
        flaky_id = new_id()
        flaky_trace = await send(producer, topic, flaky_id, "flaky")
        await wait_for(lambda: handler.handled == ["flaky"], timeout=30, what="the retried event")
        await wait_for(lambda: len(process_spans(exported, topic)) >= 2, timeout=30, what="two tries")
        again_trace = await send(producer, topic, flaky_id, "flaky")  # the same event a second time
        await wait_for(lambda: len(process_spans(exported, topic)) >= 3, timeout=30, what="the duplicate")
        redriven_trace = await send(producer, topic, flaky_id, "flaky", redrive=True)
        await wait_for(
            lambda: len(process_spans(exported, topic)) >= 4, timeout=30, what="four process spans"
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    first, retry, duplicate, redriven = process_spans(exported, topic)[:4]
    # The first try continues the producer's trace, under its send span.
    assert hex_trace(first) == flaky_trace and first.parent is not None and first.kind is SpanKind.CONSUMER
    assert first.attributes is not None and first.attributes["icep.attempt"] == 1
    assert first.attributes["messaging.consumer.group.name"] == consumer.group
    assert first.attributes["messaging.operation.type"] == "process"
    assert first.attributes["messaging.message.id"] == flaky_id
    for span, reason, origin in (
        (retry, "retry", flaky_trace),
        (duplicate, "redelivery", again_trace),
        (redriven, "redrive", redriven_trace),
    ):
        assert span.parent is None and hex_trace(span) != origin, reason
        [link] = span.links
        assert format(link.context.trace_id, "032x") == origin
        assert link.attributes == {"icep.link.reason": reason}
    assert handler.handled == ["flaky"]  # the redelivery found its inbox row


async def test_a_batch_keeps_its_database_work_under_its_spans(
    exported: InMemorySpanExporter,
    runner: tuple[ConsumerRunner, Flaky],
    producer: AIOKafkaProducer,
    topic: str,
) -> None:
    consumer, handler = runner
    instrumentor = SQLAlchemyInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()  # instrumented by an earlier test, with another tracer provider
    instrumentor.instrument(engine=consumer.db.engine.sync_engine)
    try:
        await _batch(exported, consumer, handler, producer, topic)
    finally:
        instrumentor.uninstrument()


async def _batch(
    exported: InMemorySpanExporter,
    consumer: ConsumerRunner,
    handler: Flaky,
    producer: AIOKafkaProducer,
    topic: str,
) -> None:
    tables_inbox = consumer.inbox.name
    origins = [await send(producer, topic, new_id(), f"v{n}") for n in range(3)]
    task = asyncio.create_task(consumer.run())  # all three are there: one batch
    try:
        await wait_for(lambda: len(handler.handled) == 3, timeout=30, what="three events handled")
        await wait_for(lambda: len(process_spans(exported, topic)) >= 4, timeout=30, what="the batch's spans")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    spans = exported.get_finished_spans()
    [batch] = [
        s for s in process_spans(exported, topic) if "messaging.batch.message_count" in (s.attributes or {})
    ]
    assert batch.parent is None and batch.context is not None and batch.attributes is not None
    assert batch.attributes["messaging.batch.message_count"] == 3
    assert sorted(format(link.context.trace_id, "032x") for link in batch.links) == sorted(origins)
    records = [s for s in process_spans(exported, topic) if s is not batch]
    # Each event's processing continues its own producer's trace, and points to the batch.
    assert sorted(hex_trace(s) for s in records) == sorted(origins)
    assert all([link.context.span_id for link in s.links] == [batch.context.span_id] for s in records)

    def under(span: ReadableSpan) -> list[str]:
        assert span.context is not None
        return [
            # Stable conventions unless an earlier test in this process fixed the old ones (read once).
            str((q.attributes or {}).get("db.query.text") or (q.attributes or {}).get("db.statement", ""))
            for q in spans
            if q.kind is SpanKind.CLIENT and q.parent is not None and q.parent.span_id == span.context.span_id
        ]

    # The batch's inbox statement is under the batch span; each event's effects under its own span.
    assert any(tables_inbox in query for query in under(batch))
    assert all(any("effects" in query for query in under(s)) for s in records)
    # And no query of the consumer is a root span (which the platform's sampler would drop anyway).
    assert all(q.parent is not None for q in spans if q.kind is SpanKind.CLIENT)


class ThingDone(EventPayload):
    event_type: ClassVar[str] = "icep.test.thing.done.v1"
    aggregate: ClassVar[str] = "thing"

    value: str


async def test_the_relay_continues_the_request_trace_and_a_resend_is_a_new_linked_trace(
    exported: InMemorySpanExporter, db: Database, tables: PlatformTables, topic: str, kafka_bootstrap: str
) -> None:
    uow = UnitOfWorkFactory(db, tables.outbox, "test", topic)
    requests: dict[str, str] = {}
    for key in ("fresh", "failed-before"):
        with telemetry.tracer("test").start_as_current_span("POST /v1/things", kind=SpanKind.SERVER) as span:
            async with uow() as tx:
                tx.publish(
                    OutgoingEvent(
                        payload=ThingDone(value=key), subject=key, releasability=Releasability(owner="DEU")
                    )
                )
        requests[key] = format(span.get_span_context().span_id, "016x")
    # As if the relay had tried this row before and the broker had refused it.
    async with db.transaction() as session:
        await session.execute(
            sa.update(tables.outbox)
            .where(tables.outbox.c.key == "failed-before")
            .values(attempts=1, last_error="KafkaTimeoutError")
        )
    relay = OutboxRelay(db=db, outbox=tables.outbox, service="test", bootstrap=kafka_bootstrap)
    try:
        await relay.publish_once()
    finally:
        if relay._producer is not None:
            await relay._producer.stop()

    sends = {
        str((s.attributes or {})["messaging.kafka.message.key"]): s
        for s in exported.get_finished_spans()
        if s.name == f"send {topic}"
    }
    fresh, resent = sends["fresh"], sends["failed-before"]
    assert fresh.kind is SpanKind.PRODUCER and fresh.parent is not None
    assert format(fresh.parent.span_id, "016x") == requests["fresh"]
    host, _, port = kafka_bootstrap.split(",")[0].rpartition(":")
    attributes = dict(fresh.attributes or {})
    assert attributes["messaging.system"] == "kafka" and attributes["messaging.operation.type"] == "send"
    assert attributes["messaging.destination.name"] == topic
    assert (attributes["server.address"], attributes["server.port"]) == (host, int(port))
    assert str(attributes["messaging.destination.partition.id"]).isdigit()
    assert int(str(attributes["messaging.kafka.offset"])) >= 0
    assert resent.parent is None and (resent.attributes or {})["icep.attempt"] == 2
    [link] = resent.links
    assert format(link.context.span_id, "016x") == requests["failed-before"]
    assert link.attributes == {"icep.link.reason": "retry"}
    # The record carries the send span's context: its consumer continues the send span's trace.
    records = [
        decode(r.key, r.value, r.headers) for r in await read_records(kafka_bootstrap, topic, expect=2)
    ]
    by_key = {e.subject: e.header("traceparent") for e in records}
    for key, span in (("fresh", fresh), ("failed-before", resent)):
        assert span.context is not None
        assert by_key[key] is not None and by_key[key].split("-")[2] == format(span.context.span_id, "016x")
