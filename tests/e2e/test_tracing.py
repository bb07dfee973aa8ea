"""Traces an operator can read: one trace per flow, the partner's context only as a link, nothing while
idle, retries as new linked traces. One platform for the module, its spans in a real OTLP receiver."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from icep.platform.testing import CollectedSpan, WebhookReceiver, wait_for
from tests.conftest import RunningPlatform
from tests.test_observability import PROCESSES, PROMETHEUS_OWN, exposed_names, is_emitted, referenced_metrics

SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5
#: The platform exports its spans to the test's OTLP receiver (tests/conftest.py): this module reads them.
TRACED = True

PARTNER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
#: A partner's context with sampling switched off (flags 00), naming a trace id of the partner's choice.
HOSTILE = f"00-{PARTNER_TRACE}-00f067aa0ba902b7-00"
#: What an idle platform may export at most.
IDLE_TRACES_PER_MINUTE = 2


@pytest.fixture(scope="module", autouse=True)
def partner_sends_what_the_test_says() -> Iterator[None]:
    """The partner here is this test process, and an earlier in-process test of the session (a service app's
    lifespan) may have instrumented httpx in it: it would put the process's own traceparent on every request,
    over the hostile one. A partner's tracing is its own business; this module sends exactly its headers."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    instrumentor = HTTPXClientInstrumentor()
    instrumented = instrumentor.is_instrumented_by_opentelemetry
    if instrumented:
        instrumentor.uninstrument()
    try:
        yield
    finally:
        if instrumented:
            instrumentor.instrument()


@pytest.fixture(scope="module")
def hooks() -> Iterator[WebhookReceiver]:
    """DEU's endpoint for the whole module: it must outlive each test, or later events would be retried."""
    receiver = WebhookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture(scope="module")
async def deu(platform: RunningPlatform, hooks: WebhookReceiver) -> AsyncIterator[httpx.AsyncClient]:
    client = await platform.as_client("deu-planner")
    r = await client.post(
        "/v1/subscriptions",
        json={"url": hooks.url, "description": "tracing", "event_types": ["icep.plans.*"]},
    )
    assert r.status_code == 201, r.text
    try:
        yield client
    finally:
        await client.aclose()


def trace_id_of(traceparent: str) -> str:
    return traceparent.split("-")[1]


async def hook_for(receiver: WebhookReceiver, plan_id: str, event_type: str) -> Any:
    def found() -> Any:
        return next(
            (
                r
                for r in receiver.received()
                if r.json()["subject"] == plan_id and r.json()["type"] == event_type
            ),
            None,
        )

    return await wait_for(found, timeout=30, what=f"the {event_type} webhook of {plan_id}")


def spans_of(platform: RunningPlatform, trace_id: str) -> list[CollectedSpan]:
    return [s for s in platform.collector.collected() if s.trace_id == trace_id]


def one(spans: list[CollectedSpan], what: Callable[[CollectedSpan], bool]) -> CollectedSpan:
    [span] = [s for s in spans if what(s)]
    return span


