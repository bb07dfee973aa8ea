"""OpenTelemetry tracing and JSON logs, set up once per process.

Tracing is configured by the standard `OTEL_*` variables (see docs/operations/tracing.md):

- `OTEL_TRACES_EXPORTER` (`otlp`, `console`, `none`; unset: `otlp` when an OTLP endpoint is set, else
  `none`) and `OTEL_EXPORTER_OTLP_*` for where spans go; `OTEL_TRACES_SAMPLER`/`_ARG` for how many.
- Without an exporter no span records anything (`ALWAYS_OFF`), but W3C trace context is still made and
  propagated, so outbox rows, events and webhooks still carry a trace id.
- A database query or HTTP call outside any trace (a background poll that found nothing) is never
  recorded (`QuietSampler`): only work that found something starts a trace, explicitly.
- Retries, redeliveries and replays start a new trace linked to the original (`linked_root_span`).

Logs are JSON lines carrying `trace_id` and `span_id`, so a log line leads to its trace.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Literal

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, StatusCode, TraceState
from opentelemetry.util.types import Attributes, AttributeValue
from pythonjsonlogger.json import JsonFormatter
from yarl import URL

log = logging.getLogger("icep.telemetry")

_configured_service: str | None = None


class _TraceContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            record.trace_id = format(ctx.trace_id, "032x")
            record.span_id = format(ctx.span_id, "016x")
        return True


def setup_logging(service: str, level: str = "INFO") -> None:
    """JSON lines on stderr: UTC times with offset, the trace and the request id they were written in, a
    broker outage collapsed per Kafka client (see `icep.platform.logs` and docs/operations/logs.md)."""
    from icep.platform import logs

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logs.utc_times(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                static_fields={"service": service},
            )
        )
    )
    handler.addFilter(_TraceContextFilter())
    handler.addFilter(logs.RequestContextFilter())
    handler.addFilter(logs.KafkaOutageFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The outage filter learns from aiokafka's per-request DEBUG line that a client talks to the broker
    # again; it drops those lines itself.
    logging.getLogger("aiokafka.conn").setLevel(logging.DEBUG)


#: Stable semantic conventions for HTTP and database spans unless the operator chose otherwise. Read once
#: by the instrumentations when the first of them is set up, so it is set before any of them.
SEMCONV_DEFAULT = "http,database"


def _stable_semconv_by_default() -> None:
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", SEMCONV_DEFAULT)


class QuietSampler(Sampler):
    """Drops the root spans of instrumented clients (database queries, outgoing HTTP): a poll that found
    nothing to do is then no trace at all, while the same query inside a request or a message's processing
    is recorded under it. Everything else is decided by the configured sampler (`OTEL_TRACES_SAMPLER`)."""

    def __init__(self, delegate: Sampler) -> None:
        self.delegate = delegate

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if kind == SpanKind.CLIENT and not parent.is_valid:
            return SamplingResult(Decision.DROP, None, None)
        return self.delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"QuietSampler{{{self.delegate.get_description()}}}"


def _configured_exporters() -> list[SpanExporter]:
    """The exporters `OTEL_TRACES_EXPORTER` names. Unset, spans go over OTLP only when an OTLP endpoint
    is configured: a process started without any tracing setting records nothing."""
    names = [n.strip().lower() for n in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names:
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        )
        names = ["otlp"] if endpoint else []
    if "none" in names:
        return []
    exporters: list[SpanExporter] = []
    for name in dict.fromkeys(names):
        if name == "otlp":
            exporters.append(_otlp_exporter())
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        else:
            log.warning("OTEL_TRACES_EXPORTER names %r, which is not available here; ignored", name)
    return exporters


def _otlp_exporter() -> SpanExporter:
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol != "http/protobuf":
        log.warning("OTLP protocol %r is not installed; spans are sent as http/protobuf", protocol)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def setup_tracing(service: str) -> TracerProvider:
    """Install the process's tracer provider (once; a second call returns the first)."""
    global _configured_service
    _stable_semconv_by_default()
    current = trace.get_tracer_provider()
    if _configured_service is not None and isinstance(current, TracerProvider):
        return current
    provider = make_tracer_provider(service)
    trace.set_tracer_provider(provider)
    _configured_service = service
    return provider


def make_tracer_provider(service: str, exporters: list[SpanExporter] | None = None) -> TracerProvider:
    """A tracer provider from the `OTEL_*` variables (or with the given exporters)."""
    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME", f"icep-{service}"), "service.namespace": "icep"}
    )
    exporters = _configured_exporters() if exporters is None else exporters
    if exporters:
        # The sampler of OTEL_TRACES_SAMPLER/_ARG (parent-based always-on when unset), as the SDK reads it.
        configured = TracerProvider(resource=resource, shutdown_on_exit=False).sampler
        sampler: Sampler = QuietSampler(configured)
    else:
        # Nothing would receive the spans: record none, but still make and pass on trace context.
        sampler = ALWAYS_OFF
    provider = TracerProvider(resource=resource, sampler=sampler)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def shutdown_tracing() -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush(5000)


