"""Use cases of the notifications service, and the webhook dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
from opentelemetry import trace
from prometheus_client import Counter, Histogram
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col
from standardwebhooks import Webhook

from icep.contracts import Releasability
from icep.contracts.notifications import DeliveryFailed, SubscriptionCreated
from icep.notifications.domain import (
    DeliveryStatus,
    RetrySchedule,
    SubscriptionStatus,
    address_allowed,
    entitled,
    matches,
    new_signing_secret,
    validate_endpoint,
    validate_event_patterns,
)
from icep.notifications.models import AttemptRow, DeliveryRow, SubscriptionRow
from icep.notifications.settings import NotificationsSettings
from icep.platform.db import Database
from icep.platform.errors import Forbidden, NotFound
from icep.platform.events import OutgoingEvent, ReceivedEvent, utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWorkFactory
from icep.platform.telemetry import context_from, tracer

log = logging.getLogger("icep.notifications")

ATTEMPTS = Counter("icep_webhook_attempts_total", "Webhook delivery attempts", ["outcome"])
LATENCY = Histogram("icep_webhook_latency_seconds", "Webhook request latency")


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


def _aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything here is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=utcnow().tzinfo)
    return value


async def create_subscription(
    uow: UnitOfWorkFactory, settings: NotificationsSettings, who: Subscriber, new: NewSubscription
) -> SubscriptionRow:
    if "subscriber" not in who.roles:
        raise Forbidden("only clients with the subscriber role may subscribe")
    url = validate_endpoint(new.url, allow_loopback=settings.allow_loopback_endpoints)
    now = utcnow()
    row = SubscriptionRow(
        id=new_id(),
        owner=who.client_id,
        nation=who.nation,
        url=url,
        description=new.description,
        event_types=validate_event_patterns(new.event_types),
        status=SubscriptionStatus.ACTIVE.value,
        secret=new_signing_secret(),
        version=1,
        created_at=now,
        updated_at=now,
    )
    async with uow() as tx:
        tx.session.add(row)
        tx.publish(
            OutgoingEvent(
                payload=SubscriptionCreated(
                    subscription_id=row.id,
                    owner=row.owner,
                    nation=row.nation,
                    event_types=row.event_types,
                    created_at=now,
                ),
                subject=row.id,
                releasability=Releasability(owner=who.nation),
            )
        )
    return row


async def get_subscription(db: Database, who: Subscriber, subscription_id: str) -> SubscriptionRow:
    """A subscription is its owner's: others get 404, as if it did not exist."""
    async with db.sessions() as session:
        row = await session.get(SubscriptionRow, subscription_id)
    if row is None or row.owner != who.client_id:
        raise NotFound(f"no subscription {subscription_id}")
    return row


async def list_subscriptions(db: Database, who: Subscriber) -> list[SubscriptionRow]:
    async with db.sessions() as session:
        rows = await session.execute(
            select(SubscriptionRow)
            .where(col(SubscriptionRow.owner) == who.client_id)
            .order_by(col(SubscriptionRow.id))
        )
        return list(rows.scalars().all())


async def list_deliveries(
    db: Database, who: Subscriber, subscription_id: str, limit: int
) -> list[tuple[DeliveryRow, list[AttemptRow]]]:
    await get_subscription(db, who, subscription_id)
    async with db.sessions() as session:
        deliveries = (
            (
                await session.execute(
                    select(DeliveryRow)
                    .where(col(DeliveryRow.subscription_id) == subscription_id)
                    .order_by(col(DeliveryRow.id).desc())
                    .limit(limit)
                )
            )
            .scalars()
            .all()
        )
        attempts = (
            (
                await session.execute(
                    select(AttemptRow)
                    .where(col(AttemptRow.delivery_id).in_([d.id for d in deliveries]))
                    .order_by(col(AttemptRow.attempted_at))
                )
            )
            .scalars()
            .all()
        )
    by_delivery: dict[str, list[AttemptRow]] = {}
    for a in attempts:
        by_delivery.setdefault(a.delivery_id, []).append(a)
    return [(d, by_delivery.get(d.id, [])) for d in deliveries]


