"""How a webhook attempt's outcome settles its delivery: the attempt's result, recording finished
attempts in one transaction, and the verdict (delivered, retried on the schedule, failed for good, or
the subscription disabled because its endpoint is gone or has failed too long).

Also `disable_subscription`, which the subscription use cases share, and the metrics of attempts,
settled deliveries and disabled subscriptions (counted once the transaction has committed).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from prometheus_client import Counter
from sqlalchemy import select
from sqlmodel import col

from icep.contracts import Releasability
from icep.contracts.nations import NATO
from icep.contracts.notifications import DeliveryFailed
from icep.notifications.deliveries.model import DeliveryStatus, RetrySchedule
from icep.notifications.deliveries.repository import fail_pending_of_disabled
from icep.notifications.deliveries.rows import AttemptRow, DeliveryRow
from icep.notifications.settings import NotificationsSettings
from icep.notifications.subscriptions.model import Subscription, SubscriptionStatus
from icep.notifications.subscriptions.repository import SubscriptionRepository
from icep.notifications.subscriptions.rows import SubscriptionRow
from icep.platform.events import OutgoingEvent, as_utc, utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWork, UnitOfWorkFactory

ATTEMPTS = Counter("icep_webhook_attempts_total", "Webhook delivery attempts", ["outcome"])


DELIVERIES = Counter(
    "icep_webhook_deliveries_total", "Webhook deliveries settled, by final outcome", ["outcome"]
)


SUBSCRIPTIONS_DISABLED = Counter(
    "icep_webhook_subscriptions_disabled_total", "Subscriptions disabled, by cause", ["cause"]
)


#: The outcomes an attempt is counted under: `delivered` succeeded; `failed` (retried later), `exhausted`
#: (no retry left), `gone` (410) and `disabled` (failing too long) did not; `late` recorded nothing (the
#: delivery was settled meanwhile). Failure ratio: the not-delivered ones over all but `late`.
ATTEMPT_OUTCOMES = ("delivered", "failed", "exhausted", "gone", "disabled", "late")


for _outcome in ATTEMPT_OUTCOMES:
    ATTEMPTS.labels(_outcome)


for _outcome in ("delivered", "failed"):
    DELIVERIES.labels(_outcome)


for _cause in ("gone", "failing", "owner", "operator"):
    SUBSCRIPTIONS_DISABLED.labels(_cause)


@dataclass
class Settled:
    """What recording attempts and disabling subscriptions settled, counted in the metrics only once the
    transaction that settled it has committed."""

    delivered: int = 0
    failed: int = 0
    disabled: dict[str, int] = field(default_factory=dict)

    def count(self) -> None:
        if self.delivered:
            DELIVERIES.labels("delivered").inc(self.delivered)
        if self.failed:
            DELIVERIES.labels("failed").inc(self.failed)
        for cause, n in self.disabled.items():
            SUBSCRIPTIONS_DISABLED.labels(cause).inc(n)


async def disable_subscription(
    subscriptions: SubscriptionRepository,
    subscription: Subscription,
    *,
    cause: str,
    reason: str,
    now: datetime,
    settled: Settled,
) -> Subscription:
    """Disable a subscription (it records `SubscriptionWasDisabled`: its owner is told), and fail what
    still waits for it, so nothing lingers as pending for a subscription that sends nothing.

    `cause` is `gone` (410), `failing` (failed too long), `owner` or `operator`. The caller holds the
    subscription locked in the repository's unit of work and, after the commit, calls `settled.count()`.
    """
    subscription = subscription.disable(cause, reason, now)
    await subscriptions.save(subscription)
    settled.failed += await fail_pending_of_disabled(subscriptions.tx.session, subscription.id, reason)
    settled.disabled[cause] = settled.disabled.get(cause, 0) + 1
    return subscription


async def _disable_held(
    subscriptions: SubscriptionRepository,
    sub: SubscriptionRow,
    *,
    cause: str,
    reason: str,
    now: datetime,
    settled: Settled,
) -> None:
    """`disable_subscription` for a subscription row the dispatcher's batch holds; one disabled already
    stays as it is (its owner was told then)."""
    if sub.status == SubscriptionStatus.DISABLED.value:
        return
    subscription = subscriptions.held(sub)
    await disable_subscription(
        subscriptions, subscription, cause=cause, reason=reason, now=now, settled=settled
    )


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    error: str | None
    response_body: str | None
    latency_ms: float
    retry_after: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(eq=False)
class _Finished:
    """An attempt made, waiting to be recorded."""

    delivery_id: str
    subscription_id: str
    result: AttemptResult
    recorded: asyncio.Future[None]


class AttemptRecording:
    """Recording finished attempts and settling their deliveries: the part of `WebhookDispatcher` that
    writes what an attempt came to (its `AttemptRow`, the delivery delivered, retried or failed, the
    subscription disabled when its endpoint is gone or has failed too long)."""

    uow: UnitOfWorkFactory
    settings: NotificationsSettings
    schedule: RetrySchedule

    async def _record(self, batch: list[_Finished]) -> None:
        """Record finished attempts and settle their deliveries, in one transaction. Subscriptions are
        locked before their deliveries (as every use case that changes both does), in id order."""
        outcomes: list[str] = []
        settled = Settled()
        async with self.uow() as tx:
            # Two reads for the whole batch (its rows locked), then one flush at the commit.
            subs = {
                s.id: s
                for s in (
                    await tx.session.execute(
                        select(SubscriptionRow)
                        .where(col(SubscriptionRow.id).in_({f.subscription_id for f in batch}))
                        .order_by(col(SubscriptionRow.id))
                        .with_for_update()
                    )
                ).scalars()
            }
            deliveries = {
                d.id: d
                for d in (
                    await tx.session.execute(
                        select(DeliveryRow)
                        .where(col(DeliveryRow.id).in_([f.delivery_id for f in batch]))
                        .order_by(col(DeliveryRow.subscription_id), col(DeliveryRow.id))
                        .with_for_update()
                    )
                ).scalars()
            }
            attempts: list[dict[str, Any]] = []
            for finished in batch:
                delivery = deliveries.get(finished.delivery_id)
                sub = subs.get(finished.subscription_id)
                outcomes.append(await self._record_one(tx, finished, delivery, sub, settled, attempts))
            if attempts:
                # The batch's attempts in one statement (Core): no ORM object per attempt.
                await tx.session.execute(sa.insert(AttemptRow.__table__), attempts)  # type: ignore[attr-defined]
        for outcome in outcomes:
            ATTEMPTS.labels(outcome).inc()
        settled.count()

    async def _record_one(
        self,
        tx: UnitOfWork,
        finished: _Finished,
        delivery: DeliveryRow | None,
        sub: SubscriptionRow | None,
        settled: Settled,
        attempts: list[dict[str, Any]],
    ) -> str:
        """Settle one finished attempt; its `AttemptRow` values go to `attempts` (written by `_record`)."""
        result = finished.result
        if delivery is None:
            return "late"
        error = _storable(result.error, 2000)
        now = utcnow()
        attempts.append(
            {
                "id": new_id(),
                "delivery_id": delivery.id,
                "attempted_at": now,
                "status_code": result.status_code,
                "error": error,
                "response_body": _storable(result.response_body, self.settings.max_response_bytes),
                "latency_ms": result.latency_ms,
            }
        )
        if delivery.status != DeliveryStatus.PENDING.value:
            # Settled meanwhile (its subscription was disabled): keep the attempt, not the verdict.
            return "late"
        return await self._settle(tx, delivery, sub, result, error, now, settled)

    async def _settle(
        self,
        tx: UnitOfWork,
        delivery: DeliveryRow,
        sub: SubscriptionRow | None,
        result: AttemptResult,
        error: str | None,
        now: datetime,
        settled: Settled,
    ) -> str:
        """Apply one attempt's outcome to its pending delivery (and its subscription); returns the
        attempt's outcome for the metrics."""
        delivery.attempts += 1
        delivery.last_status_code = result.status_code
        delivery.last_error = error
        # A redelivery someone asked for is one attempt, not a new retry schedule.
        requested = delivery.redelivery_requested_at is not None
        delivery.redelivery_requested_at = None
        if result.ok:
            delivery.status = DeliveryStatus.DELIVERED.value
            delivery.delivered_at = now
            delivery.next_attempt_at = None
            if sub is not None and sub.failing_since is not None:
                sub.failing_since = None  # one answer is enough: it is not failing any more
            settled.delivered += 1
            return "delivered"
        if sub is not None and result.status_code == 410:
            # The receiver says it is gone for good: stop sending to it.
            self._fail(delivery, settled)
            await _disable_held(
                SubscriptionRepository(tx),
                sub,
                cause="gone",
                reason="the endpoint answered 410 Gone",
                now=now,
                settled=settled,
            )
            return "gone"
        if sub is not None:
            if sub.failing_since is None or as_utc(sub.failing_since) < as_utc(sub.updated_at):
                # Failing from now on. A change to the subscription since (a new URL, a resume after a
                # pause) starts the clock again: time it was not trying to send does not count.
                sub.failing_since = now
            elif now - as_utc(sub.failing_since) >= timedelta(
                seconds=self.settings.disable_after_failing_seconds
            ):
                since = as_utc(sub.failing_since)
                self._fail(delivery, settled)
                await _disable_held(
                    SubscriptionRepository(tx),
                    sub,
                    cause="failing",
                    reason=(
                        f"every attempt failed since {since:%Y-%m-%d %H:%M:%S} UTC"
                        f" ({_duration(now - since)}); the last: {error or result.status_code}"
                    ),
                    now=now,
                    settled=settled,
                )
                return "disabled"
        if requested:
            self._fail(delivery, settled)
            return "failed"
        delay = self.schedule.next_delay(delivery.attempts)
        if delay is None:
            self._fail(delivery, settled)
            nation = sub.nation if sub is not None else NATO
            tx.publish(
                OutgoingEvent(
                    payload=DeliveryFailed(
                        subscription_id=delivery.subscription_id,
                        delivery_id=delivery.id,
                        event_id=delivery.event_id,
                        event_type_delivered=delivery.event_type,
                        attempts=delivery.attempts,
                        last_status_code=result.status_code,
                        last_error=error,
                        failed_at=now,
                    ),
                    subject=delivery.subscription_id,
                    releasability=Releasability(owner=nation),
                )
            )
            return "exhausted"
        if result.status_code in (429, 503):
            delay = RetrySchedule.honour_retry_after(delay, result.retry_after, now)
        delivery.next_attempt_at = now + timedelta(seconds=delay)
        return "failed"

    @staticmethod
    def _fail(delivery: DeliveryRow, settled: Settled) -> None:
        delivery.status = DeliveryStatus.FAILED.value
        delivery.next_attempt_at = None
        settled.failed += 1


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds >= 2 * 86400:
        return f"{seconds // 86400} days"
    if seconds >= 7200:
        return f"{seconds // 3600} hours"
    if seconds >= 120:
        return f"{seconds // 60} minutes"
    return f"{seconds} seconds"


def _storable(text: str | None, limit: int) -> str | None:
    """Text a database column takes: PostgreSQL refuses NUL characters, which a receiver may send."""
    if text is None:
        return None
    return text[:limit].replace("\x00", "\ufffd")
