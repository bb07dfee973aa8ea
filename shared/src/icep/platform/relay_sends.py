"""The outbox relay's sends, row by row: the producer spans of a round (continuing the trace of the change,
or linked to it on a re-send), one key's hand-over state, and resuming a hand-over that had to wait.

The relay (`icep.platform.relay.OutboxRelay`) hands most keys over without a task of its own; these are
the pieces that make that possible.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.util.types import AttributeValue

from icep.platform.telemetry import (
    context_from,
    messaging_attributes,
    span_context_from,
)


def _failed(span: Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
    span.end()


class _SendSpans:
    """The producer spans of one round: the tracer and each topic's attributes looked up once per round,
    not once per row. The first try continues the trace of the change that raised the event; a re-send
    after a failed try is a new trace linked to it (a broker outage must not stretch that trace)."""

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._tracer = trace.get_tracer("icep.outbox")
        self._by_topic: dict[str, dict[str, AttributeValue]] = {}

    def start(self, row: Any) -> Span:
        base = self._by_topic.get(row.topic)
        if base is None:
            base = self._by_topic[row.topic] = messaging_attributes(
                "send", topic=row.topic, bootstrap=self._bootstrap
            )
        attributes = {
            **base,
            "messaging.message.id": row.id,
            "messaging.kafka.message.key": row.key,
            "cloudevents.event_type": row.type,
            "icep.attempt": row.attempts + 1,
        }
        carrier = {"traceparent": row.traceparent, "tracestate": row.tracestate}
        if row.attempts:
            origin = span_context_from(carrier)
            links = [Link(origin, {"icep.link.reason": "retry"})] if origin is not None else []
            return self._tracer.start_span(
                f"send {row.topic}",
                context=otel_context.Context(),
                kind=SpanKind.PRODUCER,
                attributes=attributes,
                links=links,
            )
        context = context_from(carrier) if row.traceparent else otel_context.Context()
        return self._tracer.start_span(
            f"send {row.topic}", context=context, kind=SpanKind.PRODUCER, attributes=attributes
        )


class _KeySends:
    """One key's hand-over in a round: its sends in order, the row being handed over, its failure."""

    __slots__ = ("current", "failure", "sends")

    def __init__(self) -> None:
        self.sends: list[tuple[str, asyncio.Future[Any], Span | None]] = []
        self.current: tuple[Any, Span | None] = (None, None)
        self.failure: tuple[str, str] | None = None


@types.coroutine
def _resume(coro: Coroutine[Any, Any, None], blocked_on: Any) -> Generator[Any, Any, None]:
    """Go on with a coroutine that was stepped by hand (`coro.send(None)`) and is waiting on
    `blocked_on`, under the awaiting task: what `await` would have done had the task started it."""
    while True:
        try:
            result = yield blocked_on
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # a cancellation, or a timeout's: the waiting coroutine gets it
            try:
                blocked_on = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                blocked_on = coro.send(result)
            except StopIteration:
                return