async def test_one_flow_is_one_trace_with_semantic_convention_spans(
    platform: RunningPlatform,
    deu: httpx.AsyncClient,
    hooks: WebhookReceiver,
    plan_body: Callable[..., dict[str, Any]],
) -> None:
    created = await deu.post("/v1/plans", json=plan_body())
    assert created.status_code == 201, created.text
    plan_id = created.json()["id"]
    hook = await hook_for(hooks, plan_id, "icep.plans.plan.created.v1")
    trace_id = trace_id_of(hook.headers["traceparent"])
    topic = platform.topic("icep.plans.events")
    group = f"{platform.namespace}icep-notifications"

    def complete() -> list[CollectedSpan] | None:
        spans = spans_of(platform, trace_id)
        names = {(s.service, s.name) for s in spans}
        wanted = {
            ("icep-plans", f"send {topic}"),
            ("icep-notifications", f"process {topic}"),
            ("icep-notifications", "webhook deliver"),
        }
        gateway_server = any(s.service == "icep-gateway" and s.kind == SERVER for s in spans)
        return spans if wanted <= names and gateway_server else None

    spans = await wait_for(complete, timeout=30, what="the flow's spans in one trace")
    by_id = {s.span_id: s for s in spans}

    # The gateway's server span is the root: the trace is the platform's, started at its edge.
    edge = one(spans, lambda s: s.service == "icep-gateway" and s.kind == SERVER)
    assert edge.parent_span_id == "" and edge.links == []
    # HTTP spans by the stable conventions (not the old `http.method`/`http.status_code`).
    assert edge.attributes["http.request.method"] == "POST"
    assert edge.attributes["http.response.status_code"] == 201
    assert "http.method" not in edge.attributes
    # The internal hop continues the gateway's context: the plans server span is under the gateway.
    plans_server = one(spans, lambda s: s.service == "icep-plans" and s.kind == SERVER)
    assert by_id[plans_server.parent_span_id].service == "icep-gateway"

    send = one(spans, lambda s: s.name == f"send {topic}")
    assert send.kind == PRODUCER
    host, _, port = platform.bootstrap.split(",")[0].rpartition(":")
    assert {
        k: send.attributes[k]
        for k in (
            "messaging.system",
            "messaging.operation.type",
            "messaging.operation.name",
            "messaging.destination.name",
            "messaging.message.id",
            "messaging.kafka.message.key",
            "server.address",
            "server.port",
        )
    } == {
        "messaging.system": "kafka",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": topic,
        "messaging.message.id": hook.headers["webhook-id"],
        "messaging.kafka.message.key": plan_id,
        "server.address": host,
        "server.port": int(port),
    }
    assert send.attributes["messaging.destination.partition.id"].isdigit()
    assert send.attributes["messaging.kafka.offset"] >= 0

    process = one(spans, lambda s: s.name == f"process {topic}")
    assert process.kind == CONSUMER and process.parent_span_id == send.span_id
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["messaging.consumer.group.name"] == group
    assert (
        process.attributes["messaging.destination.partition.id"]
        == (send.attributes["messaging.destination.partition.id"])
    )
    assert process.attributes["messaging.kafka.offset"] == send.attributes["messaging.kafka.offset"]
    assert process.attributes["messaging.message.id"] == hook.headers["webhook-id"]
    assert process.attributes["server.address"] == host

    # The consumer's database work is under its process span, by the stable database conventions.
    under_process = [s for s in spans if s.parent_span_id == process.span_id and s.kind == CLIENT]
    assert under_process, "the handler's queries are in the flow's trace"
    assert all("db.system.name" in s.attributes and "db.system" not in s.attributes for s in under_process)
    assert any("INSERT" in str(s.attributes.get("db.query.text", "")).upper() for s in under_process)

    deliver = one(spans, lambda s: s.name == "webhook deliver")
    # The partner receives the platform's context: the webhook's traceparent is the delivery's POST span.
    post = one(spans, lambda s: s.parent_span_id == deliver.span_id and s.kind == CLIENT)
    assert hook.headers["traceparent"].split("-")[2] == post.span_id

    # No database query or HTTP call anywhere is a trace of its own.
    roots = [s for s in platform.collector.collected() if s.parent_span_id == "" and s.kind == CLIENT]
    assert roots == []


async def test_a_hostile_traceparent_is_only_a_link(
    platform: RunningPlatform,
    deu: httpx.AsyncClient,
    hooks: WebhookReceiver,
    plan_body: Callable[..., dict[str, Any]],
) -> None:
    created = await deu.post(
        "/v1/plans",
        json=plan_body(),
        headers={"traceparent": HOSTILE, "tracestate": "partner=chosen", "baggage": "nation=FRA"},
    )
    assert created.status_code == 201, created.text
    plan_id = created.json()["id"]
    hook = await hook_for(hooks, plan_id, "icep.plans.plan.created.v1")
    trace_id = trace_id_of(hook.headers["traceparent"])
    # What reaches the subscriber is the platform's own context, and it is sampled (flags 00 changed nothing).
    assert trace_id != PARTNER_TRACE
    assert int(hook.headers["traceparent"].split("-")[3], 16) & 1
    assert "tracestate" not in hook.headers and "baggage" not in hook.headers

    def recorded() -> list[CollectedSpan] | None:
        spans = spans_of(platform, trace_id)
        names = {s.name for s in spans}
        edge = [s for s in spans if s.service == "icep-gateway" and s.kind == SERVER]
        return (
            spans
            if edge and "webhook deliver" in names and any(s.service == "icep-plans" for s in spans)
            else None
        )

    spans = await wait_for(recorded, timeout=30, what="the flow recorded in the platform's own trace")
    edge = one(spans, lambda s: s.service == "icep-gateway" and s.kind == SERVER)
    assert edge.parent_span_id == ""
    [link] = edge.links
    assert (link.trace_id, link.span_id) == (PARTNER_TRACE, "00f067aa0ba902b7")
    assert link.attributes == {"icep.link.reason": "partner"}
    # The services behind the gateway continue the gateway's trace, never the partner's.
    assert all(s.trace_id != PARTNER_TRACE for s in platform.collector.collected())


