"""Use cases of the notifications service (the webhook dispatcher is in `dispatcher`)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from opentelemetry import trace
from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.contracts import Releasability
from icep.contracts.nations import NATO
from icep.contracts.notifications import SubscriptionCreated, SubscriptionReenabled
from icep.contracts.releasability import nation_tokens
from icep.notifications import feed
from icep.notifications.dispatcher import Settled, WebhookDispatcher, disable_subscription
from icep.notifications.domain import (
    PING_EVENT_TYPE,
    DeliveryStatus,
    SubscriptionAction,
    SubscriptionFilters,
    SubscriptionStatus,
    entitled,
    new_signing_secret,
    next_status,
    ping_body,
    validate_endpoint,
    validate_event_patterns,
    validate_nations,
    validate_terms,
)
from icep.notifications.models import AttemptRow, DeliveryRow, SubscriptionRow
from icep.notifications.settings import NotificationsSettings
from icep.platform import audit
from icep.platform.db import Database, write_before_commit
from icep.platform.errors import (
    Forbidden,
    IllegalTransition,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    Unprocessable,
)
from icep.platform.events import OutgoingEvent, ReceivedEvent, utcnow
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


# --- deliveries: seeing them and acting on them ----------------------------------------------------


def _may_see_all(who: Subscriber, sub: SubscriptionRow) -> bool:
    """Operators see and act on the deliveries of their own nation's subscriptions (NATO's on every
    one); a subscriber only on its own. An operator of another nation than the subscription's sees
    only the deliveries of events released to its nation (`_released_only`)."""
    return "operator" in who.roles and who.nation in (sub.nation, NATO)


def _released_only(who: Subscriber, sub: SubscriptionRow) -> str | None:
    """The nation whose entitlement limits what `who` sees of `sub`'s deliveries, or None when it sees
    them all. The subscription's own nation saw every event it received; anyone else (a NATO operator
    on a national subscription) only those released to its nation, as the feed would show it."""
    return None if who.nation == sub.nation else who.nation


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _released_in_sql(nation: str) -> sa.ColumnElement[bool]:
    """SQL keeping every delivery whose event (the stored CloudEvent: its `nation` and `releasableto`)
    `nation` may see, and perhaps a few more (a nested `nation` key, SQLite's LIKE ignoring case):
    `_released_to` decides."""
    body = col(DeliveryRow.body)
    found = [body.like(f'%"nation":"{_like(nation)}"%', escape="\\")]
    for token in sorted(nation_tokens(nation)):
        t = _like(token)
        for pattern in (f'"{t}"', f'"{t},', f'"%,{t}"', f'"%,{t},'):
            found.append(body.like(f'%"releasableto":{pattern}%', escape="\\"))
    return sa.or_(*found)


def _released_to(nation: str, delivery: DeliveryRow) -> bool:
    """Whether the delivery's event is released to `nation` (the feed's rule); a body that does not say
    is released to nobody but the subscription's own nation."""
    try:
        event = json.loads(delivery.body)
        owner, marking = event["nation"], event["releasableto"]
        if not isinstance(owner, str) or not isinstance(marking, str):
            return False
        return entitled(nation, Releasability.from_marking(owner, marking))
    except (ValueError, TypeError, KeyError):  # not JSON, not an object, no such key, unknown nation
        return False


async def _delivery_subscription(
    session: AsyncSession, who: Subscriber, subscription_id: str, *, for_update: bool = False
) -> SubscriptionRow:
    query = select(SubscriptionRow).where(col(SubscriptionRow.id) == subscription_id)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).scalar_one_or_none()
    if row is not None:
        audit.subject("subscription", row.id, row.nation)
    if (
        row is None
        or row.status == SubscriptionStatus.DELETED.value
        or (row.owner != who.client_id and not _may_see_all(who, row))
    ):
        raise NotFound(f"no subscription {subscription_id}")
    return row


