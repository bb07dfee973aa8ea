"""Webhook subscriptions, their deliveries, and events (webhooks, the feed and the stream)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from icep_client.models.base import IcepModel, Versioned

__all__ = [
    "Attempt",
    "Delivery",
    "Event",
    "FeedEvent",
    "FeedPage",
    "Ping",
    "Subscription",
    "SubscriptionCreated",
]


class Subscription(Versioned):
    """A webhook subscription: `status` is active, paused or disabled."""

    __schema__ = "SubscriptionOut"
    id: str
    url: str
    description: str
    event_types: list[str]
    nations: list[str]
    capability_areas: list[str]
    products: list[str]
    nation: str
    status: str
    disabled_reason: str | None
    previous_secret_expires_at: datetime | None
    created_at: datetime


class SubscriptionCreated(Subscription):
    """A new subscription, with its signing secret (`whsec_...`), shown this once."""

    __schema__ = "SubscriptionCreated"
    secret: str


class Attempt(IcepModel):
    __schema__ = "AttemptOut"
    attempted_at: datetime
    status_code: int | None
    error: str | None
    latency_ms: float
    response_body: str | None


class Delivery(IcepModel):
    """One event's delivery to a subscription, with every attempt."""

    __schema__ = "DeliveryOut"
    id: str
    event_id: str
    event_type: str
    subject: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    generation: int
    replay_of: str | None
    redelivery_requested_at: datetime | None
    attempt_log: list[Attempt]


class Ping(IcepModel):
    __schema__ = "PingOut"
    message_id: str
    ok: bool
    status_code: int | None
    latency_ms: float
    error: str | None


class Event(IcepModel):
    """An event as webhooks deliver it (CloudEvents 1.0 attributes, the `nation` and `releasableto`
    extensions, and the event type's `data`)."""

    __schema__ = "EventEnvelope"
    id: str
    type: str
    source: str
    subject: str
    time: datetime
    nation: str
    releasableto: str
    data: dict[str, Any]


class FeedEvent(Event):
    """An event on the catch-up feed or the stream, with its `position` (the cursor)."""

    __schema__ = "FeedEvent"
    position: int


class FeedPage(IcepModel):
    __schema__ = "FeedPage"
    items: list[FeedEvent]
    next: str
    last_position: int
    more: bool