async def test_an_idle_platform_makes_next_to_no_traces(
    platform: RunningPlatform, deu: httpx.AsyncClient, hooks: WebhookReceiver
) -> None:
    # Settled: every event published and consumed, every delivery made, the last spans exported.
    await platform.settled()

    async def deliveries_done() -> bool:
        subs = (await deu.get("/v1/subscriptions")).json()["items"]
        for sub in subs:
            items = (await deu.get(f"/v1/subscriptions/{sub['id']}/deliveries")).json()["items"]
            if any(d["status"] == "pending" for d in items):
                return False
        return True

    await wait_for(deliveries_done, timeout=30, what="no delivery pending")
    seen = {s.trace_id for s in platform.collector.collected()}
    count = len(platform.collector.collected())
    await wait_for(
        lambda: len(platform.collector.collected()) == count or None,
        timeout=5,
        what="the exporters to have nothing more in flight",
    )
    seen = {s.trace_id for s in platform.collector.collected()}

    window = 20.0
    started = time.monotonic()
    new: set[str] = set()

    def window_over() -> bool:
        new.update(s.trace_id for s in platform.collector.collected() if s.trace_id not in seen)
        return time.monotonic() - started >= window

    # Watch the collector for the whole window (the measurement itself, not a wait for a condition).
    await wait_for(window_over, timeout=window + 10, interval=0.5, what="the idle window")
    # Before: about 23 traces a second from polling. Now: at most a couple a minute.
    allowed = max(2.0, IDLE_TRACES_PER_MINUTE * window / 60)
    assert len(new) <= allowed, sorted(
        {(s.service, s.name) for s in platform.collector.collected() if s.trace_id in new}
    )


async def test_a_webhook_retry_is_a_new_trace_linked_to_the_first_attempt(
    platform: RunningPlatform, plan_body: Callable[..., dict[str, Any]]
) -> None:
    failing = WebhookReceiver(script=[500]).start()
    fra = await platform.as_client("fra-planner")
    try:
        r = await fra.post(
            "/v1/subscriptions",
            json={"url": failing.url, "description": "retry", "event_types": ["icep.plans.plan.created.v1"]},
        )
        assert r.status_code == 201, r.text
        created = await fra.post("/v1/plans", json=plan_body(title="French retry plan"))
        assert created.status_code == 201, created.text
        first, second = await wait_for(
            lambda: failing.received() if len(failing.received()) >= 2 else None,
            timeout=30,
            what="a failed attempt and its retry",
        )
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        original = trace_id_of(first.headers["traceparent"])
        retry = trace_id_of(second.headers["traceparent"])
        assert retry != original

        def retry_deliver() -> CollectedSpan | None:
            return next((s for s in spans_of(platform, retry) if s.name == "webhook deliver"), None)

        deliver = await wait_for(retry_deliver, timeout=30, what="the retry's deliver span")
        assert deliver.parent_span_id == "" and deliver.attributes["icep.attempt"] == 2
        [link] = deliver.links
        assert link.trace_id == original and link.attributes == {"icep.link.reason": "retry"}
        # The first attempt is in the flow's trace, under the event's processing.
        first_deliver = await wait_for(
            lambda: next((s for s in spans_of(platform, original) if s.name == "webhook deliver"), None),
            timeout=30,
            what="the first attempt's deliver span",
        )
        assert first_deliver.attributes["icep.attempt"] == 1 and first_deliver.parent_span_id != ""
        assert link.span_id == first_deliver.parent_span_id
    finally:
        failing.stop()
        await fra.aclose()


# --- every metric a rule or a dashboard panel names is emitted -------------------------------------------
# Here rather than in tests/test_observability.py (which holds the rule and dashboard checks and the
# parsing): it needs a running platform, and this module's serves (one platform start less per run).


async def test_every_metric_a_rule_or_panel_names_is_emitted(
    platform: Any,
    clients: dict[str, httpx.AsyncClient],
    plan_body: Any,
    receiver: WebhookReceiver,
    repo_root: Path,
) -> None:
    # A little traffic so that the labelled series exist: a plan (outbox, Kafka, consumers), a webhook
    # subscription and one delivered webhook, all through the gateway.
    deu = clients["deu"]
    sub = await deu.post(
        "/v1/subscriptions", json={"url": receiver.url, "event_types": ["icep.plans.plan.created.v1"]}
    )
    assert sub.status_code == 201, sub.text
    created = await deu.post("/v1/plans", json=plan_body())
    assert created.status_code == 201, created.text
    await wait_for(receiver.received, timeout=60, what="a webhook delivered")
    await platform.settled()

    exposed: set[str] = set()
    for process in PROCESSES:
        response = await platform.http.get(f"{platform.management(process)}/metrics")
        assert response.status_code == 200, response.text
        exposed |= exposed_names(response.text)

    referenced = referenced_metrics(repo_root)
    missing = {
        name: sorted(where)
        for name, where in referenced.items()
        if name not in PROMETHEUS_OWN and not is_emitted(name, exposed)
    }
    assert not missing, f"named in rules or dashboards but emitted by no process: {missing}"
