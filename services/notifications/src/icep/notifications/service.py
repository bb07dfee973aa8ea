"""Use cases of the notifications service, and the webhook dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
from opentelemetry import trace
from prometheus_client import Counter, Histogram
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col
from standardwebhooks import Webhook

from icep.contracts import Releasability
from icep.contracts.nations import NATO
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
from icep.platform.db import Database, LeaderLock
from icep.platform.errors import Forbidden, NotFound, Unprocessable
from icep.platform.events import OutgoingEvent, ReceivedEvent, utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWork, UnitOfWorkFactory
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
    """Sends due deliveries as a continuous worker, one aggregate's events in order per subscription.

    The loop picks the deliveries that may go now (pending, due, of an active subscription, and the
    oldest pending one of their subscription and aggregate) and starts one task per delivery, up to
    `dispatch_concurrency` at a time. It never waits for an endpoint itself: a finished task wakes it, so
    a slow receiver holds up only its own aggregate. Only one dispatcher per database sends (a leader
    lock); a standby replica takes over when the leader's database session ends. Deliveries are rows,
    so what was in flight when a process stopped is simply sent again after a restart (receivers dedupe
    by `webhook-id`).
    """

    LOCK_NAME = "icep-webhook-dispatcher"
    #: Recording an attempt is retried this often before the delivery is left for a later round.
    RECORD_TRIES = 5

    def __init__(self, db: Database, uow: UnitOfWorkFactory, settings: NotificationsSettings) -> None:
        self.db = db
        self.uow = uow
        self.settings = settings
        self.schedule = RetrySchedule(tuple(settings.retry_schedule_seconds))
        self.leadership = LeaderLock(db, self.LOCK_NAME)
        self.active = False
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(
            timeout=settings.request_timeout_seconds,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=settings.dispatch_concurrency * 2),
        )
        #: Delivery id -> the task attempting it; and the (subscription, subject) heads those serve.
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._in_flight_heads: set[tuple[str, str]] = set()
        #: Deliveries whose attempt could not be recorded: left alone until the loop time given.
        self._cooling: dict[str, float] = {}

    def wake(self) -> None:
        self._wake.set()

    @property
    def in_flight(self) -> frozenset[str]:
        return frozenset(self._in_flight)

    async def aclose(self) -> None:
        await self._cancel_in_flight()
        await self.leadership.release()
        self.active = False
        await self._client.aclose()

    async def run(self) -> None:
        """Dispatch until cancelled. A failed round (database, lock) is logged and retried; in-flight
        attempts are cancelled on the way out and stay pending."""
        try:
            while True:
                # Cleared before the round, so a wake-up during it (a finished task) starts the next one.
                self._wake.clear()
                try:
                    self.active = await self.leadership.hold()
                    if self.active:
                        await self._start_due()
                    else:
                        # Another replica leads: whatever this one still sends would be sent twice.
                        await self._cancel_in_flight()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("webhook dispatch round failed; retrying")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.settings.dispatch_poll_seconds)
        finally:
            await self._cancel_in_flight()
            await self.leadership.release()
            self.active = False

    async def dispatch_once(self) -> int:
        """One round, for tools and tests: start every delivery that may go now (when this process
        leads) and wait for those attempts. Returns how many were attempted."""
        self.active = await self.leadership.hold()
        if not self.active:
            return 0
        started = await self._start_due()
        await asyncio.gather(*started, return_exceptions=True)
        return len(started)

    async def due_heads(self, limit: int) -> list[tuple[DeliveryRow, SubscriptionRow]]:
        """Deliveries that may be attempted now, longest due first, leaving out those in flight here.

        Chosen in SQL, so deliveries that are not due, blocked behind an older one of their aggregate,
        or of a paused or disabled subscription never crowd out those that may go.
        """
        now = utcnow()
        loop_now = asyncio.get_running_loop().time()
        self._cooling = {k: until for k, until in self._cooling.items() if until > loop_now}
        excluded = [*self._in_flight, *self._cooling]
        delivery = DeliveryRow.__table__.c  # type: ignore[attr-defined]
        older = DeliveryRow.__table__.alias("older")  # type: ignore[attr-defined]
        subscription = SubscriptionRow.__table__.c  # type: ignore[attr-defined]
        blocked = (
            select(older.c.id)
            .where(
                older.c.subscription_id == delivery.subscription_id,
                older.c.subject == delivery.subject,
                older.c.status == DeliveryStatus.PENDING.value,
                older.c.id < delivery.id,  # ids are UUIDv7: a smaller id is an older delivery
            )
            .exists()
        )
        query = (
            select(DeliveryRow, SubscriptionRow)
            .join(SubscriptionRow, subscription.id == delivery.subscription_id)
            .where(
                delivery.status == DeliveryStatus.PENDING.value,
                or_(delivery.next_attempt_at.is_(None), delivery.next_attempt_at <= now),
                subscription.status == SubscriptionStatus.ACTIVE.value,
                ~blocked,
            )
            .order_by(delivery.next_attempt_at, delivery.id)
            .limit(limit)
        )
        if excluded:
            query = query.where(delivery.id.not_in(excluded))
        async with self.db.sessions() as session:
            return [(d, s) for d, s in (await session.execute(query)).tuples().all()]

    async def _start_due(self) -> list[asyncio.Task[None]]:
        free = self.settings.dispatch_concurrency - len(self._in_flight)
        if free <= 0:
            return []
        started: list[asyncio.Task[None]] = []
        for delivery, sub in await self.due_heads(free + len(self._in_flight_heads)):
            head = (delivery.subscription_id, delivery.subject)
            # A head already in flight keeps its aggregate: a newer row with a smaller id (clock skew
            # between consumer replicas) must not overtake the one being sent.
            if delivery.id in self._in_flight or head in self._in_flight_heads:
                continue
            task = asyncio.create_task(self._deliver(delivery, sub), name=f"webhook-{delivery.id}")
            self._in_flight[delivery.id] = task
            self._in_flight_heads.add(head)
            task.add_done_callback(functools.partial(self._finished, delivery.id, head))
            started.append(task)
            if len(started) >= free:
                break
        return started

    def _finished(self, delivery_id: str, head: tuple[str, str], task: asyncio.Task[None]) -> None:
        self._in_flight.pop(delivery_id, None)
        self._in_flight_heads.discard(head)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivering %s failed", delivery_id, exc_info=task.exception())
        self._wake.set()  # a slot is free, and the next delivery of the aggregate may be due

    async def _cancel_in_flight(self) -> None:
        """Stop every attempt in flight; their deliveries stay pending and go again later."""
        tasks = list(self._in_flight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _deliver(self, delivery: DeliveryRow, sub: SubscriptionRow) -> None:
        """Attempt one delivery and record the outcome. Whatever goes wrong in the attempt is that
        delivery's failed attempt, never the dispatcher's."""
        parent = context_from({"traceparent": delivery.traceparent})
        started = time.perf_counter()
        with tracer("icep.webhooks").start_as_current_span(
            "webhook deliver",
            context=parent,
            attributes={
                "icep.subscription_id": sub.id,
                "icep.event_id": delivery.event_id,
                "icep.attempt": delivery.attempts + 1,
            },
        ) as span:
            try:
                result = await self.attempt(sub, delivery)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("attempting delivery %s failed unexpectedly", delivery.id, exc_info=True)
                span.record_exception(exc)
                result = AttemptResult(
                    None, f"{type(exc).__name__}: {exc}", None, (time.perf_counter() - started) * 1000
                )
            if result.status_code is not None:
                span.set_attribute("http.response.status_code", result.status_code)
            if not result.ok:
                span.set_status(trace.Status(trace.StatusCode.ERROR, result.error or str(result.status_code)))
        await self._record_with_retries(delivery.id, result)

    async def _record_with_retries(self, delivery_id: str, result: AttemptResult) -> None:
        for tried in range(1, self.RECORD_TRIES + 1):
            try:
                await self._record(delivery_id, result)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recording the attempt of delivery %s failed (try %d)", delivery_id, tried)
                if tried < self.RECORD_TRIES:
                    await asyncio.sleep(min(0.2 * 2**tried, 10.0))
        # Left pending: it goes again once the database takes the record (receivers dedupe by id), but
        # not at once, so a row that cannot be written does not spin.
        self._cooling[delivery_id] = asyncio.get_running_loop().time() + 60.0

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
        limit = self.settings.request_timeout_seconds
        try:
            # One deadline for the whole exchange: httpx's timeouts are per read, and a receiver that
            # trickles its answer would otherwise hold a slot for as long as it likes.
            async with (
                asyncio.timeout(limit),
                self._client.stream("POST", sub.url, content=delivery.body.encode(), headers=headers) as resp,
            ):
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
        except TimeoutError:
            return AttemptResult(
                None, f"no answer within {limit:g}s", None, (time.perf_counter() - started) * 1000
            )
        except httpx.HTTPError as exc:
            return AttemptResult(
                None, f"{type(exc).__name__}: {exc}", None, (time.perf_counter() - started) * 1000
            )

    async def _blocked_address(self, url: str) -> str | None:
        """Why the endpoint may not be called now, or None. The stored URL is checked again (rules
        tighten; rows may come from elsewhere), then every address its host resolves to."""
        try:
            validate_endpoint(url, allow_loopback=self.settings.allow_loopback_endpoints)
        except Unprocessable as exc:
            return f"the endpoint is not acceptable: {exc.detail}"
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            return f"cannot resolve {host}: {exc}"
        for info in infos:
            address = str(info[4][0])
            if not address_allowed(address, allow_loopback=self.settings.allow_loopback_endpoints):
                return f"{host} resolves to a non-public address"
        # TODO(dns-rebinding): httpx resolves the host again when it connects, so a name whose answer
        # changes between the two look-ups can still reach a private address. The fix is to connect to
        # the addresses checked here (a transport that dials them, keeping the host name for TLS SNI and
        # the Host header); it belongs right here, handing `infos` on to the request.
        return None

    async def _record(self, delivery_id: str, result: AttemptResult) -> None:
        outcome = "delivered" if result.ok else "failed"
        error = _storable(result.error, 2000)
        async with self.uow() as tx:
            delivery = await tx.session.get(DeliveryRow, delivery_id)
            if delivery is None:
                return
            now = utcnow()
            tx.session.add(
                AttemptRow(
                    id=new_id(),
                    delivery_id=delivery.id,
                    attempted_at=now,
                    status_code=result.status_code,
                    error=error,
                    response_body=_storable(result.response_body, self.settings.max_response_bytes),
                    latency_ms=result.latency_ms,
                )
            )
            if delivery.status != DeliveryStatus.PENDING.value:
                # Settled meanwhile (its subscription was disabled): keep the attempt, not the verdict.
                outcome = "late"
            else:
                outcome = await self._settle(tx, delivery, result, error, now)
        ATTEMPTS.labels(outcome).inc()

    async def _settle(
        self, tx: UnitOfWork, delivery: DeliveryRow, result: AttemptResult, error: str | None, now: datetime
    ) -> str:
        """Apply one attempt's outcome to its pending delivery; returns the outcome for the metrics."""
        delivery.attempts += 1
        delivery.last_status_code = result.status_code
        delivery.last_error = error
        if result.ok:
            delivery.status = DeliveryStatus.DELIVERED.value
            delivery.delivered_at = now
            delivery.next_attempt_at = None
            return "delivered"
        if result.status_code == 410:
            # The receiver says it is gone for good: stop sending to it, and settle what still waits
            # for it, so nothing lingers as pending for a subscription that will never send again.
            reason = "the endpoint answered 410 Gone"
            sub = await tx.session.get(SubscriptionRow, delivery.subscription_id, with_for_update=True)
            if sub is not None and sub.status != SubscriptionStatus.DISABLED.value:
                sub.status = SubscriptionStatus.DISABLED.value
                sub.disabled_reason = reason
                sub.version += 1
                sub.updated_at = now
            delivery.status = DeliveryStatus.FAILED.value
            delivery.next_attempt_at = None
            await tx.session.execute(
                update(DeliveryRow)
                .where(
                    col(DeliveryRow.subscription_id) == delivery.subscription_id,
                    col(DeliveryRow.status) == DeliveryStatus.PENDING.value,
                    col(DeliveryRow.id) != delivery.id,
                )
                .values(
                    status=DeliveryStatus.FAILED.value,
                    next_attempt_at=None,
                    last_error=f"not sent: the subscription was disabled ({reason})",
                )
                .execution_options(synchronize_session=False)
            )
            return "gone"
        delay = self.schedule.next_delay(delivery.attempts)
        if delay is None:
            delivery.status = DeliveryStatus.FAILED.value
            delivery.next_attempt_at = None
            sub = await tx.session.get(SubscriptionRow, delivery.subscription_id)
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


def _storable(text: str | None, limit: int) -> str | None:
    """Text a database column takes: PostgreSQL refuses NUL characters, which a receiver may send."""
    if text is None:
        return None
    return text[:limit].replace("\x00", "\ufffd")
