"""Use cases of subscriptions: creating, reading, changing, pausing and pinging a webhook subscription."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from icep.notifications.deliveries.dispatcher import WebhookDispatcher
from icep.notifications.deliveries.model import DeliveryStatus
from icep.notifications.deliveries.repository import fail_pending_of_deleted
from icep.notifications.deliveries.rows import DeliveryRow
from icep.notifications.deliveries.settlement import Settled, disable_subscription
from icep.notifications.domain import PING_EVENT_TYPE, ping_body
from icep.notifications.settings import NotificationsSettings
from icep.notifications.subscriptions.endpoint import validate_endpoint
from icep.notifications.subscriptions.filters import validate_event_patterns, validate_nations, validate_terms
from icep.notifications.subscriptions.model import (
    Subscriber,
    Subscription,
    SubscriptionAction,
    SubscriptionStatus,
    new_signing_secret,
)
from icep.notifications.subscriptions.repository import SubscriptionRepository, find_owned, owned_by
from icep.platform.db import Database
from icep.platform.errors import Forbidden, PreconditionRequired, Unprocessable
from icep.platform.events import utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWorkFactory

log = logging.getLogger("icep.notifications")


@dataclass(frozen=True)
class NewSubscription:
    url: str
    description: str
    event_types: list[str]
    nations: list[str] = field(default_factory=list)
    capability_areas: list[str] = field(default_factory=list)
    products: list[str] = field(default_factory=list)


async def create_subscription(
    uow: UnitOfWorkFactory, settings: NotificationsSettings, who: Subscriber, new: NewSubscription
) -> Subscription:
    if "subscriber" not in who.roles:
        raise Forbidden("only clients with the subscriber role may subscribe")
    url = validate_endpoint(
        new.url, allow_loopback=settings.allow_loopback_endpoints, loopback_names=settings.loopback_names()
    )
    settings.egress_allowed().check_endpoint(url)
    now = utcnow()
    subscription = Subscription.create(
        id=new_id(),
        owner=who.client_id,
        nation=who.nation,
        url=url,
        description=new.description,
        event_types=validate_event_patterns(new.event_types),
        nations=validate_nations(new.nations),
        capability_areas=validate_terms(new.capability_areas, "capability_areas"),
        products=validate_terms(new.products, "products"),
        secret=new_signing_secret(),
        at=now,
    )
    async with uow() as tx:
        await SubscriptionRepository(tx).save(subscription)
    return subscription


async def get_subscription(db: Database, who: Subscriber, subscription_id: str) -> Subscription:
    """A subscription is its owner's: others get 404, as if it did not exist (and so does a deleted one)."""
    async with db.sessions() as session:
        return await find_owned(session, who, subscription_id)


async def list_subscriptions(db: Database, who: Subscriber) -> list[Subscription]:
    async with db.sessions() as session:
        return await owned_by(session, who)


# --- changing a subscription -----------------------------------------------------------------------


@dataclass(frozen=True)
class SubscriptionChanges:
    """A PATCH: what is None stays as it is."""

    url: str | None = None
    description: str | None = None
    event_types: list[str] | None = None
    nations: list[str] | None = None
    capability_areas: list[str] | None = None
    products: list[str] | None = None


async def update_subscription(
    uow: UnitOfWorkFactory,
    settings: NotificationsSettings,
    who: Subscriber,
    subscription_id: str,
    expected_version: int | None,
    changes: SubscriptionChanges,
) -> Subscription:
    if expected_version is None:
        raise PreconditionRequired("changing a subscription needs If-Match with the ETag you read")
    wanted: dict[str, object] = {}
    if changes.url is not None:
        wanted["url"] = validate_endpoint(
            changes.url,
            allow_loopback=settings.allow_loopback_endpoints,
            loopback_names=settings.loopback_names(),
        )
        settings.egress_allowed().check_endpoint(changes.url)
    if changes.description is not None:
        wanted["description"] = changes.description
    if changes.event_types is not None:
        wanted["event_types"] = validate_event_patterns(changes.event_types)
    if changes.nations is not None:
        wanted["nations"] = validate_nations(changes.nations)
    if changes.capability_areas is not None:
        wanted["capability_areas"] = validate_terms(changes.capability_areas, "capability_areas")
    if changes.products is not None:
        wanted["products"] = validate_terms(changes.products, "products")
    async with uow() as tx:
        subscriptions = SubscriptionRepository(tx)
        subscription = await subscriptions.get_for_update(who, subscription_id, expected_version)
        changed = subscription.changes_in(wanted)
        subscription = subscription.edit(changed, utcnow())
        await subscriptions.save(subscription)
    if changed:
        log.info(
            "subscription %s changed (%s) by %s", subscription.id, ", ".join(sorted(changed)), who.client_id
        )
    return subscription


