"""What operators read: the audit trail and the dead letters of the services' consumers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from icep_client.models.base import IcepModel

__all__ = ["AuditEntry", "DeadLetter", "DeadLetterSummary", "RecordHeader", "TopicPosition"]


class AuditEntry(IcepModel):
    """Who touched a record: a change, or a read by another nation (`kind`), and how it ended."""

    __schema__ = "AuditEntryOut"
    id: str
    time: datetime
    service: str
    kind: str
    action: str
    outcome: str
    method: str
    path: str
    status: int | None
    problem_type: str | None
    resource_type: str
    resource_id: str | None
    owner_nation: str | None
    client_id: str
    client_nation: str
    roles: list[str]
    trace_id: str | None


class TopicPosition(IcepModel):
    """A record's place in Kafka."""

    __schema__ = "Position"
    topic: str
    partition: int
    offset: int


class DeadLetterSummary(IcepModel):
    """A record a consumer gave up on after its retries: `status` is waiting, redriven or resolved."""

    __schema__ = "DeadLetterSummary"
    id: str
    service: str
    consumer_group: str
    event_id: str
    event_type: str | None
    owner_nation: str | None
    error: str
    attempts: int
    origin: TopicPosition
    dead_letter: TopicPosition
    dead_lettered_at: datetime
    status: str
    redrive_count: int
    redriven_at: datetime | None
    resolved_at: datetime | None


class RecordHeader(IcepModel):
    """A Kafka header: its `value` as text, or `base64` when it is not text."""

    __schema__ = "RecordHeader"
    name: str
    value: str | None = None
    base64: str | None = None


class DeadLetter(DeadLetterSummary):
    """A dead letter with its record: key, headers and payload (JSON, or the text when it is not JSON)."""

    __schema__ = "DeadLetterOut"
    key: str | None
    headers: list[RecordHeader]
    payload: Any
