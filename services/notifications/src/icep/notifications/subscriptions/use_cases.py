"""Use cases of subscriptions: creating, reading, changing, pausing and pinging a webhook subscription."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.contracts import Releasability
from icep.contracts.notifications import SubscriptionCreated, SubscriptionReenabled
from icep.notifications.deliveries.dispatcher import WebhookDispatcher
from icep.notifications.deliveries.model import DeliveryStatus
from icep.notifications.deliveries.rows import DeliveryRow
from icep.notifications.deliveries.settlement import Settled, disable_subscription
from icep.notifications.domain import PING_EVENT_TYPE, ping_body
from icep.notifications.settings import NotificationsSettings
from icep.notifications.subscriptions.endpoint import validate_endpoint
from icep.notifications.subscriptions.filters import (
    SubscriptionFilters,
    validate_event_patterns,
    validate_nations,
    validate_terms,
)
from icep.notifications.subscriptions.model import (
    SubscriptionAction,
    SubscriptionStatus,
    new_signing_secret,
    next_status,
)
from icep.notifications.subscriptions.rows import SubscriptionRow
from icep.platform import audit
from icep.platform.db import Database
from icep.platform.errors import (
    Forbidden,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    Unprocessable,
)
from icep.platform.events import OutgoingEvent, utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger("icep.notifications")


@dataclass(frozen=True)
class Subscriber:
    client_id: str
    nation: str
    roles: frozenset[str]


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
) -> SubscriptionRow:
    if "subscriber" not in who.roles:
        raise Forbidden("only clients with the subscriber role may subscribe")
    url = validate_endpoint(
        new.url, allow_loopback=settings.allow_loopback_endpoints, loopback_names=settings.loopback_names()
    )
    settings.egress_allowed().check_endpoint(url)
    now = utcnow()
    row = SubscriptionRow(
        id=new_id(),
        owner=who.client_id,
        nation=who.nation,
        url=url,
        description=new.description,
        event_types=validate_event_patterns(new.event_types),
        nations=validate_nations(new.nations),
        capability_areas=validate_terms(new.capability_areas, "capability_areas"),
        products=validate_terms(new.products, "products"),
        status=SubscriptionStatus.ACTIVE.value,
        secret=new_signing_secret(),
        version=1,
        created_at=now,
        updated_at=now,
    )
    async with uow() as tx:
        audit.subject("subscription", row.id, row.nation)
        tx.session.add(row)
        tx.publish(
            OutgoingEvent(
                payload=SubscriptionCreated(
                    subscription_id=row.id,
                    owner=row.owner,
                    nation=row.nation,
                    event_types=row.event_types,
                    created_at=now,
                    nations=row.nations,
                    capability_areas=row.capability_areas,
                    products=row.products,
                ),
                subject=row.id,
                releasability=Releasability(owner=who.nation),
            )
        )
    return row


async def get_subscription(db: Database, who: Subscriber, subscription_id: str) -> SubscriptionRow:
    """A subscription is its owner's: others get 404, as if it did not exist (and so does a deleted one)."""
    async with db.sessions() as session:
        row = await session.get(SubscriptionRow, subscription_id)
    if row is None or row.owner != who.client_id or row.status == SubscriptionStatus.DELETED.value:
        raise NotFound(f"no subscription {subscription_id}")
    return row


async def list_subscriptions(db: Database, who: Subscriber) -> list[SubscriptionRow]:
    async with db.sessions() as session:
        rows = await session.execute(
            select(SubscriptionRow)
            .where(
                col(SubscriptionRow.owner) == who.client_id,
                col(SubscriptionRow.status) != SubscriptionStatus.DELETED.value,
            )
            .order_by(col(SubscriptionRow.id))
        )
        return list(rows.scalars().all())


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


def filters_of(sub: SubscriptionRow) -> SubscriptionFilters:
    return SubscriptionFilters(
        event_types=tuple(sub.event_types),
        nations=tuple(sub.nations),
        capability_areas=tuple(sub.capability_areas),
        products=tuple(sub.products),
    )