async def rotate_secret(
    uow: UnitOfWorkFactory,
    settings: NotificationsSettings,
    who: Subscriber,
    subscription_id: str,
    expected_version: int | None,
) -> Subscription:
    """A new signing secret (the returned subscription carries it, to be shown once). The one it replaces
    keeps signing alongside it for `secret_grace_seconds`, so the receiver can switch without a gap."""
    grace = timedelta(seconds=max(settings.secret_grace_seconds, 0))
    async with uow() as tx:
        subscriptions = SubscriptionRepository(tx)
        subscription = await subscriptions.get_for_update(who, subscription_id, expected_version)
        subscription = subscription.rotate_secret(new_signing_secret(), grace, utcnow())
        await subscriptions.save(subscription)
    log.info("subscription %s got a new signing secret from %s", subscription.id, who.client_id)
    return subscription


async def change_status(
    uow: UnitOfWorkFactory,
    who: Subscriber,
    subscription_id: str,
    expected_version: int | None,
    action: SubscriptionAction,
    reason: str | None = None,
) -> Subscription:
    """Pause (deliveries are kept and wait), resume (they go, in order; a disabled subscription is
    re-enabled), disable (by its owner, with a reason: what waits is settled) or delete."""
    if action is SubscriptionAction.DELETE and expected_version is None:
        raise PreconditionRequired("deleting a subscription needs If-Match with the ETag you read")
    if action is SubscriptionAction.DISABLE:
        reason = " ".join((reason or "").split())
        if not reason:
            raise Unprocessable("disabling a subscription needs a reason", field="reason")
    settled = Settled()
    async with uow() as tx:
        subscriptions = SubscriptionRepository(tx)
        subscription = await subscriptions.get_for_update(who, subscription_id, expected_version)
        now = utcnow()
        if action is SubscriptionAction.DISABLE:
            assert reason is not None
            # Disabled the one way, whoever disables: what waits is settled and the owner is told.
            subscription = await disable_subscription(
                subscriptions, subscription, cause="owner", reason=reason, now=now, settled=settled
            )
        else:
            if action is SubscriptionAction.PAUSE:
                subscription = subscription.pause(now)
            elif action is SubscriptionAction.RESUME:
                subscription = subscription.resume(who.client_id, now)
            else:
                subscription = subscription.delete(now)
            await subscriptions.save(subscription)
            if subscription.status is SubscriptionStatus.DELETED:
                await fail_pending_of_deleted(tx.session, subscription.id)
    settled.count()
    log.info(
        "subscription %s is %s after %s by %s",
        subscription.id,
        subscription.status.value,
        action.value,
        who.client_id,
    )
    return subscription


@dataclass(frozen=True)
class PingResult:
    message_id: str
    status_code: int | None
    latency_ms: float
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def ping(
    db: Database,
    uow: UnitOfWorkFactory,
    settings: NotificationsSettings,
    who: Subscriber,
    subscription_id: str,
) -> PingResult:
    """Send a signed `icep.notifications.ping.v1` to the endpoint now, as a delivery would go (the
    same address checks, signatures and time limit), and say how it answered. Nothing is stored."""
    sub = await get_subscription(db, who, subscription_id)
    now = utcnow()
    message_id = new_id()
    probe = DeliveryRow(
        id=new_id(),
        subscription_id=sub.id,
        event_id=message_id,
        event_type=PING_EVENT_TYPE,
        subject=sub.id,
        body=json.dumps(ping_body(message_id, sub.id, sub.nation, now), separators=(",", ":")),
        status=DeliveryStatus.PENDING.value,
        created_at=now,
    )
    sender = WebhookDispatcher(db, uow, settings)
    try:
        result = await sender.attempt(sub, probe)
    finally:
        await sender.aclose()
    log.info("ping of subscription %s: %s", sub.id, result.status_code or result.error)
    return PingResult(message_id, result.status_code, result.latency_ms, result.error)
