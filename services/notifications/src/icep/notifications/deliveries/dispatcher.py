"""The webhook dispatcher: sends due deliveries, signed, and records each attempt's outcome.

What an attempt's outcome does to its delivery and subscription (and the metrics counting it) is in
`icep.notifications.deliveries.settlement`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time

import aiohttp
import sqlalchemy as sa
from opentelemetry import trace
from prometheus_client import Histogram
from sqlalchemy import or_, select

from icep.notifications.deliveries.egress import BlockedAddress, WebhookClient, webhook_client
from icep.notifications.deliveries.model import DeliveryStatus, RetrySchedule
from icep.notifications.deliveries.rows import DeliveryRow
from icep.notifications.deliveries.settlement import AttemptRecording, AttemptResult, _Finished
from icep.notifications.settings import NotificationsSettings
from icep.notifications.subscriptions.endpoint import validate_endpoint
from icep.notifications.subscriptions.model import SubscriptionStatus, WebhookEndpoint, signatures_for
from icep.notifications.subscriptions.rows import SubscriptionRow
from icep.platform.aio import wait_event, within
from icep.platform.db import Database
from icep.platform.errors import Unprocessable
from icep.platform.events import utcnow
from icep.platform.observe import set_leader
from icep.platform.outbox import UnitOfWorkFactory
from icep.platform.shards import ShardLocks
from icep.platform.telemetry import continued_or_linked_span, http_client_call

log = logging.getLogger("icep.notifications.dispatcher")


LATENCY = Histogram("icep_webhook_latency_seconds", "Webhook request latency")


class WebhookDispatcher(AttemptRecording):
    """Sends due deliveries as a continuous worker, one aggregate's events in order per subscription.

    The loop picks the deliveries that may go now (pending, due, of an active subscription, and the
    oldest pending one of their subscription and aggregate) and starts one task per delivery, up to
    `dispatch_concurrency` at a time. It never waits for an endpoint itself: a finished task wakes it, so
    a slow receiver holds up only its own aggregate. On PostgreSQL the deliveries are cut into shards by
    subscription, each sent by the one replica holding it (`icep.platform.shards`): replicas share the
    work, one subscription's deliveries have one sender, and a dead replica's shards are taken over when
    its database session ends. Before letting go of shards (a rebalance) a dispatcher stops what it is
    sending, so no two replicas send the same delivery at once. Deliveries are rows,
    so what was in flight when a process stopped is simply sent again after a restart (receivers dedupe
    by `webhook-id`).
    """

    LOCK_NAME = "icep-webhook-dispatcher"
    #: Recording an attempt is retried this often before the delivery is left for a later round.
    RECORD_TRIES = 5
    #: Attempts that finished together are recorded together, up to this many per transaction.
    RECORD_BATCH = 200

    def __init__(self, db: Database, uow: UnitOfWorkFactory, settings: NotificationsSettings) -> None:
        self.db = db
        self.uow = uow
        self.settings = settings
        self.schedule = RetrySchedule(tuple(settings.retry_schedule_seconds))
        self.leadership = ShardLocks(
            db,
            self.LOCK_NAME,
            shards=settings.work_shards,
            rebalance_seconds=settings.shard_rebalance_seconds,
            service=settings.service_name,
            role="webhook-dispatcher",
        )
        self.active = False
        self._wake = asyncio.Event()
        self._loopback_names = settings.loopback_names()
        self._client_made: WebhookClient | None = None
        #: Stored URL -> why it may not be called (None: it may), see `_unacceptable`.
        self._verdicts: dict[str, str | None] = {}
        #: Delivery id -> the task attempting it; and the (subscription, subject) heads those serve.
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._in_flight_heads: set[tuple[str, str]] = set()
        #: Deliveries whose attempt could not be recorded: left alone until the loop time given.
        self._cooling: dict[str, float] = {}
        #: Finished attempts waiting for the recorder, which writes them in one transaction.
        self._to_record: list[_Finished] = []
        self._record_wake = asyncio.Event()
        self._recorder: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    @property
    def _client(self) -> WebhookClient:
        """The webhook client, made at the first attempt in the running loop (aiohttp binds it there)."""
        if self._client_made is None:
            self._client_made = webhook_client(
                allow_loopback=self.settings.allow_loopback_endpoints,
                static_hosts=self.settings.static_hosts,
                max_connections=self.settings.dispatch_concurrency * 2,
                allowed=self.settings.egress_allowed(),
            )
        return self._client_made

    @property
    def in_flight(self) -> frozenset[str]:
        return frozenset(self._in_flight)

    async def aclose(self) -> None:
        await self._cancel_in_flight()
        await self._stop_recorder()
        await self.leadership.release()
        self.active = False
        if self._client_made is not None:
            await self._client_made.close()
            self._client_made = None

    async def run(self) -> None:
        """Dispatch until cancelled. A failed round (database, lock) is logged and retried; in-flight
        attempts are cancelled on the way out and stay pending."""
        try:
            while True:
                # Cleared before the round, so a wake-up during it (a finished task) starts the next one.
                self._wake.clear()
                try:
                    self.active = bool(await self.leadership.hold(self._cancel_in_flight))
                    set_leader(self.settings.service_name, "webhook-dispatcher", self.active)
                    if self.active:
                        await self._start_due()
                    else:
                        # Other replicas hold every shard: whatever this one still sends would be sent twice.
                        await self._cancel_in_flight()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("webhook dispatch round failed; retrying")
                    set_leader(self.settings.service_name, "webhook-dispatcher", False)
                # Also the rebalance's beat: a replica that died leaves shards to take over.
                wait = min(self.settings.dispatch_poll_seconds, self.leadership.rebalance_seconds)
                await wait_event(self._wake, wait)
        finally:
            set_leader(self.settings.service_name, "webhook-dispatcher", False)
            await self._cancel_in_flight()
            await self._stop_recorder()
            await self.leadership.release()
            self.active = False

    async def dispatch_once(self) -> int:
        """One round, for tools and tests: start every delivery that may go now (when this process
        leads) and wait for those attempts. Returns how many were attempted."""
        self.active = bool(await self.leadership.hold(self._cancel_in_flight))
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
        subscription = SubscriptionRow.__table__.c  # type: ignore[attr-defined]
        query = (
            select(DeliveryRow, SubscriptionRow)
            .join(SubscriptionRow, subscription.id == delivery.subscription_id)
            .where(
                delivery.status == DeliveryStatus.PENDING.value,
                or_(delivery.next_attempt_at.is_(None), delivery.next_attempt_at <= now),
                subscription.status == SubscriptionStatus.ACTIVE.value,
                _NOT_BLOCKED,
                self.leadership.condition(delivery.subscription_id),
            )
            .order_by(delivery.next_attempt_at, delivery.id)
            .limit(limit)
        )
        if excluded:
            query = query.where(delivery.id.not_in(excluded))
        async with self.db.read_sessions() as session:  # one statement: no transaction block of its own
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
        started = time.perf_counter()
        # The first attempt continues the event's trace (so one trace runs from the API call to the
        # partner's endpoint); a retry, maybe hours later, is a new trace linked to it.
        with continued_or_linked_span(
            "webhook deliver",
            {"traceparent": delivery.traceparent},
            again="retry" if delivery.attempts else None,
            attributes={
                "icep.subscription_id": sub.id,
                "icep.delivery_id": delivery.id,
                "icep.event_id": delivery.event_id,
                "icep.attempt": delivery.attempts + 1,
            },
            tracer_name="icep.webhooks",
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
        await self._recorded(delivery, result)

    async def _recorded(self, delivery: DeliveryRow, result: AttemptResult) -> None:
        """Hand a finished attempt to the recorder and wait until it is written (the delivery counts as in
        flight until then, so the next one of its aggregate does not overtake it).

        Attempts are recorded by one task, many per transaction: SQLite has one writer, and twenty
        transactions queueing for its lock are far slower than one that writes twenty attempts."""
        finished = _Finished(
            delivery.id, delivery.subscription_id, result, asyncio.get_running_loop().create_future()
        )
        self._to_record.append(finished)
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_loop(), name="webhook-recorder")
        self._record_wake.set()
        await finished.recorded

    async def _record_loop(self) -> None:
        while True:
            await self._record_wake.wait()
            self._record_wake.clear()
            await self._record_queued()

    async def _record_queued(self) -> None:
        while self._to_record:
            batch = self._to_record[: self.RECORD_BATCH]
            del self._to_record[: self.RECORD_BATCH]
            try:
                try:
                    await self._record(batch)
                except asyncio.CancelledError:
                    self._to_record[:0] = batch  # rolled back: still to be written (see `_stop_recorder`)
                    raise
                except Exception:
                    log.warning("recording %d attempts at once failed; one by one", len(batch), exc_info=True)
                    for finished in batch:
                        await self._record_with_retries(finished)
            finally:
                for finished in batch:
                    if not finished.recorded.done() and finished not in self._to_record:
                        finished.recorded.set_result(None)

    async def _record_with_retries(self, finished: _Finished) -> None:
        for tried in range(1, self.RECORD_TRIES + 1):
            try:
                await self._record([finished])
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "recording the attempt of delivery %s failed (try %d)", finished.delivery_id, tried
                )
                if tried < self.RECORD_TRIES:
                    await asyncio.sleep(min(0.2 * 2**tried, 10.0))
        # Left pending: it goes again once the database takes the record (receivers dedupe by id), but
        # not at once, so a row that cannot be written does not spin.
        self._cooling[finished.delivery_id] = asyncio.get_running_loop().time() + 60.0

    async def _stop_recorder(self) -> None:
        """Stop the recorder, then write what finished (briefly: what a database that is gone does not
        take stays pending, and is sent again)."""
        if self._recorder is not None:
            self._recorder.cancel()
            await asyncio.gather(self._recorder, return_exceptions=True)
            self._recorder = None
        if self._to_record:
            with contextlib.suppress(Exception):
                await within(5.0, self._record_queued())
        for finished in self._to_record:
            if not finished.recorded.done():
                finished.recorded.cancel()
        self._to_record.clear()

    async def attempt(self, sub: WebhookEndpoint, delivery: DeliveryRow) -> AttemptResult:
        started = time.perf_counter()
        unacceptable = self._unacceptable(sub.url)
        if unacceptable:
            return AttemptResult(None, unacceptable, None, 0.0)
        sent_at = utcnow()
        headers = {
            "content-type": "application/json",
            "user-agent": "ICEP-Webhooks/1.0",
            # The answer is only the start of a log line: never decompressed (a small gzip body can
            # expand to gigabytes), read raw and capped.
            "accept-encoding": "identity",
            "webhook-id": delivery.event_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signatures_for(sub, delivery.event_id, sent_at, delivery.body),
        }
        limit = self.settings.request_timeout_seconds
        cap = self.settings.max_response_bytes
        with http_client_call("POST", sub.url, headers) as call:
            try:
                # One deadline for the whole exchange: a receiver that trickles its answer would otherwise
                # hold a slot for as long as it likes.
                async with (
                    asyncio.timeout(limit),
                    self._client.post(sub.url, data=delivery.body.encode(), headers=headers) as resp,
                ):
                    call.answered(resp.status)
                    # Only the start of the answer is read (and kept): an unread rest closes the connection.
                    body = b""
                    while len(body) < cap:
                        chunk = await resp.content.read(cap - len(body))
                        if not chunk:
                            break
                        body += chunk
                    latency = (time.perf_counter() - started) * 1000
                    LATENCY.observe(latency / 1000)
                    return AttemptResult(
                        resp.status,
                        None,
                        body.decode(errors="replace"),
                        latency,
                        resp.headers.get("retry-after"),
                    )
            except TimeoutError as exc:
                call.failed(exc)
                return AttemptResult(
                    None, f"no answer within {limit:g}s", None, (time.perf_counter() - started) * 1000
                )
            except BlockedAddress as exc:
                call.failed(exc)
                # Refused where the connection is made, with the addresses actually dialled (DNS rebinding).
                return AttemptResult(None, f"refused: {exc}", None, (time.perf_counter() - started) * 1000)
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                call.failed(exc)
                return AttemptResult(
                    None, f"{type(exc).__name__}: {exc}", None, (time.perf_counter() - started) * 1000
                )

    def _unacceptable(self, url: str) -> str | None:
        """Why the stored URL may not be called, or None: checked again at each attempt (rules tighten;
        rows may come from elsewhere), the verdict kept per URL for this process (its rules are fixed for
        its lifetime). Its addresses are checked when connecting (see `egress`)."""
        if url in self._verdicts:
            return self._verdicts[url]
        if len(self._verdicts) >= 10_000:
            self._verdicts.clear()
        verdict = self._check_endpoint(url)
        self._verdicts[url] = verdict
        return verdict

    def _check_endpoint(self, url: str) -> str | None:
        try:
            validate_endpoint(
                url,
                allow_loopback=self.settings.allow_loopback_endpoints,
                loopback_names=self._loopback_names,
            )
        except Unprocessable as exc:
            return f"the endpoint is not acceptable: {exc.detail}"
        return None


def _not_blocked() -> sa.ColumnElement[bool]:
    """No older delivery of the same subscription and aggregate is still pending. Built once: negating
    an EXISTS made SQLAlchemy raise and catch an AttributeError inside, a large part of each round."""
    delivery = DeliveryRow.__table__.c  # type: ignore[attr-defined]
    older = DeliveryRow.__table__.alias("older")  # type: ignore[attr-defined]
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
    return ~blocked


_NOT_BLOCKED = _not_blocked()