async def _load_for_update(
    session: AsyncSession, who: Subscriber, subscription_id: str, expected_version: int | None
) -> SubscriptionRow:
    row = (
        await session.execute(
            select(SubscriptionRow).where(col(SubscriptionRow.id) == subscription_id).with_for_update()
        )
    ).scalar_one_or_none()
    if row is not None:
        audit.subject("subscription", row.id, row.nation)  # a refused attempt is its nation's to see too
    if row is None or row.owner != who.client_id or row.status == SubscriptionStatus.DELETED.value:
        raise NotFound(f"no subscription {subscription_id}")
    if expected_version is not None and expected_version != row.version:
        raise PreconditionFailed(
            f"the subscription is at version {row.version}, not {expected_version}",
            current_version=row.version,
        )
    return row


def _touch(row: SubscriptionRow) -> None:
    row.version += 1
    row.updated_at = utcnow()


async def update_subscription(
    uow: UnitOfWorkFactory,
    settings: NotificationsSettings,
    who: Subscriber,
    subscription_id: str,
    expected_version: int | None,
    changes: SubscriptionChanges,
) -> SubscriptionRow:
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
        row = await _load_for_update(tx.session, who, subscription_id, expected_version)
        changed = {k: v for k, v in wanted.items() if getattr(row, k) != v}
        for name, value in changed.items():
            setattr(row, name, value)
        if changed:
            _touch(row)
    if changed:
        log.info("subscription %s changed (%s) by %s", row.id, ", ".join(sorted(changed)), who.client_id)
    return row


async def rotate_secret(
    uow: UnitOfWorkFactory,
    settings: NotificationsSettings,
    who: Subscriber,
    subscription_id: str,
    expected_version: int | None,
) -> SubscriptionRow:
    """A new signing secret (the returned row carries it, to be shown once). The one it replaces keeps
    signing alongside it for `secret_grace_seconds`, so the receiver can switch without a gap."""
    async with uow() as tx:
        row = await _load_for_update(tx.session, who, subscription_id, expected_version)
        grace = settings.secret_grace_seconds
        row.previous_secret = row.secret if grace > 0 else None
        row.previous_secret_expires_at = utcnow() + timedelta(seconds=grace) if grace > 0 else None
        row.secret = new_signing_secret()
        _touch(row)
    log.info("subscription %s got a new signing secret from %s", row.id, who.client_id)
    return row


async def _settle_pending(tx: UnitOfWork, subscription_id: str, why: str) -> None:
    """What still waits for a subscription that will send nothing more is settled, not left pending."""
    await tx.session.execute(
        update(DeliveryRow)
        .where(
            col(DeliveryRow.subscription_id) == subscription_id,
            col(DeliveryRow.status) == DeliveryStatus.PENDING.value,
        )
        .values(status=DeliveryStatus.FAILED.value, next_attempt_at=None, last_error=f"not sent: {why}")
        .execution_options(synchronize_session=False)
    )


async def change_status(
    uow: UnitOfWorkFactory,
    who: Subscriber,
    subscription_id: str,
    expected_version: int | None,
    action: SubscriptionAction,
    reason: str | None = None,
) -> SubscriptionRow:
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
        row = await _load_for_update(tx.session, who, subscription_id, expected_version)
        was = SubscriptionStatus(row.status)
        becomes = next_status(was, action)
        if becomes is SubscriptionStatus.DISABLED:
            assert reason is not None
            # Disabled the one way, whoever disables: what waits is settled and the owner is told.
            await disable_subscription(tx, row, cause="owner", reason=reason, now=utcnow(), settled=settled)
        else:
            row.status = becomes.value
            _touch(row)
        if becomes is SubscriptionStatus.ACTIVE:
            row.disabled_reason = None
            if was is SubscriptionStatus.DISABLED:
                tx.publish(
                    OutgoingEvent(
                        payload=SubscriptionReenabled(
                            subscription_id=row.id,
                            owner=row.owner,
                            nation=row.nation,
                            reenabled_by=who.client_id,
                            reenabled_at=row.updated_at,
                        ),
                        subject=row.id,
                        releasability=Releasability(owner=row.nation),
                    )
                )
        elif becomes is SubscriptionStatus.DELETED:
            await _settle_pending(tx, row.id, "the subscription was deleted")
    settled.count()
    log.info("subscription %s is %s after %s by %s", row.id, row.status, action.value, who.client_id)
    return row


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
