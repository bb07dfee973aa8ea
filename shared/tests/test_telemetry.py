"""Tracing rules in one process: quiet sampling, linked new traces, the public edge, messaging attributes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI, Request
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision
from opentelemetry.trace import SpanKind

from icep.platform import telemetry
from icep.platform.telemetry import (
    QuietSampler,
    continued_or_linked_span,
    current_trace_headers,
    linked_root_span,
    make_tracer_provider,
    messaging_attributes,
    server_address,
)
from icep.platform.testing import recording_spans

PARTNER_TRACE = "0af7651916cd43dd8448eb211c80319c"
PARTNER_TRACEPARENT = f"00-{PARTNER_TRACE}-b7ad6b7169203331-00"


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    """A recording provider with the platform's sampler, exporting to memory."""
    with recording_spans() as exporter:
        yield exporter


def _by_name(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    [span] = [s for s in spans if s.name == name]
    return span


def test_a_root_client_span_is_dropped_but_the_same_span_in_a_trace_is_kept(
    exported: InMemorySpanExporter,
) -> None:
    t = telemetry.tracer("test")
    with t.start_as_current_span("SELECT outbox", kind=SpanKind.CLIENT) as idle:
        # Not recorded, but still a valid context: what it would pass on still names a trace.
        assert not idle.is_recording() and idle.get_span_context().is_valid
    with (
        t.start_as_current_span("send topic", kind=SpanKind.PRODUCER),
        t.start_as_current_span("INSERT inbox", kind=SpanKind.CLIENT),
    ):
        pass
    with t.start_as_current_span("GET /v1/plans", kind=SpanKind.SERVER):
        pass
    names = sorted(s.name for s in exported.get_finished_spans())
    assert names == ["GET /v1/plans", "INSERT inbox", "send topic"]


def test_the_quiet_sampler_leaves_children_to_the_configured_sampler() -> None:
    sampler = QuietSampler(ALWAYS_ON)
    assert sampler.should_sample(None, 1, "q", SpanKind.CLIENT).decision is Decision.DROP
    assert sampler.should_sample(None, 1, "s", SpanKind.SERVER).decision is Decision.RECORD_AND_SAMPLE
    parent = telemetry.context_from({"traceparent": f"00-{PARTNER_TRACE}-b7ad6b7169203331-01"})
    assert sampler.should_sample(parent, 1, "q", SpanKind.CLIENT).decision is Decision.RECORD_AND_SAMPLE
    assert "QuietSampler" in sampler.get_description()


def test_without_an_exporter_nothing_records_but_trace_context_still_flows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    provider = make_tracer_provider("test")
    t = provider.get_tracer("test")
    with t.start_as_current_span("POST /v1/plans", kind=SpanKind.SERVER) as span:
        assert not span.is_recording()
        headers = current_trace_headers()
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert headers["traceparent"].split("-")[1] == trace_id != "0" * 32


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["OTLPSpanExporter"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["ConsoleSpanExporter"]),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, ["OTLPSpanExporter", "ConsoleSpanExporter"]),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, []),
    ],
)
def test_exporters_follow_the_standard_variables(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: list[str]
) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert [type(e).__name__ for e in telemetry._configured_exporters()] == expected


def test_the_configured_sampler_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    provider = make_tracer_provider("test", exporters=[InMemorySpanExporter()])
    assert isinstance(provider.sampler, QuietSampler)
    assert "TraceIdRatioBased{0.25}" in provider.sampler.get_description()


def test_a_retry_is_a_new_trace_linked_to_the_original(exported: InMemorySpanExporter) -> None:
    carrier = {"traceparent": f"00-{PARTNER_TRACE}-b7ad6b7169203331-01"}
    with continued_or_linked_span("process t", carrier, again=None, kind=SpanKind.CONSUMER):
        pass
    with continued_or_linked_span("process t", carrier, again="retry", kind=SpanKind.CONSUMER):
        pass
    first, retry = exported.get_finished_spans()
    assert format(first.context.trace_id, "032x") == PARTNER_TRACE
    assert first.parent is not None and format(first.parent.span_id, "016x") == "b7ad6b7169203331"
    assert format(retry.context.trace_id, "032x") != PARTNER_TRACE and retry.parent is None
    [link] = retry.links
    assert format(link.context.trace_id, "032x") == PARTNER_TRACE
    assert link.attributes == {"icep.link.reason": "retry"}