async def fan_out(session: AsyncSession, event: ReceivedEvent) -> int:
    """Consumer handler: one persisted delivery per active subscription that matches and is entitled.

    Runs inside the consumer's transaction with the inbox row, so the deliveries exist before the offset
    is committed and a redelivered record creates none twice.
    """
    subscriptions = (
        (
            await session.execute(
                select(SubscriptionRow).where(
                    col(SubscriptionRow.status) != SubscriptionStatus.DISABLED.value
                )
            )
        )
        .scalars()
        .all()
    )
    releasability = event.releasability
    body = json.dumps(event.body(), separators=(",", ":"))
    span_ctx = trace.get_current_span().get_span_context()
    traceparent = (
        f"00-{span_ctx.trace_id:032x}-{span_ctx.span_id:016x}-{span_ctx.trace_flags:02x}"
        if span_ctx.is_valid
        else None
    )
    now = utcnow()
    created = 0
    for sub in subscriptions:
        if not matches(sub.event_types, event.type) or not entitled(sub.nation, releasability):
            continue
        session.add(
            DeliveryRow(
                id=new_id(),
                subscription_id=sub.id,
                event_id=event.id,
                event_type=event.type,
                subject=event.subject,
                body=body,
                status=DeliveryStatus.PENDING.value,
                next_attempt_at=now,
                traceparent=traceparent,
                created_at=now,
            )
        )
        created += 1
    return created


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


