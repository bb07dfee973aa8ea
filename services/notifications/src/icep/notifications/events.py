"""The events the notifications service publishes: its aggregates' domain events mapped to the
`icep.contracts.notifications` payloads, each marked for the subscription's own nation (its owner's
systems and operators; they are not delivered by webhook, feed or stream)."""

from __future__ import annotations

from collections.abc import Iterable

from icep.contracts import Releasability
from icep.contracts.notifications import SubscriptionCreated, SubscriptionDisabled, SubscriptionReenabled
from icep.notifications.subscriptions.model import (
    Subscription,
    SubscriptionWasCreated,
    SubscriptionWasDisabled,
    SubscriptionWasReenabled,
)
from icep.platform.domain import DomainEvent
from icep.platform.events import OutgoingEvent


def notifications_events(aggregate: object, event: DomainEvent) -> Iterable[OutgoingEvent]:
    """The service's mapper (`ServiceSpec.events`)."""
    if isinstance(aggregate, Subscription):
        yield from _subscription_events(aggregate, event)


def _subscription_events(sub: Subscription, event: DomainEvent) -> Iterable[OutgoingEvent]:
    if isinstance(event, SubscriptionWasCreated):
        payload: SubscriptionCreated | SubscriptionDisabled | SubscriptionReenabled = SubscriptionCreated(
            subscription_id=sub.id,
            owner=sub.owner,
            nation=sub.nation,
            event_types=list(sub.event_types),
            created_at=event.at,
            nations=list(sub.nations),
            capability_areas=list(sub.capability_areas),
            products=list(sub.products),
        )
    elif isinstance(event, SubscriptionWasDisabled):
        payload = SubscriptionDisabled(
            subscription_id=sub.id,
            owner=sub.owner,
            nation=sub.nation,
            cause=event.cause,
            reason=event.reason,
            disabled_at=event.at,
        )
    elif isinstance(event, SubscriptionWasReenabled):
        payload = SubscriptionReenabled(
            subscription_id=sub.id,
            owner=sub.owner,
            nation=sub.nation,
            reenabled_by=event.by,
            reenabled_at=event.at,
        )
    else:
        return
    yield OutgoingEvent(payload=payload, subject=sub.id, releasability=Releasability(owner=sub.nation))
