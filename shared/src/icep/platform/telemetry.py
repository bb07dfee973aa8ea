"""OpenTelemetry tracing and JSON logs, set up once per process.

Spans are exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the exporter reads the
standard `OTEL_*` variables itself). Logs are JSON lines carrying `trace_id` and `span_id`, so a log line
leads to its trace.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from pythonjsonlogger.json import JsonFormatter

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


def setup_tracing(service: str) -> TracerProvider:
    """Install the process's tracer provider (once; a second call returns the first)."""
    global _configured_service
    current = trace.get_tracer_provider()
    if _configured_service is not None and isinstance(current, TracerProvider):
        return current
    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME", f"icep-{service}"), "service.namespace": "icep"}
    )
    provider = TracerProvider(resource=resource)
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured_service = service
    return provider


def shutdown_tracing() -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush(5000)


def tracer(name: str = "icep") -> trace.Tracer:
    return trace.get_tracer(name)


def current_trace_headers() -> dict[str, str]:
    """The W3C trace context of the current span, to store with an outbox row or send on."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from(carrier: Mapping[str, str | None]) -> otel_context.Context:
    clean = {k: v for k, v in carrier.items() if v}
    return propagate.extract(clean)


def instrument_app(app: Any) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")


def instrument_httpx() -> None:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    inst = HTTPXClientInstrumentor()
    if not inst.is_instrumented_by_opentelemetry:
        inst.instrument()


def instrument_engine(engine: Any) -> None:
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().instrument(engine=engine)
