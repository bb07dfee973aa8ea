"""Wake-ups across replicas: a commit on one replica wakes the relay, dispatcher and streams of every one.

In one process, after-commit hooks wake the loops that work on what a commit wrote (`Runtime.after_commit`).
With several replicas on one PostgreSQL database the work of a commit made on replica A may be replica B's
(B holds the shard of the row: `icep.platform.shards`), and without a wake-up B would see it only at its
next poll. So on PostgreSQL:

- A commit that inserted rows into a watched table (the outbox; notifications' deliveries and event log)
  issues `SELECT pg_notify(<channel>, '')` in the same transaction. NOTIFY is transactional: it is
  delivered at the commit and not at all on a rollback, and the identical notifications of one transaction
  are folded into one. The inserts are noticed by SQLAlchemy session events (`do_orm_execute` for Core
  inserts through a session, the session's new objects for ORM ones), so no write path has to remember it.
- Each process holds ONE dedicated asyncpg connection that LISTENs on the service's channels and runs the
  callbacks (setting the loops' wake events). When that connection is lost it reconnects with backoff;
  meanwhile the loops' polls still find the work, and after a reconnect every callback runs once (a
  notification sent while nobody listened is lost). While it listens, the process's own commits wake its
  loops through it too, so the in-process after-commit hooks stand aside (`unless_listening`).

Where a service's migrations installed the `icep_wakeup` trigger on a watched table (an AFTER INSERT
statement trigger whose argument is the table's channel), the database sends the NOTIFY inside the INSERT
and the session events send none for that table: one round trip fewer per write transaction. The listener
looks the triggers up when it connects and again with every keepalive (a trigger dropped or disabled
while the process runs costs at most one keepalive interval of wake-ups); until then, and for tables
without one, the session events send it (a doubled notification of one transaction is folded into one).

SQLite is one process's file: the in-process after-commit hooks are all there is, and nothing here runs.
Channel names are per service (`icep_<service>_<topic>`), so services sharing a cluster do not wake each
other.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa
from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import ORMExecuteState, Session

from icep.platform.aio import wait_event, within
from icep.platform.db import Database

log = logging.getLogger("icep.wakeups")

_PENDING = "icep.wakeups.pending"

#: Engine -> (table name -> channel) of every `Wakeups` in this process (tests run several databases).
_WATCHED: dict[Engine, dict[str, str]] = {}
#: Engine -> (ORM class -> channel).
_WATCHED_CLASSES: dict[Engine, dict[type, str]] = {}
#: Engine -> (table name -> channel) of the wake-up triggers found in its database: the database sends
#: the NOTIFY of a watched table whose channel is the trigger's.
_BY_TRIGGER: dict[Engine, dict[str, str]] = {}

#: The wake-up triggers that fire in ordinary sessions ('O' origin, 'A' always; not disabled, not replica
#: only) on the current schema's tables, with their channel (the trigger function's one argument).
_TRIGGERS_QUERY = """
SELECT c.relname, t.tgargs
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid
WHERE t.tgname = 'icep_wakeup' AND p.proname = 'icep_wakeup' AND t.tgnargs = 1 AND t.tgenabled IN ('O', 'A')
  AND pg_table_is_visible(c.oid)
"""


def channel_name(service: str, topic: str) -> str:
    """A PostgreSQL identifier naming a service's channel: `icep_plans_outbox`."""
    return re.sub(r"[^a-z0-9_]", "_", f"icep_{service}_{topic}".lower())[:63]


def _engine_of(session: Session) -> Engine | None:
    bind = session.bind
    if bind is None:
        return None
    return bind if isinstance(bind, Engine) else bind.engine


def _on_execute(state: ORMExecuteState) -> None:
    if not state.is_insert:
        return
    engine = _engine_of(state.session)
    tables = _WATCHED.get(engine) if engine is not None else None
    if not tables:
        return
    table = getattr(state.statement, "table", None)
    channel = tables.get(getattr(table, "name", ""))
    if channel is not None:
        state.session.info.setdefault(_PENDING, set()).add(channel)


def _note_new(session: Session) -> None:
    engine = _engine_of(session)
    classes = _WATCHED_CLASSES.get(engine) if engine is not None else None
    if not classes:
        return
    for obj in session.new:
        channel = classes.get(type(obj))
        if channel is not None:
            session.info.setdefault(_PENDING, set()).add(channel)


def _after_flush(session: Session, _context: Any) -> None:
    _note_new(session)  # still the objects just inserted (an explicit flush before the commit)


def _before_commit(session: Session) -> None:
    _note_new(session)  # pending objects the commit's own flush inserts
    channels: set[str] = session.info.pop(_PENDING, set())
    for channel in sorted(channels):
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel})


def _forget(session: Session, *_: Any) -> None:
    session.info.pop(_PENDING, None)


_installed = False


def _install_listeners() -> None:
    global _installed
    if _installed:
        return
    event.listen(Session, "do_orm_execute", _on_execute)
    event.listen(Session, "after_flush", _after_flush)
    event.listen(Session, "before_commit", _before_commit)
    event.listen(Session, "after_rollback", _forget)
    _installed = True