def test_a_linked_root_ignores_the_current_trace(exported: InMemorySpanExporter) -> None:
    with (
        telemetry.tracer("test").start_as_current_span("outer"),
        linked_root_span("redriven", {"traceparent": None}, reason="redrive"),
    ):
        pass
    inner = _by_name(exported.get_finished_spans(), "redriven")
    outer = _by_name(exported.get_finished_spans(), "outer")
    assert inner.context.trace_id != outer.context.trace_id and inner.parent is None
    assert inner.links == ()  # no origin known: nothing to link to, still a trace of its own


def test_messaging_attributes_follow_the_semantic_conventions() -> None:
    assert server_address("kafka-0:9092,kafka-1:9092") == ("kafka-0", 9092)
    assert server_address("[::1]:9093") == ("::1", 9093)
    assert server_address("broker") == ("broker", None)
    attributes = messaging_attributes(
        "process", topic="icep.plans.events", bootstrap="127.0.0.1:9092", partition=2, offset=7, group="g"
    )
    assert attributes == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "icep.plans.events",
        "messaging.destination.partition.id": "2",
        "messaging.kafka.offset": 7,
        "messaging.consumer.group.name": "g",
        "server.address": "127.0.0.1",
        "server.port": 9092,
    }


async def test_the_public_edge_starts_its_own_trace_and_links_the_partners(
    exported: InMemorySpanExporter,
) -> None:
    seen: dict[str, str | None] = {}
    app = FastAPI()

    @app.get("/v1/echo")
    async def echo(request: Request) -> dict[str, str]:
        for name in ("traceparent", "tracestate", "baggage"):
            seen[name] = request.headers.get(name)
        seen["current"] = current_trace_headers().get("traceparent")
        return {}

    telemetry.instrument_app(app)
    telemetry.public_edge(app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://edge") as client:
        answer = await client.get(
            "/v1/echo",
            headers={"traceparent": PARTNER_TRACEPARENT, "tracestate": "partner=1", "baggage": "user=alice"},
        )
    assert answer.status_code == 200
    # The partner's headers never reach the application (nor, through it, any upstream).
    assert seen["traceparent"] is None and seen["tracestate"] is None and seen["baggage"] is None
    server = next(s for s in exported.get_finished_spans() if s.kind is SpanKind.SERVER)
    own = format(server.context.trace_id, "032x")
    # Flags 00 switched nothing off, and the trace id is the platform's, not the partner's.
    assert own != PARTNER_TRACE and server.parent is None
    assert seen["current"] is not None and seen["current"].split("-")[1] == own
    assert int(seen["current"].split("-")[3], 16) & 1  # sampled
    [link] = server.links
    assert format(link.context.trace_id, "032x") == PARTNER_TRACE
    assert link.attributes == {"icep.link.reason": "partner"}


def test_an_outgoing_call_is_a_client_span_without_secrets_and_its_context_goes_along(
    exported: InMemorySpanExporter,
) -> None:
    headers: dict[str, str] = {}
    with telemetry.tracer("test").start_as_current_span("webhook deliver"):
        url = "https://user:pw@hooks.example:8443/in?token=s3cret&x=1"
        with telemetry.http_client_call("POST", url, headers) as call:
            call.answered(503)
    post = _by_name(exported.get_finished_spans(), "POST")
    assert post.kind is SpanKind.CLIENT
    assert post.context is not None and headers["traceparent"].split("-")[2] == f"{post.context.span_id:016x}"
    attributes = dict(post.attributes or {})
    assert attributes["url.full"] == "https://hooks.example:8443/in?token=REDACTED&x=REDACTED"
    assert "s3cret" not in str(attributes) and "pw" not in attributes["url.full"]
    assert (attributes["server.address"], attributes["server.port"]) == ("hooks.example", 8443)
    assert attributes["http.response.status_code"] == 503 and attributes["error.type"] == "503"
    assert not post.status.is_ok


def test_a_failed_outgoing_call_names_its_error(exported: InMemorySpanExporter) -> None:
    with (
        telemetry.tracer("test").start_as_current_span("proxy"),
        pytest.raises(ConnectionRefusedError),
        telemetry.http_client_call("GET", "http://127.0.0.1:9/v1/plans", {}),
    ):
        raise ConnectionRefusedError("refused")
    get = _by_name(exported.get_finished_spans(), "GET")
    assert dict(get.attributes or {})["error.type"] == "ConnectionRefusedError"
