"""Subscriptions in the database: rows to `Subscription` aggregates and back, and the owner's reads."""

from __future__ import annotations

from dataclasses import fields

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.notifications.subscriptions.model import Subscriber, Subscription, SubscriptionStatus
from icep.notifications.subscriptions.rows import SubscriptionRow
from icep.platform import audit
from icep.platform.domain import check_version
from icep.platform.errors import NotFound
from icep.platform.outbox import UnitOfWork

#: The aggregate's fields that are columns of its row (all but the recorded events).
_COLUMNS = tuple(f.name for f in fields(Subscription) if f.name != "events")


def to_subscription(row: SubscriptionRow) -> Subscription:
    return Subscription(
        id=row.id,
        owner=row.owner,
        nation=row.nation,
        url=row.url,
        description=row.description,
        event_types=list(row.event_types),
        nations=list(row.nations),
        capability_areas=list(row.capability_areas),
        products=list(row.products),
        status=SubscriptionStatus(row.status),
        disabled_reason=row.disabled_reason,
        secret=row.secret,
        previous_secret=row.previous_secret,
        previous_secret_expires_at=row.previous_secret_expires_at,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        failing_since=row.failing_since,
    )


def _column_value(value: object) -> object:
    if isinstance(value, SubscriptionStatus):
        return value.value
    if isinstance(value, list):
        return list(value)  # the row's own list: the aggregate's stays as it was
    return value


def _owned(row: SubscriptionRow | None, who: Subscriber) -> bool:
    """A subscription is its owner's: to anyone else it is as missing as a deleted one."""
    return row is not None and row.owner == who.client_id and row.status != SubscriptionStatus.DELETED.value


class SubscriptionRepository:
    """Subscriptions changed in one unit of work: loaded locked, stored back with what they recorded."""

    def __init__(self, tx: UnitOfWork) -> None:
        self.tx = tx
        self._rows: dict[str, SubscriptionRow] = {}

    async def get_for_update(
        self, who: Subscriber, subscription_id: str, expected_version: int | None
    ) -> Subscription:
        """The caller's subscription, locked for this transaction, at the version the caller read (412
        otherwise); 404 when it is not the caller's or was deleted."""
        row = (
            await self.tx.session.execute(
                select(SubscriptionRow).where(col(SubscriptionRow.id) == subscription_id).with_for_update()
            )
        ).scalar_one_or_none()
        if row is not None:
            audit.subject("subscription", row.id, row.nation)  # a refused attempt is its nation's to see too
        if row is None or not _owned(row, who):
            raise NotFound(f"no subscription {subscription_id}")
        check_version("subscription", row.version, expected_version)
        return self.held(row)

    def held(self, row: SubscriptionRow) -> Subscription:
        """The subscription of a row this transaction already holds locked (the dispatcher reads a
        batch's subscriptions at once)."""
        self._rows[row.id] = row
        return to_subscription(row)

    async def save(self, subscription: Subscription) -> None:
        """Store the subscription (a new one is added) and publish what it recorded with this commit."""
        row = self._rows.get(subscription.id)
        if row is None:
            row = SubscriptionRow(
                id=subscription.id,
                owner=subscription.owner,
                nation=subscription.nation,
                url=subscription.url,
                description=subscription.description,
                event_types=list(subscription.event_types),
                nations=list(subscription.nations),
                capability_areas=list(subscription.capability_areas),
                products=list(subscription.products),
                status=subscription.status.value,
                disabled_reason=subscription.disabled_reason,
                secret=subscription.secret,
                previous_secret=subscription.previous_secret,
                previous_secret_expires_at=subscription.previous_secret_expires_at,
                version=subscription.version,
                created_at=subscription.created_at,
                updated_at=subscription.updated_at,
                failing_since=subscription.failing_since,
            )
            audit.subject("subscription", row.id, row.nation)
            self.tx.session.add(row)
            self._rows[row.id] = row
        else:
            for name in _COLUMNS:
                value = _column_value(getattr(subscription, name))
                if getattr(row, name) != value:
                    setattr(row, name, value)
        self.tx.collect(subscription)


async def find_owned(session: AsyncSession, who: Subscriber, subscription_id: str) -> Subscription:
    """The caller's subscription (not locked): others get 404, as if it did not exist, and so does a
    deleted one."""
    row = await session.get(SubscriptionRow, subscription_id)
    if row is None or not _owned(row, who):
        raise NotFound(f"no subscription {subscription_id}")
    return to_subscription(row)


async def owned_by(session: AsyncSession, who: Subscriber) -> list[Subscription]:
    """The caller's subscriptions but the deleted ones, in id order."""
    rows = await session.execute(
        select(SubscriptionRow)
        .where(
            col(SubscriptionRow.owner) == who.client_id,
            col(SubscriptionRow.status) != SubscriptionStatus.DELETED.value,
        )
        .order_by(col(SubscriptionRow.id))
    )
    return [to_subscription(row) for row in rows.scalars().all()]