def _set_event(flag: asyncio.Event, *_: Any) -> None:
    flag.set()


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Wakeups:
    """A service's cross-replica wake-ups (PostgreSQL); on SQLite every method is a no-op."""

    def __init__(self, db: Database, service: str, *, keepalive_seconds: float = 5.0) -> None:
        self.db = db
        self.service = service
        self.enabled = db.is_postgres
        self.keepalive_seconds = keepalive_seconds
        self._callbacks: dict[str, list[Callable[[], None]]] = {}
        self.connected = asyncio.Event()
        #: Notifications received (for tests and the operators' curiosity).
        self.received = 0
        self._conn: Any = None
        self._listening: set[str] = set()
        #: Watched table name -> channel, and ORM class -> its watched table's name.
        self._watched: dict[str, str] = {}
        self._classes: dict[type, str] = {}
        #: Watched tables whose NOTIFY the database's trigger sends (as of the last look).
        self.covered: set[str] = set()

    def channel(self, topic: str) -> str:
        return channel_name(self.service, topic)

    def watch(self, table: sa.Table, topic: str, orm_class: type | None = None) -> None:
        """Commits that insert into `table` (or add `orm_class` objects) announce `topic`."""
        if not self.enabled:
            return
        _install_listeners()
        self._watched[table.name] = self.channel(topic)
        if orm_class is not None:
            self._classes[orm_class] = table.name
        self._send_uncovered()

    async def _note_triggers(self, conn: Any) -> None:
        """Look up the wake-up triggers, then send the NOTIFY only for the watched tables they miss."""
        found = {
            name: bytes(args).split(b"\0", 1)[0].decode() for name, args in await conn.fetch(_TRIGGERS_QUERY)
        }
        _BY_TRIGGER[self.db.engine.sync_engine] = found
        self._send_uncovered()

    def _send_uncovered(self) -> None:
        """The session events send the NOTIFY of each watched table whose trigger (as last looked up) does
        not, and of no other."""
        engine = self.db.engine.sync_engine
        found = _BY_TRIGGER.get(engine, {})
        covered = {t for t, c in self._watched.items() if found.get(t) == c}
        self.covered = covered
        tables = _WATCHED.setdefault(engine, {})
        classes = _WATCHED_CLASSES.setdefault(engine, {})
        for table, channel in self._watched.items():
            if table in covered:
                tables.pop(table, None)
            else:
                tables[table] = channel
        for orm_class, table in self._classes.items():
            if table in covered:
                classes.pop(orm_class, None)
            else:
                classes[orm_class] = self._watched[table]

    def on(self, topic: str, callback: Callable[[], None]) -> None:
        """Run `callback` in this process whenever a commit of any replica announced `topic`."""
        channel = self.channel(topic)
        self._callbacks.setdefault(channel, []).append(callback)
        if self._conn is not None and channel not in self._listening:
            # Listening already: add the channel on the live connection (a new connection adds all).
            self._listening.add(channel)
            task = asyncio.ensure_future(self._conn.add_listener(channel, self._notified))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def unless_listening(self, callback: Callable[[], None]) -> Callable[[], None]:
        """`callback` for this process's after-commit hooks: it runs only while no LISTEN connection is up.
        While one is, the commit's own NOTIFY wakes this process too (a listener hears its own session's
        notifications), and waking twice would cost a second, empty round per commit."""

        def wake() -> None:
            if not self.connected.is_set():
                callback()

        return wake

    def off(self, topic: str, callback: Callable[[], None]) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._callbacks[self.channel(topic)].remove(callback)

    def _notified(self, _conn: Any, _pid: int, channel: str, _payload: str) -> None:
        self.received += 1
        for callback in list(self._callbacks.get(channel, ())):
            callback()

    def _wake_all(self) -> None:
        for callbacks in list(self._callbacks.values()):
            for callback in list(callbacks):
                callback()

    async def run(self) -> None:
        """Listen until cancelled, reconnecting (with capped backoff) after the connection is lost."""
        if not self.enabled:
            return
        dsn = _asyncpg_dsn(self.db.url)
        delay = 0.2
        while True:
            conn: Any = None
            try:
                conn = await within(10.0, asyncpg.connect(dsn))
                lost = asyncio.Event()
                conn.add_termination_listener(functools.partial(_set_event, lost))
                self._conn, self._listening = conn, set()
                for channel in list(self._callbacks):
                    if channel not in self._listening:
                        self._listening.add(channel)
                        await conn.add_listener(channel, self._notified)
                await self._note_triggers(conn)
                self.connected.set()
                delay = 0.2
                self._wake_all()  # what was committed while nobody listened
                while not lost.is_set():
                    await wait_event(lost, self.keepalive_seconds)
                    if not lost.is_set():
                        # A dead peer without a FIN shows only when something is sent; what is sent
                        # looks the triggers up again.
                        await within(5.0, self._note_triggers(conn))
                raise ConnectionError("the LISTEN connection was closed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                log.warning(
                    "%s: listening for wake-ups failed (%s); polling meanwhile, again in %.1fs",
                    self.service,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            finally:
                self._conn = None
                self.connected.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await within(2.0, conn.close())
