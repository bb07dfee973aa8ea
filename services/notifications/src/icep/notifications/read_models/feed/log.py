"""The catch-up feed and the live stream: every event the service consumed, logged in order, read back by
entitlement and the subscriber's filters.

The consumer handler logs each event (`append`) in the transaction that also fans it out to webhooks, so
the log holds exactly the events the service handled, once each. A row's `position` is the cursor. On
PostgreSQL `append` takes a transaction-scoped advisory lock before inserting: the transaction that took
position N commits (and becomes visible) before any other can take N+1, so rows become visible in
position order and a reader that has seen N never later finds a new row below N. SQLite has one writer at
a time, which does the same. Readers therefore page with a plain `position > after` and miss nothing.

Who sees a row is decided in SQL (the event's reader tokens against the caller's nation) and checked
again in Python (`subscriptions.filters.entitled`); the filters narrow in SQL and
`SubscriptionFilters.accepts` decides.
Rows older than the retention are purged in position order; the highest purged position is kept, and a
cursor below it is answered 410 Gone, since what came after it may be lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from prometheus_client import Gauge
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from icep.contracts import Releasability
from icep.contracts.releasability import encode_tokens, reader_tokens
from icep.notifications.read_models.feed.rows import EventLogHorizonRow, EventLogRow
from icep.notifications.settings import NotificationsSettings
from icep.notifications.subscriptions.filters import (
    SubscriptionFilters,
    entitled,
    event_terms,
    term_keys,
    validate_event_patterns,
    validate_nations,
    validate_terms,
)
from icep.platform import visibility
from icep.platform.aio import wait_event
from icep.platform.app import Runtime
from icep.platform.db import Database, advisory_key
from icep.platform.errors import DomainError, Forbidden, Unprocessable
from icep.platform.events import ReceivedEvent, utcnow

log = logging.getLogger("icep.notifications.feed")

#: Serialises appends on PostgreSQL so that positions commit in order.
LOG_LOCK_KEY = advisory_key("icep-notifications-event-log")
#: Rows deleted per purge transaction.
PURGE_BATCH = 5000
#: Events one stream read sends at most before it looks again.
STREAM_BATCH = 200
#: What a client waits before reconnecting after the stream ended (the SSE `retry` field).
STREAM_RETRY_MS = 2000

STREAMS_OPEN = Gauge("icep_event_streams_open", "Event streams (SSE) open in this process", ["service"])

_log = EventLogRow.__table__  # type: ignore[attr-defined]
_horizon = EventLogHorizonRow.__table__  # type: ignore[attr-defined]
_HORIZON_ID = 1


class CursorGone(DomainError):
    """410: the events after this cursor are past retention and may have been purged."""

    status = 410
    title = "Gone"
    slug = "cursor-expired"


@dataclass(frozen=True)
class FeedReader:
    client_id: str
    nation: str
    roles: frozenset[str]


def authorize(reader: FeedReader) -> None:
    if "subscriber" not in reader.roles:
        raise Forbidden(
            "reading the event feed or stream requires the subscriber role", required_roles=["subscriber"]
        )


def feed_filters(
    types: Sequence[str] = (),
    nations: Sequence[str] = (),
    capability_areas: Sequence[str] = (),
    products: Sequence[str] = (),
) -> SubscriptionFilters:
    """The filters of a feed or stream request, validated as a subscription's are; empty means any."""
    try:
        patterns = validate_event_patterns(list(types))
    except Unprocessable as exc:
        raise Unprocessable(exc.detail, field="types") from exc
    return SubscriptionFilters(
        event_types=tuple(patterns),
        nations=tuple(validate_nations(nations)),
        capability_areas=tuple(validate_terms(capability_areas, "capability_areas")),
        products=tuple(validate_terms(products, "products")),
    )


# --- writing -----------------------------------------------------------------------------------------


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind is not None else "sqlite"


#: The append statement per dialect, built once: constructing it per event (`.values(...)`) cost more CPU
#: than the database's own work for it.
_APPEND = {
    name: insert(_log).on_conflict_do_nothing(index_elements=["event_id"]).returning(_log.c.position)
    for name, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}
_APPEND_MANY = {
    name: insert(_log).on_conflict_do_nothing(index_elements=["event_id"])
    for name, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}
#: Set in a session's info to the transaction that holds the log's lock (`append`).
_LOCKED_IN = "icep.notifications.event_log_locked_in"


