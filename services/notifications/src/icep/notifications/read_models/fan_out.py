"""The fan-out of every consumed event: an entry of the event log (the feed's read model) and a pending
delivery per subscription whose filters accept it, in the consumer's transaction."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncSession

from icep.notifications.deliveries.model import DeliveryStatus
from icep.notifications.deliveries.rows import DeliveryRow
from icep.notifications.read_models.feed import log as feed
from icep.notifications.subscriptions.filters import SubscriptionFilters, entitled
from icep.notifications.subscriptions.model import SubscriptionStatus
from icep.notifications.subscriptions.rows import SubscriptionRow
from icep.platform.db import write_before_commit
from icep.platform.events import ReceivedEvent, utcnow
from icep.platform.ids import new_id

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