async def _attempts_of(session: AsyncSession, delivery_ids: list[str]) -> dict[str, list[AttemptRow]]:
    by_delivery: dict[str, list[AttemptRow]] = {}
    if not delivery_ids:
        return by_delivery
    attempts = (
        (
            await session.execute(
                select(AttemptRow)
                .where(col(AttemptRow.delivery_id).in_(delivery_ids))
                .order_by(col(AttemptRow.attempted_at), col(AttemptRow.id))
            )
        )
        .scalars()
        .all()
    )
    for a in attempts:
        by_delivery.setdefault(a.delivery_id, []).append(a)
    return by_delivery


async def list_deliveries(
    db: Database, who: Subscriber, subscription_id: str, limit: int
) -> list[tuple[DeliveryRow, list[AttemptRow]]]:
    """The newest deliveries of a subscription, each with its attempts."""
    found, _ = await delivery_page(db, who, subscription_id, limit)
    return found


async def delivery_page(
    db: Database,
    who: Subscriber,
    subscription_id: str,
    limit: int,
    *,
    status: DeliveryStatus | None = None,
    after: str | None = None,
) -> tuple[list[tuple[DeliveryRow, list[AttemptRow]]], str | None]:
    """One page of a subscription's deliveries, newest first, each with its attempts, and the cursor of
    the next page (the last delivery id shown) or None. Operators may read those of their nation's
    subscriptions (NATO's of any); of another nation's, only deliveries of events released to theirs."""
    async with db.sessions() as session:
        sub = await _delivery_subscription(session, who, subscription_id)
        query = select(DeliveryRow).where(col(DeliveryRow.subscription_id) == subscription_id)
        if status is not None:
            query = query.where(col(DeliveryRow.status) == status.value)
        if after:
            query = query.where(col(DeliveryRow.id) < after)
        rows = await _shown(session, query, _released_only(who, sub), limit + 1, newest_first=True)
        deliveries, more = rows[:limit], len(rows) > limit
        by_delivery = await _attempts_of(session, [d.id for d in deliveries])
    cursor = deliveries[-1].id if more and deliveries else None
    return [(d, by_delivery.get(d.id, [])) for d in deliveries], cursor


async def _shown(
    session: AsyncSession,
    query: Select[tuple[DeliveryRow]],
    nation: str | None,
    wanted: int,
    *,
    newest_first: bool,
) -> list[DeliveryRow]:
    """Up to `wanted` deliveries of `query` in id order that `nation` may see (None: all of them).

    SQL narrows to the released ones and Python decides; when it drops one, the next batch is read from
    where the last one ended, so a page is never short while more deliveries that may be shown follow.
    """
    order = col(DeliveryRow.id).desc() if newest_first else col(DeliveryRow.id)
    if nation is None:
        return list((await session.execute(query.order_by(order).limit(wanted))).scalars().all())
    query = query.where(_released_in_sql(nation))
    found: list[DeliveryRow] = []
    last: str | None = None
    while True:
        batch = query
        if last is not None:
            batch = batch.where(col(DeliveryRow.id) < last if newest_first else col(DeliveryRow.id) > last)
        rows = list((await session.execute(batch.order_by(order).limit(wanted))).scalars().all())
        for row in rows:
            if _released_to(nation, row):
                found.append(row)
                if len(found) == wanted:
                    return found
        if len(rows) < wanted:
            return found
        last = rows[-1].id


def _is_shown(row: DeliveryRow | None, sub: SubscriptionRow, who: Subscriber) -> bool:
    """A delivery of `sub` that `who` may see: one of another subscription, or of an event not
    released to the operator of another nation, is as missing as one that never was."""
    if row is None or row.subscription_id != sub.id:
        return False
    nation = _released_only(who, sub)
    return nation is None or _released_to(nation, row)


async def get_delivery(
    db: Database, who: Subscriber, subscription_id: str, delivery_id: str
) -> tuple[DeliveryRow, list[AttemptRow]]:
    async with db.sessions() as session:
        sub = await _delivery_subscription(session, who, subscription_id)
        row = await session.get(DeliveryRow, delivery_id)
        if not _is_shown(row, sub, who):
            raise NotFound(f"no delivery {delivery_id} of subscription {subscription_id}")
        assert row is not None
        attempts = (await _attempts_of(session, [row.id])).get(row.id, [])
    return row, attempts


