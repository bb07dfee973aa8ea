"""The CloudEvents 1.0 envelope, in Kafka binary mode.

Attributes travel as `ce_*` headers, the data as the JSON value, the subject (the aggregate id, or what
the contract declares: `EventPayload.subject`) as the record key, and the W3C trace context as
`traceparent`/`tracestate` headers. The `cloudevents` SDK does the attribute
mapping; this module adds the platform's extensions (`nation`, `releasableto`) and typed payloads.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from cloudevents.core.bindings import kafka as ce_kafka

from icep.contracts import EventPayload, Releasability
from icep.platform.ids import new_id

P = TypeVar("P", bound=EventPayload)

TRACE_HEADERS = ("traceparent", "tracestate")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """A time the platform stored, timezone-aware: a naive one (SQLite keeps no offset, and an event's
    time may come without one) is UTC, as every time the platform writes."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class OutgoingEvent:
    """An event a use case raises; the unit of work writes it to the outbox in the same transaction."""

    payload: EventPayload
    subject: str
    releasability: Releasability
    id: str = field(default_factory=new_id)
    time: datetime = field(default_factory=utcnow)

    @property
    def type(self) -> str:
        return self.payload.event_type

    def data_json(self) -> str:
        return self.payload.model_dump_json()


@dataclass(frozen=True)
class ReceivedEvent:
    """An event read from Kafka, with where it came from."""

    id: str
    type: str
    source: str
    subject: str
    time: datetime
    nation: str
    releasable_to: str
    data: dict[str, Any]
    topic: str = ""
    partition: int = -1
    offset: int = -1
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def releasability(self) -> Releasability:
        return Releasability.from_marking(self.nation, self.releasable_to)

    def payload(self, model: builtins.type[P]) -> P:
        return model.model_validate(self.data)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode()
        return None

    def body(self) -> dict[str, Any]:
        """The event as subscribers see it in webhooks, the stream and the feed."""
        return {
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "subject": self.subject,
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "nation": self.nation,
            "releasableto": self.releasable_to,
            "data": self.data,
        }


class InvalidEnvelope(ValueError):
    """A record that is not a CloudEvent of this platform (it goes to the dead-letter topic)."""


def encode(
    *,
    id: str,
    type: str,
    source: str,
    subject: str,
    time: datetime,
    nation: str,
    releasable_to: str,
    data_json: str,
    trace_headers: dict[str, str] | None = None,
) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of one Kafka record in CloudEvents binary mode.

    Written directly rather than through the SDK's `CloudEvent` (the relay encodes every row it sends, and
    validating attributes the outbox wrote itself, then parsing and re-serialising the data, was most of
    its CPU per row): the headers are the SDK's, in its order; the value is the stored JSON as it is."""
    if time.tzinfo is None:  # SQLite hands back naive datetimes; the platform stores UTC
        time = time.replace(tzinfo=UTC)
    stamp = time.isoformat()
    if stamp.endswith("+00:00"):
        stamp = stamp[:-6] + "Z"
    headers = [
        ("ce_id", id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", type.encode()),
        ("ce_specversion", b"1.0"),
        ("ce_time", stamp.encode()),
        ("ce_subject", subject.encode()),
        ("content-type", b"application/json"),
        ("ce_nation", nation.encode()),
        ("ce_releasableto", releasable_to.encode()),
    ]
    for name, value in (trace_headers or {}).items():
        if name in TRACE_HEADERS and value:
            headers.append((name, value.encode()))
    return subject.encode(), data_json.encode(), headers


def decode(
    key: bytes | None,
    value: bytes | None,
    headers: Any,
    *,
    topic: str = "",
    partition: int = -1,
    offset: int = -1,
) -> ReceivedEvent:
    try:
        header_tuple = tuple((str(k), bytes(v)) for k, v in (headers or ()) if v is not None)
        header_map = dict(header_tuple)
        if "ce_id" not in header_map or "ce_type" not in header_map:
            raise InvalidEnvelope("record carries no ce_id/ce_type headers")
        if "ce_nation" not in header_map or "ce_releasableto" not in header_map:
            raise InvalidEnvelope(
                "record carries no nation/releasableto: nobody could be told who may see it"
            )
        event = ce_kafka.from_binary_event(
            ce_kafka.KafkaMessage(headers=header_map, key=key, value=value or b"null")
        )
        data = event.get_data()
        if not isinstance(data, dict):
            raise InvalidEnvelope("event data is not a JSON object")
        time = event.get_time() or utcnow()
    except InvalidEnvelope:
        raise
    except Exception as exc:  # whatever a malformed record makes the SDK raise, it is not an event of ours
        raise InvalidEnvelope(f"not a valid CloudEvent: {type(exc).__name__}: {exc}") from exc
    return ReceivedEvent(
        id=event.get_id(),
        type=event.get_type(),
        source=event.get_source(),
        subject=event.get_subject() or (key.decode() if key else ""),
        time=time,
        nation=str(event.get_extension("nation") or ""),
        releasable_to=str(event.get_extension("releasableto") or ""),
        data=data,
        topic=topic,
        partition=partition,
        offset=offset,
        headers=header_tuple,
    )
