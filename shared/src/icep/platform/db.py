"""Async database access: SQLite file under ./var/ by default, PostgreSQL by URL.

Each service owns one database and one SQLAlchemy `MetaData`; `service_registry()` gives a service its
own SQLModel base so no table of one service ends up in another's metadata.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Dialect, Table, TypeDecorator, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.orm import Session

from icep.platform import sqlite_connection

log = logging.getLogger("icep.db")

BUSY_TIMEOUT_S = 10.0  # how long a SQLite writer waits for the database's one write lock


def normalize_url(url: str) -> str:
    """Give plain `postgresql://` and `sqlite:///` URLs their async drivers."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://") and not url.startswith("sqlite+"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    return url


def is_postgres(url: str) -> bool:
    return make_url(normalize_url(url)).get_backend_name() == "postgresql"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers and the one writer overlap; busy_timeout turns lock contention into waiting.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def ensure_sqlite_dir(url: str) -> None:
    """A SQLite database file's folder must exist before the first connection."""
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        ensure_sqlite_dir(url)
        args, options = SQLiteDialect_aiosqlite().create_connect_args(parsed)
        options.update(kwargs.pop("connect_args", {}))
        creator = sqlite_connection.connection_factory(args, options, BUSY_TIMEOUT_S)
        kwargs.setdefault("async_creator", creator)
        engine = _create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # 16 requests in flight, the relay, the consumer and the locks of one process: a smaller pool opened
    # and closed overflow connections (a TLS attempt and a login each) all through a load test.
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 10)
    engine = _create_async_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_idle(engine, IDLE_BEFORE_PING_S)
    return engine


IDLE_BEFORE_PING_S = 1.0  # a pooled PostgreSQL connection idle this long is pinged before it is used


