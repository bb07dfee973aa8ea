"""Events published by the notifications service on `icep.notifications.events`."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from icep.contracts.base import EventPayload


class SubscriptionCreated(EventPayload):
    event_type: ClassVar[str] = "icep.notifications.subscription.created.v1"
    aggregate: ClassVar[str] = "subscription"

    subscription_id: str
    owner: str
    nation: str
    event_types: list[str]
    created_at: datetime


class DeliveryFailed(EventPayload):
    """A delivery used up its retry schedule without a 2xx answer."""

    event_type: ClassVar[str] = "icep.notifications.delivery.failed.v1"
    aggregate: ClassVar[str] = "subscription"

    subscription_id: str
    delivery_id: str
    event_id: str
    event_type_delivered: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    failed_at: datetime
