"""Request and answer bodies of the delivery routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from icep.notifications.deliveries.rows import AttemptRow, DeliveryRow


class AttemptOut(BaseModel):
    attempted_at: datetime
    status_code: int | None
    error: str | None
    latency_ms: float
    response_body: str | None = Field(
        description="The start of the endpoint's answer (at most `max_response_bytes` are read)"
    )

    @classmethod
    def of(cls, row: AttemptRow) -> AttemptOut:
        return cls(
            attempted_at=row.attempted_at,
            status_code=row.status_code,
            error=row.error,
            latency_ms=row.latency_ms,
            response_body=row.response_body,
        )


class DeliveryOut(BaseModel):
    id: str
    event_id: str = Field(description="The event's id: the `webhook-id` of every attempt and replay")
    event_type: str
    subject: str = Field(description="The aggregate the event is about: its deliveries go in order")
    status: str = Field(description="`pending`, `delivered` or `failed`")
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    generation: int = Field(description="0 when the event came; n for its n-th replay")
    replay_of: str | None = Field(description="The delivery this replay sends again")
    redelivery_requested_at: datetime | None = Field(
        description="When a redelivery was asked for that has not been attempted yet"
    )
    attempt_log: list[AttemptOut]

    @classmethod
    def of(cls, row: DeliveryRow, attempts: list[AttemptRow]) -> DeliveryOut:
        return cls(
            id=row.id,
            event_id=row.event_id,
            event_type=row.event_type,
            subject=row.subject,
            status=row.status,
            attempts=row.attempts,
            last_status_code=row.last_status_code,
            last_error=row.last_error,
            next_attempt_at=row.next_attempt_at,
            created_at=row.created_at,
            delivered_at=row.delivered_at,
            generation=row.generation,
            replay_of=row.replay_of,
            redelivery_requested_at=row.redelivery_requested_at,
            attempt_log=[AttemptOut.of(a) for a in attempts],
        )


class ReplayIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"since": "2026-12-01T00:00:00Z"}]}
    )

    since: AwareDatetime = Field(description="Every event the subscription received from then on")


class ReplayOut(BaseModel):
    replayed: int = Field(description="How many events are delivered again (new deliveries)")
    since: datetime
    next_since: datetime | None = Field(
        description="Set when more events were there than one replay takes: replay again from here"
    )


class DeliveryList(BaseModel):
    items: list[DeliveryOut]
    next: str | None = Field(default=None, description="The next page (newer ones come first)")