async def _hold_log_lock(session: AsyncSession) -> None:
    """On PostgreSQL, held until the transaction ends, so the next position is taken only after this one
    committed: taken once per transaction (a consumer batch appends many events in one)."""
    if _dialect(session) != "postgresql":
        return  # SQLite's writer is alone: its positions commit in order anyway
    transaction = session.get_transaction()
    if transaction is None or session.info.get(_LOCKED_IN) is not transaction:
        await session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOG_LOCK_KEY})
        session.info[_LOCKED_IN] = transaction


def log_row(event: ReceivedEvent) -> dict[str, Any]:
    """The event log's row of `event` (its position is given when it is written)."""
    areas, products = event_terms(event.data)
    return {
        "event_id": event.id,
        "event_type": event.type,
        "subject": event.subject,
        "nation": event.nation,
        "releasable_to": event.releasable_to,
        "readers": encode_tokens(reader_tokens(event.releasability)),
        "capability_areas": json.dumps(areas),
        "products": json.dumps(products),
        "body": json.dumps(event.body(), separators=(",", ":")),
        "recorded_at": utcnow(),
    }


async def append(session: AsyncSession, event: ReceivedEvent) -> int | None:
    """Log `event` in the caller's transaction now; its position, or None when it is logged already (a
    redelivered record: the inbox stops those, this is the second line)."""
    await _hold_log_lock(session)
    position: int | None = (
        await session.execute(
            _APPEND["postgresql" if _dialect(session) == "postgresql" else "sqlite"], log_row(event)
        )
    ).scalar_one_or_none()
    return position


