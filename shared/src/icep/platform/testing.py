"""Test support shared by the platform's and the services' tests: real local servers, no mocks.

- `wait_for` polls a condition (tests never sleep for a fixed time);
- `WebhookReceiver` is a real HTTP server on 127.0.0.1 that records what partners would receive;
- `OtlpCollector` is a real OTLP/HTTP endpoint that decodes the spans the services export;
- `read_records` reads a topic from the beginning with a throwaway consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import inspect
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar, cast

T = TypeVar("T")


async def wait_for(
    condition: Callable[[], T | Awaitable[T]], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll until `condition()` is truthy and return its value; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return cast(T, value)
        last = value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or condition!r} (last: {last!r})"
            )
        await asyncio.sleep(interval)


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    #: The listen backlog: the default (5) resets connections when a dispatcher sends twenty at once.
    request_queue_size = 128


@dataclass
class WebhookReceiver:
    """A partner's webhook endpoint: records each request and answers with the next scripted status."""

    requests: list[ReceivedRequest] = field(default_factory=list)
    #: Statuses to answer with, in order; when empty, 204.
    script: list[int] = field(default_factory=list)
    retry_after: str | None = None
    #: What each answer with a body (not 204) carries; the dispatcher reads only the start of it.
    response_body: bytes = b""
    _server: _Server | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    status = receiver.script.pop(0) if receiver.script else 204
                    receiver.requests.append(
                        ReceivedRequest(
                            self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time()
                        )
                    )
                self.send_response(status)
                if receiver.retry_after and status in (429, 503):
                    self.send_header("Retry-After", receiver.retry_after)
                answer = receiver.response_body if status not in (204, 304) else b""
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                if answer:
                    # A client that stops reading early may close first: that is its right.
                    with contextlib.suppress(OSError):
                        self.wfile.write(answer)

            def log_message(self, *_args: Any) -> None:
                return

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook-receiver", daemon=True
        )
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks"

    def received(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self.requests)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@dataclass
class CollectedLink:
    trace_id: str
    span_id: str
    attributes: dict[str, Any]


@dataclass
class CollectedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    #: OTLP's `Span.SpanKind`: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    kind: int
    attributes: dict[str, Any]
    links: list[CollectedLink] = field(default_factory=list)


def _attributes(pairs: Any) -> dict[str, Any]:
    """OTLP key-values as plain Python values (lists for arrays)."""
    found: dict[str, Any] = {}
    for pair in pairs:
        found[pair.key] = _value(pair.value)
    return found


def _value(value: Any) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, which) if which else None


@dataclass
class OtlpCollector:
    """An OTLP/HTTP (protobuf) trace receiver: what an OpenTelemetry Collector would get."""

    spans: list[CollectedSpan] = field(default_factory=list)
    _server: _Server | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> OtlpCollector:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                found: list[CollectedSpan] = []
                for rs in request.resource_spans:
                    service = next(
                        (a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), ""
                    )
                    for ss in rs.scope_spans:
                        for span in ss.spans:
                            found.append(
                                CollectedSpan(
                                    service,
                                    span.name,
                                    span.trace_id.hex(),
                                    span.span_id.hex(),
                                    span.parent_span_id.hex(),
                                    span.kind,
                                    _attributes(span.attributes),
                                    [
                                        CollectedLink(
                                            link.trace_id.hex(),
                                            link.span_id.hex(),
                                            _attributes(link.attributes),
                                        )
                                        for link in span.links
                                    ],
                                )
                            )
                with collector._lock:
                    collector.spans.extend(found)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: Any) -> None:
                return

        self._server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="otlp-collector", daemon=True).start()
        return self

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def collected(self) -> list[CollectedSpan]:
        with self._lock:
            return list(self.spans)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@contextlib.contextmanager
def recording_spans() -> Iterator[Any]:
    """In-process tests: the global tracer provider is, for the block, one that records every span with
    the platform's sampler (`QuietSampler`) into the `InMemorySpanExporter` it yields."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON
    from opentelemetry.util._once import Once

    from icep.platform.telemetry import QuietSampler

    def install(provider: Any) -> None:
        # The global provider may be set once per process; tests swap it, as OpenTelemetry's own do.
        trace._TRACER_PROVIDER_SET_ONCE = Once()
        trace._TRACER_PROVIDER = None
        trace.set_tracer_provider(provider)

    previous = trace.get_tracer_provider()
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=QuietSampler(ALWAYS_ON))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    install(provider)
    try:
        yield exporter
    finally:
        if isinstance(previous, TracerProvider):
            install(previous)
        else:
            trace._TRACER_PROVIDER_SET_ONCE = Once()
            trace._TRACER_PROVIDER = None


async def read_records(bootstrap: str, topic: str, *, expect: int = 0, timeout: float = 30.0) -> list[Any]:
    """Every record of a topic, from the start of each partition to its end at the time of reading.

    Waits (up to `timeout`) until at least `expect` records are there. Reading to the end of every
    partition matters: records of other keys may sit on partitions a first fetch did not return.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    tps = [TopicPartition(topic, p["partition"]) for p in described.get("partitions", [])]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            records: list[Any] = []
            if tps:
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
                ends = await consumer.end_offsets(tps)
                pending = {tp for tp in tps if ends[tp] > 0}
                while pending and time.monotonic() < deadline:
                    batch = await consumer.getmany(*pending, timeout_ms=200)
                    for tp, recs in batch.items():
                        records.extend(r for r in recs if r.offset < ends[tp])
                    pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
            if len(records) >= expect or time.monotonic() >= deadline:
                return records
            await asyncio.sleep(0.1)
    finally:
        await consumer.stop()


async def consumer_caught_up(bootstrap: str, group: str, topic: str) -> bool:
    """True when the group has committed offsets up to the end of every partition of the topic."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    tps = [TopicPartition(topic, p["partition"]) for p in described.get("partitions", [])]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    for tp in tps:
        meta = committed.get(tp)
        position = meta.offset if meta is not None else 0
        if position < ends[tp]:
            return False
    return True