class WebhookDispatcher:
    """Sends due deliveries, oldest first, keeping one aggregate's events in order per subscription."""

    def __init__(self, db: Database, uow: UnitOfWorkFactory, settings: NotificationsSettings) -> None:
        self.db = db
        self.uow = uow
        self.settings = settings
        self.schedule = RetrySchedule(tuple(settings.retry_schedule_seconds))
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(
            timeout=settings.request_timeout_seconds,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=settings.dispatch_concurrency * 2),
        )
        self._slots = asyncio.Semaphore(settings.dispatch_concurrency)

    def wake(self) -> None:
        self._wake.set()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def run(self) -> None:
        while True:
            sent = await self.dispatch_once()
            if sent:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.dispatch_poll_seconds)
            self._wake.clear()

    async def dispatch_once(self) -> int:
        now = utcnow()
        async with self.db.sessions() as session:
            pending = (
                (
                    await session.execute(
                        select(DeliveryRow, SubscriptionRow)
                        .join(SubscriptionRow, col(SubscriptionRow.id) == col(DeliveryRow.subscription_id))
                        .where(col(DeliveryRow.status) == DeliveryStatus.PENDING.value)
                        .order_by(col(DeliveryRow.id))
                        .limit(500)
                    )
                )
                .tuples()
                .all()
            )
        # Only the oldest pending delivery of each (subscription, aggregate) may go: the others wait for it.
        heads: dict[tuple[str, str], tuple[DeliveryRow, SubscriptionRow]] = {}
        for delivery, sub in pending:
            heads.setdefault((delivery.subscription_id, delivery.subject), (delivery, sub))
        due = [
            (d, s)
            for d, s in heads.values()
            if s.status == SubscriptionStatus.ACTIVE.value and (_aware(d.next_attempt_at) or now) <= now
        ]
        await asyncio.gather(*(self._deliver(d, s) for d, s in due))
        return len(due)

    async def _deliver(self, delivery: DeliveryRow, sub: SubscriptionRow) -> None:
        async with self._slots:
            parent = context_from({"traceparent": delivery.traceparent})
            with tracer("icep.webhooks").start_as_current_span(
                "webhook deliver",
                context=parent,
                attributes={
                    "icep.subscription_id": sub.id,
                    "icep.event_id": delivery.event_id,
                    "icep.attempt": delivery.attempts + 1,
                },
            ):
                result = await self.attempt(sub, delivery)
            await self._record(delivery.id, result)

    async def attempt(self, sub: SubscriptionRow, delivery: DeliveryRow) -> AttemptResult:
        started = time.perf_counter()
        blocked = await self._blocked_address(sub.url)
        if blocked:
            return AttemptResult(None, blocked, None, 0.0)
        sent_at = utcnow()
        headers = {
            "content-type": "application/json",
            "user-agent": "ICEP-Webhooks/1.0",
            "webhook-id": delivery.event_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": Webhook(sub.secret).sign(delivery.event_id, sent_at, delivery.body),
        }
        try:
            async with self._client.stream(
                "POST", sub.url, content=delivery.body.encode(), headers=headers
            ) as resp:
                body = b""
                async for chunk in resp.aiter_bytes():
                    body += chunk
                    if len(body) >= self.settings.max_response_bytes:
                        break
                latency = (time.perf_counter() - started) * 1000
                LATENCY.observe(latency / 1000)
                return AttemptResult(
                    resp.status_code,
                    None,
                    body[: self.settings.max_response_bytes].decode(errors="replace"),
                    latency,
                    resp.headers.get("retry-after"),
                )
        except httpx.HTTPError as exc:
            return AttemptResult(
                None, f"{type(exc).__name__}: {exc}", None, (time.perf_counter() - started) * 1000
            )

    async def _blocked_address(self, url: str) -> str | None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port)
        except OSError as exc:
            return f"cannot resolve {host}: {exc}"
        for info in infos:
            address = str(info[4][0])
            if not address_allowed(address, allow_loopback=self.settings.allow_loopback_endpoints):
                return f"{host} resolves to a non-public address"
        return None

    async def _record(self, delivery_id: str, result: AttemptResult) -> None:
        outcome = "delivered" if result.ok else "failed"
        async with self.uow() as tx:
            delivery = await tx.session.get(DeliveryRow, delivery_id)
            sub = await tx.session.get(SubscriptionRow, delivery.subscription_id) if delivery else None
            if delivery is None or sub is None:
                return
            now = utcnow()
            delivery.attempts += 1
            delivery.last_status_code = result.status_code
            delivery.last_error = result.error
            tx.session.add(
                AttemptRow(
                    id=new_id(),
                    delivery_id=delivery.id,
                    attempted_at=now,
                    status_code=result.status_code,
                    error=result.error,
                    response_body=result.response_body,
                    latency_ms=result.latency_ms,
                )
            )
            if result.ok:
                delivery.status = DeliveryStatus.DELIVERED.value
                delivery.delivered_at = now
                delivery.next_attempt_at = None
            elif result.status_code == 410:
                # The receiver says it is gone for good: stop sending to it.
                sub.status = SubscriptionStatus.DISABLED.value
                sub.disabled_reason = "the endpoint answered 410 Gone"
                sub.version += 1
                sub.updated_at = now
                delivery.status = DeliveryStatus.FAILED.value
                delivery.next_attempt_at = None
                outcome = "gone"
            else:
                delay = self.schedule.next_delay(delivery.attempts)
                if delay is None:
                    delivery.status = DeliveryStatus.FAILED.value
                    delivery.next_attempt_at = None
                    outcome = "exhausted"
                    tx.publish(
                        OutgoingEvent(
                            payload=DeliveryFailed(
                                subscription_id=sub.id,
                                delivery_id=delivery.id,
                                event_id=delivery.event_id,
                                event_type_delivered=delivery.event_type,
                                attempts=delivery.attempts,
                                last_status_code=result.status_code,
                                last_error=result.error,
                                failed_at=now,
                            ),
                            subject=sub.id,
                            releasability=Releasability(owner=sub.nation),
                        )
                    )
                else:
                    if result.status_code in (429, 503):
                        delay = RetrySchedule.honour_retry_after(delay, result.retry_after)
                    delivery.next_attempt_at = now + timedelta(seconds=delay)
        ATTEMPTS.labels(outcome).inc()
        if outcome in ("delivered", "gone", "exhausted"):
            self.wake()  # the next delivery of the same aggregate may go now