async def append_rows(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Log rows made by `log_row` in one statement, positions in the order given (the consumer's fan-out
    queues them with `write_before_commit`); a row logged already is left as it is."""
    await _hold_log_lock(session)
    await session.execute(_APPEND_MANY["postgresql" if _dialect(session) == "postgresql" else "sqlite"], rows)


# --- reading -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedItem:
    position: int
    event_type: str
    #: The event as JSON text, exactly as logged.
    body: str
    event: dict[str, Any]


@dataclass(frozen=True)
class FeedPage:
    items: list[FeedItem]
    #: The last position looked at, also when the rows after the last item were filtered out: the
    #: cursor to continue from.
    last_position: int
    #: True when rows after `last_position` were not looked at yet (the page filled up, or the scan
    #: limit was reached): ask again at once. False: nothing more until new events arrive.
    more: bool


def _like_literal(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _conditions(reader: FeedReader, filters: SubscriptionFilters) -> list[sa.ColumnElement[bool]]:
    """SQL that keeps every row the caller may see and its filters may accept (and perhaps a few more:
    SQLite's LIKE ignores case; the Python check after it decides)."""
    c = _log.c
    found: list[sa.ColumnElement[bool]] = [visibility.readable_by(c.readers, reader.nation)]
    if "*" not in filters.event_types:
        found.append(
            sa.or_(
                *(
                    c.event_type.like(_like_literal(p).replace("*", "%"), escape="\\")
                    for p in filters.event_types
                )
            )
        )
    if filters.nations:
        found.append(c.nation.in_(filters.nations))
    for column, wanted in ((c.capability_areas, filters.capability_areas), (c.products, filters.products)):
        if wanted:
            keys = term_keys(wanted)
            found.append(
                sa.or_(*(column.like(f"%{_like_literal(json.dumps(k))}%", escape="\\") for k in keys))
            )
    return found


def _admits(reader: FeedReader, filters: SubscriptionFilters, row: Any, event: dict[str, Any]) -> bool:
    if not entitled(reader.nation, Releasability.from_marking(row.nation, row.releasable_to)):
        return False
    data = event.get("data")
    return filters.accepts(row.event_type, row.nation, data if isinstance(data, dict) else {})


async def _horizon_of(session: AsyncSession) -> int:
    found = (
        await session.execute(sa.select(_horizon.c.purged_through).where(_horizon.c.id == _HORIZON_ID))
    ).scalar_one_or_none()
    return int(found or 0)


async def horizon(db: Database) -> int:
    """The highest purged position (0 when nothing was purged yet)."""
    async with db.sessions() as session:
        return await _horizon_of(session)


async def latest_position(db: Database) -> int:
    """The highest position logged so far, or the purge horizon when the log is empty."""
    async with db.sessions() as session:
        latest = (await session.execute(sa.select(sa.func.max(_log.c.position)))).scalar_one_or_none()
        return int(latest) if latest is not None else await _horizon_of(session)


async def read_head(db: Database, reader: FeedReader) -> FeedPage:
    """The feed as of now, with no events: its `last_position` is the head of the log, so a subscriber
    that continues after it gets exactly the events logged from now on (`after=latest`). The head of the
    whole log is the head of every caller's feed: what lies between the caller's last visible event and it
    is not the caller's, and every row up to it has committed (rows commit in position order)."""
    authorize(reader)
    return FeedPage(items=[], last_position=await latest_position(db), more=False)


def _check_cursor(after: int, purged: int) -> None:
    """410 when events after `after` may have been purged."""
    if after < purged:
        raise CursorGone(
            f"cursor {after} is older than the feed's retention: the events after it up to {purged} were "
            "purged. Start again without a cursor (from the oldest event kept) or from a newer one.",
            purged_through=purged,
        )


async def read_page(
    db: Database,
    reader: FeedReader,
    filters: SubscriptionFilters,
    *,
    after: int | None,
    limit: int,
    scan_limit: int,
) -> FeedPage:
    """Up to `limit` events after `after` (None: from the oldest retained) that the reader may see and
    its filters accept, in position order, with no event left out before the page's `last_position`."""
    authorize(reader)
    conditions = _conditions(reader, filters)
    async with db.sessions() as session:
        # Read first: every row at or below it has committed (rows commit in position order), so the
        # pages end at a point where nothing can still appear behind them.
        upto = (await session.execute(sa.select(sa.func.max(_log.c.position)))).scalar_one_or_none()
        start = after if after is not None else await _horizon_of(session)
        cursor = start
        items: list[FeedItem] = []
        scanned = 0
        more = False
        while upto is not None and cursor < upto:
            chunk = min(scan_limit - scanned, max(limit - len(items), 50))
            rows = (
                await session.execute(
                    sa.select(
                        _log.c.position, _log.c.event_type, _log.c.nation, _log.c.releasable_to, _log.c.body
                    )
                    .where(_log.c.position > cursor, _log.c.position <= upto, *conditions)
                    .order_by(_log.c.position)
                    .limit(chunk)
                )
            ).all()
            for row in rows:
                scanned += 1
                cursor = int(row.position)
                event = json.loads(row.body)
                if _admits(reader, filters, row, event):
                    items.append(FeedItem(cursor, row.event_type, row.body, event))
                    if len(items) >= limit:
                        break
            if len(items) >= limit:
                more = cursor < upto
                break
            if len(rows) < chunk:
                cursor = upto  # nothing else up to `upto` passes the SQL conditions
                break
            if scanned >= scan_limit:
                more = True
                break
        if after is not None:
            # After the rows: a purge moves the horizon before it deletes, so rows missing here show.
            _check_cursor(after, await _horizon_of(session))
    return FeedPage(items=items, last_position=max(cursor, start), more=more)


# --- the live stream ---------------------------------------------------------------------------------


class FeedHub:
    """Wakes this process's streams when new events may be on the log: at once after a commit of this
    process (`wake` is an after-commit hook), and through `watch` for what other replicas logged."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()
        self.listeners = 0

    def wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def changed(self) -> asyncio.Event:
        """The event the next `wake` sets: take it before reading, so no wake-up falls in between."""
        return self._changed


def hub_of(runtime: Runtime) -> FeedHub:
    """The process's hub, made (and hooked to every commit) on first use."""
    hub = runtime.part(FeedHub)
    if hub is None:
        hub = FeedHub()
        runtime.provide(hub)
        if runtime.wakeups is not None:
            # Events any replica's consumer logged (PostgreSQL NOTIFY, `icep.platform.wakeups`).
            runtime.wakeups.watch(_log, "feed", EventLogRow)
            runtime.wakeups.on("feed", hub.wake)
            runtime.after_commit.append(runtime.wakeups.unless_listening(hub.wake))
        else:
            runtime.after_commit.append(hub.wake)
    return hub


async def open_stream(db: Database, reader: FeedReader, last_event_id: int | None) -> int:
    """Where a stream starts: after `last_event_id` (410 when that is past retention), or at the end of
    the log (only new events) without one."""
    authorize(reader)
    if last_event_id is None:
        return await latest_position(db)
    _check_cursor(last_event_id, await horizon(db))
    return last_event_id


def sse_message(item: FeedItem) -> bytes:
    """One Server-Sent Events message: the position as `id`, the CloudEvent type as `event`."""
    return f"id: {item.position}\nevent: {item.event_type}\ndata: {item.body}\n\n".encode()


async def stream(
    db: Database,
    hub: FeedHub,
    reader: FeedReader,
    filters: SubscriptionFilters,
    after: int,
    settings: NotificationsSettings,
) -> AsyncIterator[bytes]:
    """The SSE body: events after `after` as they are logged, a heartbeat comment when idle. Runs until
    the client goes away (the response is cancelled); ends by itself when the log cannot be read or the
    cursor fell behind retention, and the client reconnects with `Last-Event-ID`."""
    loop = asyncio.get_running_loop()
    heartbeat = settings.stream_heartbeat_seconds
    hub.listeners += 1
    STREAMS_OPEN.labels(settings.service_name).inc()
    try:
        yield f"retry: {STREAM_RETRY_MS}\n: stream of events after {after}\n\n".encode()
        cursor = after
        beat_at = loop.time() + heartbeat
        while True:
            changed = hub.changed()
            try:
                page = await read_page(
                    db, reader, filters, after=cursor, limit=STREAM_BATCH, scan_limit=settings.feed_scan_limit
                )
            except CursorGone:
                return
            except Exception:
                log.warning("reading the event log for a stream failed; ending the stream", exc_info=True)
                return
            for item in page.items:
                yield sse_message(item)
            if page.items:
                beat_at = loop.time() + heartbeat
            cursor = page.last_position
            if page.more:
                continue
            wait = beat_at - loop.time()
            if wait > 0:
                await wait_event(changed, wait)
            if loop.time() >= beat_at:
                yield b": heartbeat\n\n"
                beat_at = loop.time() + heartbeat
    finally:
        hub.listeners -= 1
        STREAMS_OPEN.labels(settings.service_name).dec()


async def watch(runtime: Runtime) -> None:
    """Background loop: while streams are open here, look for events other replicas logged and wake the
    streams when there are. On PostgreSQL, while the LISTEN connection is up, other replicas' commits
    wake the streams by NOTIFY and this loop only stands by."""
    assert runtime.db is not None
    settings = runtime.settings_as(NotificationsSettings)
    hub = hub_of(runtime)
    seen: int | None = None
    wakeups = runtime.wakeups
    while True:
        if wakeups is not None and wakeups.connected.is_set():
            seen = None  # every replica's commits wake the streams: no need to look
        elif hub.listeners > 0:
            try:
                latest = await latest_position(runtime.db)
            except Exception:
                log.warning("looking for new events failed", exc_info=True)
            else:
                # Also on the first look: what came between a stream's first read and now.
                if latest != seen:
                    hub.wake()
                seen = latest
        else:
            seen = None
        await asyncio.sleep(settings.stream_poll_seconds)


# --- retention ---------------------------------------------------------------------------------------


async def _raise_horizon(session: AsyncSession, through: int) -> None:
    values = {"id": _HORIZON_ID, "purged_through": through, "purged_at": utcnow()}
    if _dialect(session) == "postgresql":
        pg = postgresql.insert(_horizon).values(**values)
        await session.execute(
            pg.on_conflict_do_update(
                index_elements=["id"],
                set_={
                    "purged_through": sa.func.greatest(_horizon.c.purged_through, pg.excluded.purged_through),
                    "purged_at": pg.excluded.purged_at,
                },
            )
        )
    else:
        lite = sqlite.insert(_horizon).values(**values)
        await session.execute(
            lite.on_conflict_do_update(
                index_elements=["id"],
                set_={
                    "purged_through": sa.func.max(_horizon.c.purged_through, lite.excluded.purged_through),
                    "purged_at": lite.excluded.purged_at,
                },
            )
        )


async def purge(db: Database, retention: timedelta) -> int:
    """Delete the events logged before `retention` ago, as one cut in position order; how many."""
    return await purge_before(db, utcnow() - retention)


async def purge_before(
    db: Database, cutoff: datetime, batch: int = PURGE_BATCH, dry_run: bool = False
) -> int:
    """Delete the events logged before `cutoff`, as one cut in position order (everything up to the newest
    of them); how many (`dry_run`: how many it would). The horizon moves first, so a reader that finds rows
    missing also finds its cursor gone (410)."""
    async with db.transaction() as session:
        through = (
            await session.execute(sa.select(sa.func.max(_log.c.position)).where(_log.c.recorded_at < cutoff))
        ).scalar_one_or_none()
        if through is None:
            return 0
        if dry_run:
            return int(
                (
                    await session.execute(sa.select(sa.func.count()).where(_log.c.position <= through))
                ).scalar_one()
            )
        await _raise_horizon(session, int(through))
    deleted = 0
    while True:
        async with db.transaction() as session:
            chosen = (
                sa.select(_log.c.position)
                .where(_log.c.position <= through)
                .order_by(_log.c.position)
                .limit(batch)
            )
            result = await session.execute(sa.delete(_log).where(_log.c.position.in_(chosen)))
            count = int(getattr(result, "rowcount", 0) or 0)
        deleted += count
        if count < batch:
            return deleted