def _ping_when_idle(engine: AsyncEngine, idle: float) -> None:
    """Ping a pooled connection before use only when it sat idle for `idle` seconds.

    SQLAlchemy's `pool_pre_ping` pings on every checkout: a round trip per transaction, a tenth of the
    plans service's CPU under load. A server restart shows on the connections that sat idle through it;
    one in steady use fails its next statement either way (and SQLAlchemy then invalidates the pool)."""
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["icep_idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("icep_idle_since")
        if since is None or time.monotonic() - since < idle:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool drops this connection and checks out another
            raise DisconnectionError(f"a pooled connection idle for {idle} s failed its ping: {exc}") from exc


async def begin_write(session: AsyncSession) -> None:
    """Make the session's transaction a writer from its first statement.

    On SQLite, `SELECT ... FOR UPDATE` locks nothing and a transaction only takes the write lock at its
    first write, so two read-modify-write use cases could both read the same version and the later one
    overwrite the earlier (a lost update). `BEGIN IMMEDIATE` takes the database's one write lock first:
    writers queue (up to busy_timeout) and each reads what the previous one committed. PostgreSQL needs
    nothing here: its row locks do this, row by row."""
    bind = session.bind
    if bind is not None and bind.dialect.name == "sqlite":
        await session.execute(text("BEGIN IMMEDIATE"))


class Database:
    """An engine and a session factory; `session()` is the unit of work's transaction."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = normalize_url(url)
        self.engine = create_engine(self.url, **engine_kwargs)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # Reads outside a transaction (see `reading`): the same pool; the isolation level is a flag of
        # the driver's connection, set at checkout and reset at checkin without a round trip.
        self.read_engine = (
            self.engine.execution_options(isolation_level="AUTOCOMMIT") if self.is_postgres else self.engine
        )
        self.read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one write transaction: committed on success, rolled back on error. Rows
        queued with `write_before_commit` are written just before the commit."""
        async with self.sessions() as session, session.begin():
            await begin_write(session)
            yield session
            await write_deferred(session)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A connection outside any transaction block, for reads of one statement: on PostgreSQL each
        statement is a transaction of its own, so a read costs one round trip instead of three (BEGIN, the
        query, ROLLBACK). Two statements on it may see two snapshots; read together what must agree. On
        SQLite it is an ordinary connection (its driver begins no transaction for a read anyway). A write
        on it must still end with `commit()`: on SQLite that commits it, on PostgreSQL it is already
        committed, and a connection the pool reconnected meanwhile is an ordinary one again."""
        async with self.read_engine.connect() as conn:
            yield conn

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


_DEFERRED = "icep.deferred_writes"
DeferredWrite = Callable[[AsyncSession, list[Any]], Awaitable[None]]


def write_before_commit(session: AsyncSession, write: DeferredWrite, row: Any) -> None:
    """Queue `row` for `write`, which gets every row queued for it in this transaction in one call, just
    before `Database.transaction` commits: a consumer batch's rows of one table go in one statement
    instead of one per event. Nothing in the transaction can read a queued row before that."""
    pending: dict[DeferredWrite, list[Any]] = session.info.setdefault(_DEFERRED, {})
    pending.setdefault(write, []).append(row)


async def write_deferred(session: AsyncSession) -> None:
    """Write what `write_before_commit` queued, in the order the writers were first used."""
    while pending := session.info.pop(_DEFERRED, None):
        for write, rows in pending.items():
            await write(session, rows)


@event.listens_for(Session, "before_commit")
def _refuse_unwritten(session: Session) -> None:
    """A transaction committed some other way than `Database.transaction` must not drop queued rows."""
    if session.info.get(_DEFERRED):
        raise RuntimeError("rows queued with write_before_commit were not written before the commit")


async def insert_ignore(session: AsyncSession, table: Table, values: dict[str, Any]) -> bool:
    """Insert a row unless its primary key exists; True when it was inserted.

    Used for inbox rows: a duplicate must not abort the surrounding transaction on PostgreSQL, so this
    uses ON CONFLICT DO NOTHING rather than catching an IntegrityError.
    """
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    stmt: Any
    if dialect == "postgresql":
        stmt = postgresql.insert(table).values(**values).on_conflict_do_nothing()
    else:
        stmt = sqlite.insert(table).values(**values).on_conflict_do_nothing()
    result = await session.execute(stmt)
    return bool(getattr(result, "rowcount", 0))


async def insert_ignore_many(
    session: AsyncSession, table: Table, rows: list[dict[str, Any]], returning: str
) -> set[Any]:
    """Insert many rows in one statement, skipping those whose key exists; the `returning` column of
    the rows actually inserted."""
    if not rows:
        return set()
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table).values(rows).on_conflict_do_nothing().returning(table.c[returning])
    return set((await session.execute(stmt)).scalars().all())


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for pg advisory locks, derived from a name."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class LeaderLock:
    """One active holder per database of a named role (the outbox relay, the webhook dispatcher).

    On PostgreSQL a session advisory lock held on a dedicated AUTOCOMMIT connection (so it never sits
    idle in a transaction); other replicas stand by and take over when the holder's session ends. SQLite
    is one process's file, whose holder is always the leader.
    """

    def __init__(self, db: Database, name: str) -> None:
        self.db = db
        self.name = name
        self.key = advisory_key(name)
        self._conn: AsyncConnection | None = None

    async def hold(self) -> bool:
        """Keep or take the lock; True while this process is the leader."""
        if not self.db.is_postgres:
            return True
        if self._conn is not None:
            try:
                await self._conn.execute(text("SELECT 1"))
                return True
            except Exception:
                log.warning("lost the %s lock connection; trying to take the lock again", self.name)
                await self.release()
        conn = await self.db.engine.connect()
        try:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("SET statement_timeout = '10s'"))
            got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key})).scalar()
        except Exception:
            await conn.invalidate()
            await conn.close()
            raise
        if got:
            self._conn = conn
            log.info("this process is now the active %s", self.name)
            return True
        await conn.close()
        return False

    async def release(self) -> None:
        """Unlock and end the lock's database session (a pooled connection would keep the lock)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
        except Exception:
            log.debug("unlocking %s failed; dropping its connection", self.name, exc_info=True)
        finally:
            await conn.invalidate()
            await conn.close()


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (UTC), on every database.

    PostgreSQL's `timestamptz` does this by itself; SQLite keeps no offset, so without this its values come
    back naive and an API answer would carry a time without an offset (not an RFC 3339 date-time).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)  # the platform's naive times are UTC
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
