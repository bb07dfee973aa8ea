"""Use cases of webhook deliveries: seeing them and their attempts (as far as the caller may), sending one
again, and replaying a time range of events to a subscription. The dispatcher that sends them is in
`dispatcher`."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from opentelemetry import trace
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.contracts import Releasability
from icep.contracts.nations import NATO
from icep.contracts.releasability import nation_tokens
from icep.notifications.deliveries.model import DeliveryStatus
from icep.notifications.deliveries.rows import AttemptRow, DeliveryRow
from icep.notifications.settings import NotificationsSettings
from icep.notifications.subscriptions.filters import entitled
from icep.notifications.subscriptions.model import Subscriber, SubscriptionStatus
from icep.notifications.subscriptions.rows import SubscriptionRow
from icep.platform import audit
from icep.platform.db import Database
from icep.platform.errors import (
    IllegalTransition,
    NotFound,
    Unprocessable,
)
from icep.platform.events import utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWorkFactory

log = logging.getLogger("icep.notifications")


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