def _sending(sub: SubscriptionRow, action: str) -> None:
    """Redelivery and replay need a subscription that sends (a paused one's wait until it resumes)."""
    if sub.status not in (SubscriptionStatus.ACTIVE.value, SubscriptionStatus.PAUSED.value):
        raise IllegalTransition("subscription", action, sub.status)


async def redeliver(
    uow: UnitOfWorkFactory, who: Subscriber, subscription_id: str, delivery_id: str
) -> tuple[DeliveryRow, list[AttemptRow]]:
    """One more attempt of a delivery, now: also after it was delivered or failed for good. A settled
    delivery gets exactly one attempt (no new retry schedule); a pending one just goes now. Returns the
    delivery as it was left, waiting, with its attempts so far."""
    async with uow() as tx:
        sub = await _delivery_subscription(tx.session, who, subscription_id, for_update=True)
        _sending(sub, "redeliver to")
        row = await tx.session.get(DeliveryRow, delivery_id, with_for_update=True)
        if not _is_shown(row, sub, who):
            raise NotFound(f"no delivery {delivery_id} of subscription {subscription_id}")
        assert row is not None
        now = utcnow()
        if row.status != DeliveryStatus.PENDING.value:
            row.status = DeliveryStatus.PENDING.value
            row.redelivery_requested_at = now
        row.next_attempt_at = now
        attempts = (await _attempts_of(tx.session, [row.id])).get(row.id, [])
    log.info("delivery %s of subscription %s redelivered by %s", row.id, sub.id, who.client_id)
    return row, attempts


@dataclass(frozen=True)
class Replay:
    replayed: int
    since: datetime
    #: When not everything fit in one replay: where the next one should start.
    next_since: datetime | None


async def replay(
    uow: UnitOfWorkFactory,
    settings: NotificationsSettings,
    who: Subscriber,
    subscription_id: str,
    since: datetime,
) -> Replay:
    """Deliver again every event the subscription received (or was to receive) since `since`: a new
    delivery per event, in the order they first came, with the same `webhook-id` (the event id) so
    receivers can deduplicate. The events are taken from the subscription's deliveries: what it did not
    get then (not subscribed, not entitled) is not sent now either. An operator of another nation than
    the subscription's replays only the events released to its own nation."""
    if since.tzinfo is None:
        raise Unprocessable("`since` needs a time zone", field="since")
    try:
        since = since.astimezone(UTC)  # stored times are UTC (and SQLite compares them as text)
    except OverflowError:
        raise Unprocessable("`since` is out of range", field="since") from None
    limit = settings.max_replay_events
    span_ctx = trace.get_current_span().get_span_context()
    traceparent = (
        f"00-{span_ctx.trace_id:032x}-{span_ctx.span_id:016x}-{span_ctx.trace_flags:02x}"
        if span_ctx.is_valid
        else None
    )
    async with uow() as tx:
        # Locked: two replays of one subscription at once would pick the same generation.
        sub = await _delivery_subscription(tx.session, who, subscription_id, for_update=True)
        _sending(sub, "replay to")
        originals = await _shown(
            tx.session,
            select(DeliveryRow).where(
                col(DeliveryRow.subscription_id) == sub.id,
                col(DeliveryRow.generation) == 0,
                col(DeliveryRow.created_at) >= since,
            ),
            _released_only(who, sub),
            limit + 1,
            newest_first=False,
        )
        next_since = originals[limit].created_at if len(originals) > limit else None
        originals = originals[:limit]
        generations: dict[str, int] = {}
        for start in range(0, len(originals), 1000):
            chunk = [d.event_id for d in originals[start : start + 1000]]
            found = await tx.session.execute(
                select(col(DeliveryRow.event_id), func.max(col(DeliveryRow.generation)))
                .where(col(DeliveryRow.subscription_id) == sub.id, col(DeliveryRow.event_id).in_(chunk))
                .group_by(col(DeliveryRow.event_id))
            )
            generations.update({event_id: int(top) for event_id, top in found.tuples().all()})
        now = utcnow()
        for original in originals:  # new ids in the original order: each aggregate stays in order
            tx.session.add(
                DeliveryRow(
                    id=new_id(),
                    subscription_id=sub.id,
                    event_id=original.event_id,
                    event_type=original.event_type,
                    subject=original.subject,
                    body=original.body,
                    status=DeliveryStatus.PENDING.value,
                    next_attempt_at=now,
                    traceparent=traceparent,
                    created_at=now,
                    generation=generations.get(original.event_id, 0) + 1,
                    replay_of=original.id,
                )
            )
    log.info(
        "subscription %s: %d events since %s replayed by %s", sub.id, len(originals), since, who.client_id
    )
    if next_since is not None and next_since.tzinfo is None:
        next_since = next_since.replace(tzinfo=UTC)
    return Replay(len(originals), since, next_since)


