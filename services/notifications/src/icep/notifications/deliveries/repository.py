"""Deliveries in the database: settling at once what still waits for a subscription that sends no more."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.notifications.deliveries.model import DeliveryStatus
from icep.notifications.deliveries.rows import DeliveryRow


async def fail_pending_of_disabled(session: AsyncSession, subscription_id: str, reason: str) -> int:
    """Fail what still waits for a subscription just disabled (a redelivery asked for included), so nothing
    lingers as pending for a subscription that sends nothing; returns how many. The subscription's change
    is flushed first: what the caller settled already is not "still waiting"."""
    await session.flush()
    failed = await session.execute(
        update(DeliveryRow)
        .where(
            col(DeliveryRow.subscription_id) == subscription_id,
            col(DeliveryRow.status) == DeliveryStatus.PENDING.value,
        )
        .values(
            status=DeliveryStatus.FAILED.value,
            next_attempt_at=None,
            redelivery_requested_at=None,
            last_error=f"not sent: the subscription was disabled ({reason})"[:2000],
        )
        # Rows the caller holds (a batch of recorded attempts) learn that they are settled.
        .execution_options(synchronize_session="evaluate")
    )
    return int(getattr(failed, "rowcount", 0) or 0)


async def fail_pending_of_deleted(session: AsyncSession, subscription_id: str) -> None:
    """What still waits for a deleted subscription is settled, not left pending."""
    await session.execute(
        update(DeliveryRow)
        .where(
            col(DeliveryRow.subscription_id) == subscription_id,
            col(DeliveryRow.status) == DeliveryStatus.PENDING.value,
        )
        .values(
            status=DeliveryStatus.FAILED.value,
            next_attempt_at=None,
            last_error="not sent: the subscription was deleted",
        )
        .execution_options(synchronize_session=False)
    )
