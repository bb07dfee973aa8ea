"""Events published by the notifications service on `icep.notifications.events`."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

from icep.contracts.base import EventPayload, Subject

_SUBSCRIPTION = Subject("{subscription_id}", "/v1/subscriptions/{subscription_id}")


class SubscriptionCreated(EventPayload):
    event_type: ClassVar[str] = "icep.notifications.subscription.created.v1"
    aggregate: ClassVar[str] = "subscription"
    subject: ClassVar[Subject] = _SUBSCRIPTION

    subscription_id: str
    owner: str
    nation: str
    event_types: list[str]
    created_at: datetime
    #: The other filters (empty: any); added compatibly, so older events lack them.
    nations: list[str] = Field(default_factory=list)
    capability_areas: list[str] = Field(default_factory=list)
    products: list[str] = Field(default_factory=list)


class DeliveryFailed(EventPayload):
    """A delivery used up its retry schedule without a 2xx answer."""

    event_type: ClassVar[str] = "icep.notifications.delivery.failed.v1"
    aggregate: ClassVar[str] = "subscription"
    subject: ClassVar[Subject] = _SUBSCRIPTION

    subscription_id: str
    delivery_id: str
    event_id: str
    event_type_delivered: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    failed_at: datetime


class SubscriptionDisabled(EventPayload):
    """A subscription stopped receiving: its endpoint answered 410 Gone, it kept failing for too long, or
    its owner disabled it. Published on `icep.notifications.events` for the owner's systems and operators
    (the feed and stream carry the other services' events, not these)."""

    event_type: ClassVar[str] = "icep.notifications.subscription.disabled.v1"
    aggregate: ClassVar[str] = "subscription"
    subject: ClassVar[Subject] = _SUBSCRIPTION

    subscription_id: str
    owner: str
    nation: str
    #: `gone` (410), `failing` (failed for longer than allowed), `owner`, `operator`.
    cause: str
    reason: str
    disabled_at: datetime


class SubscriptionReenabled(EventPayload):
    event_type: ClassVar[str] = "icep.notifications.subscription.reenabled.v1"
    aggregate: ClassVar[str] = "subscription"
    subject: ClassVar[Subject] = _SUBSCRIPTION

    subscription_id: str
    owner: str
    nation: str
    reenabled_by: str
    reenabled_at: datetime