#: Tracer name -> (the provider it came from, the tracer): `get_tracer` makes a new tracer (and its
#: instrumentation scope) on every call, a measurable cost per webhook and per message.
_TRACERS: dict[str, tuple[object, trace.Tracer]] = {}


def tracer(name: str = "icep") -> trace.Tracer:
    provider = trace.get_tracer_provider()
    cached = _TRACERS.get(name)
    if cached is not None and cached[0] is provider:
        return cached[1]
    made = provider.get_tracer(name)
    _TRACERS[name] = (provider, made)
    return made


def current_trace_headers() -> dict[str, str]:
    """The W3C trace context of the current span, to store with an outbox row or send on."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from(carrier: Mapping[str, str | None]) -> otel_context.Context:
    clean = {k: v for k, v in carrier.items() if v}
    return propagate.extract(clean)


def span_context_from(carrier: Mapping[str, str | None]) -> SpanContext | None:
    """The span context a carrier (`traceparent`/`tracestate`) names, or None when it names none."""
    found = trace.get_current_span(context_from(carrier)).get_span_context()
    return found if found.is_valid else None


#: Why a span is a new trace rather than the continuation of its origin (the link's `icep.link.reason`).
LinkReason = Literal["retry", "redelivery", "redrive", "replay", "batch", "partner", "origin"]


def linked_root_span(
    name: str,
    carrier: Mapping[str, str | None],
    *,
    reason: LinkReason,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Attributes = None,
    tracer_name: str = "icep",
    links: Sequence[Link] = (),
) -> AbstractContextManager[Span]:
    """Start (as current) a span that begins a NEW trace, linked to the context in `carrier`.

    For work that happens again (a retry, a redelivered or redriven record, a replay): the original trace
    stays as it was, and the new one points back to it instead of growing it for minutes or days.
    """
    origin = span_context_from(carrier)
    origin_links = [Link(origin, {"icep.link.reason": reason})] if origin is not None else []
    return tracer(tracer_name).start_as_current_span(
        name, context=otel_context.Context(), kind=kind, attributes=attributes, links=[*origin_links, *links]
    )


def continued_or_linked_span(
    name: str,
    carrier: Mapping[str, str | None],
    *,
    again: LinkReason | None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Attributes = None,
    tracer_name: str = "icep",
    links: Sequence[Link] = (),
) -> AbstractContextManager[Span]:
    """The span of one attempt at work that came with a trace context: the first attempt continues that
    trace; a later one (`again` says why) is a new trace linked to it (`linked_root_span`)."""
    if again is not None:
        return linked_root_span(
            name,
            carrier,
            reason=again,
            kind=kind,
            attributes=attributes,
            tracer_name=tracer_name,
            links=links,
        )
    return tracer(tracer_name).start_as_current_span(
        name, context=context_from(carrier), kind=kind, attributes=attributes, links=links
    )


def start_continued_or_linked_span(
    name: str,
    carrier: Mapping[str, str | None],
    *,
    again: LinkReason | None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Attributes = None,
    tracer_name: str = "icep",
) -> Span:
    """`continued_or_linked_span`, started but not made current: for work that overlaps other work of
    its kind in one task (the relay's pipelined sends), ended by the caller (`span.end()`). Its context
    to pass on: `trace_headers_of(span)`."""
    if again is not None:
        origin = span_context_from(carrier)
        links = [Link(origin, {"icep.link.reason": again})] if origin is not None else []
        return tracer(tracer_name).start_span(
            name, context=otel_context.Context(), kind=kind, attributes=attributes, links=links
        )
    return tracer(tracer_name).start_span(
        name, context=context_from(carrier), kind=kind, attributes=attributes
    )


def trace_headers_of(span: Span) -> dict[str, str]:
    """The W3C trace context of `span` (current or not), to send on."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def server_address(bootstrap: str) -> tuple[str, int | None]:
    """`server.address` and `server.port` of the first bootstrap broker (`host:port,...`)."""
    first = bootstrap.split(",", 1)[0].strip()
    if "://" in first:
        first = first.split("://", 1)[1]
    host, sep, port = first.rpartition(":")
    if not sep:
        return first, None
    host = host.strip("[]")
    return host, int(port) if port.isdigit() else None


def messaging_attributes(
    operation: Literal["send", "process"],
    *,
    topic: str,
    bootstrap: str,
    message_id: str | None = None,
    key: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    group: str | None = None,
    batch_size: int | None = None,
) -> dict[str, AttributeValue]:
    """Span attributes of a Kafka send or process span, by the messaging semantic conventions."""
    host, port = server_address(bootstrap)
    attributes: dict[str, AttributeValue] = {
        "messaging.system": "kafka",
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": topic,
        "server.address": host,
    }
    optional: dict[str, AttributeValue | None] = {
        "server.port": port,
        "messaging.message.id": message_id,
        "messaging.kafka.message.key": key,
        "messaging.destination.partition.id": None if partition is None else str(partition),
        "messaging.kafka.offset": offset,
        "messaging.consumer.group.name": group,
        "messaging.batch.message_count": batch_size,
    }
    attributes.update({k: v for k, v in optional.items() if v is not None})
    return attributes


#: Where the edge keeps a caller's own trace context (its `traceparent`), to link to it: never a parent.
PARTNER_CONTEXT = "icep.partner_trace_context"
#: Request headers of a caller's trace context; at the public edge they are taken off the request.
TRACE_CONTEXT_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage"})


class PublicEdgeTracing:
    """ASGI middleware for the public edge, outside the tracing middleware: a partner's `traceparent`,
    `tracestate` and `baggage` are taken off the request, so the edge's server span starts a trace of the
    platform's own (with the platform's sampling) and nothing of the partner's context is passed upstream.
    The partner's context is kept in the scope; the server span records it as a link (`_link_partner`)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") in ("http", "websocket"):
            headers = scope.get("headers") or []
            carried = {
                k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k in TRACE_CONTEXT_HEADERS
            }
            if carried:
                scope["headers"] = [(k, v) for k, v in headers if k not in TRACE_CONTEXT_HEADERS]
                partner = span_context_from(
                    {"traceparent": carried.get("traceparent"), "tracestate": carried.get("tracestate")}
                )
                if partner is not None:
                    scope[PARTNER_CONTEXT] = partner
        await self.app(scope, receive, send)


def _link_partner(span: Span, scope: dict[str, Any]) -> None:
    partner = scope.get(PARTNER_CONTEXT)
    if isinstance(partner, SpanContext) and span.is_recording():
        span.add_link(partner, {"icep.link.reason": "partner"})


def public_edge(app: Any) -> None:
    """Make an instrumented FastAPI app a public edge (`PublicEdgeTracing` around everything)."""
    inner = app.build_middleware_stack

    def build_middleware_stack() -> Any:
        return PublicEdgeTracing(inner())

    app.build_middleware_stack = build_middleware_stack


def instrument_app(app: Any) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    _stable_semconv_by_default()
    # No span per ASGI `receive`/`send` message: two or more spans per request that say nothing the
    # server span does not.
    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls="healthz,readyz,metrics",
        server_request_hook=_link_partner,
        exclude_spans=["receive", "send"],
    )


def instrument_httpx() -> None:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    _stable_semconv_by_default()
    inst = HTTPXClientInstrumentor()
    if not inst.is_instrumented_by_opentelemetry:
        inst.instrument()


class HttpClientCall:
    """The CLIENT span of one outgoing HTTP request (stable conventions), told how the request ended."""

    __slots__ = ("span",)

    def __init__(self, span: Span) -> None:
        self.span = span

    def answered(self, status: int) -> None:
        if self.span.is_recording():
            self.span.set_attribute("http.response.status_code", status)
            if status >= 400:
                self.span.set_attribute("error.type", str(status))
                self.span.set_status(StatusCode.ERROR)

    def failed(self, exc: BaseException) -> None:
        if self.span.is_recording():
            self.span.set_attribute("error.type", type(exc).__qualname__)
            self.span.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:200])


def _redacted(url: str) -> tuple[str, str | None, int | None]:
    """`url.full` without credentials or query values (a webhook URL may carry a secret in either), and
    the server's address and port."""
    try:
        parsed = URL(url)
        safe = parsed.with_user(None).with_query(dict.fromkeys(parsed.query, "REDACTED"))
        return str(safe), parsed.host, parsed.port
    except (ValueError, TypeError):
        return "", None, None


@contextmanager
def http_client_call(method: str, url: str, headers: MutableMapping[str, str]) -> Iterator[HttpClientCall]:
    """A CLIENT span for one outgoing request made with a client no instrumentation knows (aiohttp), with
    the trace context put into `headers`. Without an exporter no span is made, and the current context is
    still passed on, as the instrumented clients do."""
    if not recording():
        propagate.inject(headers)
        yield HttpClientCall(trace.INVALID_SPAN)
        return
    full, host, port = _redacted(url)
    attributes: dict[str, AttributeValue] = {"http.request.method": method, "url.full": full}
    if host is not None:
        attributes["server.address"] = host
    if port is not None:
        attributes["server.port"] = port
    with tracer("icep.http").start_as_current_span(
        method,
        kind=SpanKind.CLIENT,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        propagate.inject(headers)
        call = HttpClientCall(span)
        try:
            yield call
        except BaseException as exc:  # also the cancellation a timeout around the call arrives as
            call.failed(exc)
            raise


def recording() -> bool:
    """Whether spans of this process can record at all: False without an exporter (`ALWAYS_OFF`)."""
    provider = trace.get_tracer_provider()
    return not (isinstance(provider, TracerProvider) and provider.sampler is ALWAYS_OFF)


def instrument_engine(engine: Any) -> None:
    """Spans for the engine's queries, when spans record at all: without an exporter a query span would
    be made and thrown away for every statement (and nothing propagates from a query), so the engine is
    left uninstrumented."""
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    if not recording():
        return

    _stable_semconv_by_default()
    SQLAlchemyInstrumentor().instrument(engine=engine)