#: Where `fan_out` keeps the subscriptions it read, for the rest of the consumer's transaction.
_FAN_OUT_KEY = "icep.notifications.fan_out_subscriptions"


async def _fan_out_subscriptions(session: AsyncSession) -> list[tuple[str, str, SubscriptionFilters]]:
    """The active and paused subscriptions (id, nation, filters), read once per transaction: a consumer
    batch fans out many events in one transaction, and re-reading them per event was a query plus row
    construction (and unsealing a secret it never uses) per event. Per transaction, never longer, so a
    change committed by any replica is seen by the next batch: no cache to invalidate across processes."""
    cached = session.info.get(_FAN_OUT_KEY)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    subs = SubscriptionRow.__table__.c  # type: ignore[attr-defined]
    rows = await session.execute(
        sa.select(
            subs.id, subs.nation, subs.event_types, subs.nations, subs.capability_areas, subs.products
        ).where(subs.status.in_([SubscriptionStatus.ACTIVE.value, SubscriptionStatus.PAUSED.value]))
    )
    found = [
        (
            row.id,
            row.nation,
            SubscriptionFilters(
                event_types=tuple(row.event_types),
                nations=tuple(row.nations),
                capability_areas=tuple(row.capability_areas),
                products=tuple(row.products),
            ),
        )
        for row in rows
    ]
    session.info[_FAN_OUT_KEY] = found
    return found


async def fan_out(session: AsyncSession, event: ReceivedEvent) -> int:
    """Consumer handler: one persisted delivery per active or paused subscription whose filters the event
    passes and whose nation may see it (a paused one's wait until it resumes; a disabled one gets none).

    Runs inside the consumer's transaction with the inbox row, so the deliveries exist before the offset
    is committed and a redelivered record creates none twice. The event is logged for the feed and the
    stream in the same transaction. The log rows and the deliveries of a whole consumer batch are written
    in one statement each (SQLAlchemy Core), just before that transaction commits.
    """
    write_before_commit(session, feed.append_rows, feed.log_row(event))
    subscriptions = await _fan_out_subscriptions(session)
    releasability = event.releasability
    body = json.dumps(event.body(), separators=(",", ":"))
    span_ctx = trace.get_current_span().get_span_context()
    traceparent = (
        f"00-{span_ctx.trace_id:032x}-{span_ctx.span_id:016x}-{span_ctx.trace_flags:02x}"
        if span_ctx.is_valid
        else None
    )
    now = utcnow()
    rows = [
        {
            "id": new_id(),
            "subscription_id": sub_id,
            "event_id": event.id,
            "event_type": event.type,
            "subject": event.subject,
            "body": body,
            "status": DeliveryStatus.PENDING.value,
            "attempts": 0,
            "next_attempt_at": now,
            "traceparent": traceparent,
            "created_at": now,
        }
        # Entitlement first and always: the filters can only narrow what the owner's nation may see.
        for sub_id, nation, filters in subscriptions
        if entitled(nation, releasability) and filters.accepts(event.type, event.nation, event.data)
    ]
    for row in rows:
        write_before_commit(session, _insert_deliveries, row)
    return len(rows)


async def _insert_deliveries(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    await session.execute(sa.insert(DeliveryRow.__table__), rows)  # type: ignore[attr-defined]
