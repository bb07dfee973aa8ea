"""SQLite for SQLAlchemy's asyncio engine with no thread hop per statement or commit.

aiosqlite hands every cursor, execute, fetch, close and commit to its worker thread: an insert followed
by a commit costs five round trips between the event loop and that thread, and in the services' profiles
those hand-offs (and the GIL traffic they cause) were the largest single cost of a use case. Here
statements and commits run on the event loop's thread (with WAL and `synchronous=NORMAL` a commit
appends to the log without an fsync), rows are fetched with their statement, and what may take long goes
to a worker thread: the checkpoint, which copies the log into the database file and syncs it. The loop's
connections have automatic checkpoints off; every `CHECKPOINT_EVERY` commits of a file a PASSIVE
checkpoint runs on a connection of its own in the default executor, and the last connection to close
checkpoints the rest (in aiosqlite's thread).

A statement on the loop's thread must never wait in SQLite's busy handler for a lock that another task
of the same loop holds: that task could not run to release it. With WAL, readers take no lock, so a
`SELECT` (or a pragma that only sets something of the connection) runs at once; everything else (a
write, `BEGIN IMMEDIATE`, DDL, a pragma that changes the file) first takes the
database file's writer lock of this event loop, an `asyncio.Lock` held until the transaction ends. So
writers of one process queue on the loop, as they queued in the busy handler before, with the same
timeout and the same "database is locked" error when it passes. A writer in another process (a CLI
command on the same file) can still make a statement wait in the busy handler, on the loop's thread, for
as long as that writer's transaction lasts, and a statement that reads or deletes a great many rows holds
the loop while it runs (keep those paged, as the feed and the retention purge are). PostgreSQL is the
database for load and for replicas; this is what makes SQLite cheap for one process.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import sqlite3
import urllib.parse
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiosqlite

# A statement starting with one of these never takes SQLite's write lock (WAL readers wait for nothing).
_LOCK_FREE = ("SELECT", "SAVEPOINT", "RELEASE", "ROLLBACK", "EXPLAIN", "VALUES")

#: Commits of one file between two checkpoints (SQLite's own default is every 1000 WAL pages; a commit
#: of a use case writes a few).
CHECKPOINT_EVERY = 256

log = logging.getLogger("icep.db")
_private = itertools.count()


class _File:
    """One database file as the connections of one event loop share it: the writer lock and the count
    of commits since the last checkpoint."""

    def __init__(self, loop: asyncio.AbstractEventLoop, database: str, options: Mapping[str, Any]) -> None:
        self.loop = loop
        self.lock = asyncio.Lock()
        self.database = database
        self.options = options
        self.checkpoints = not _in_memory(database)
        self.commits = 0
        self.checkpointing: asyncio.Future[None] | None = None

    def release(self) -> None:
        """Let the writer lock go, from whatever thread (a connection may be finalised by the GC)."""
        if _running_loop() is self.loop:
            if self.lock.locked():
                self.lock.release()
        elif not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.release)

    def transaction_ended(self) -> None:
        self.commits += 1
        if not self.checkpoints or self.commits < CHECKPOINT_EVERY or self.checkpointing is not None:
            return
        self.commits = 0
        self.checkpointing = self.loop.run_in_executor(None, self._checkpoint)
        self.checkpointing.add_done_callback(self._checkpointed)

    def _checkpoint(self) -> None:
        """Copy the WAL's committed pages into the database file, on a connection of its own in a worker
        thread; PASSIVE waits for no lock and leaves what a reader still needs for the next round."""
        conn = sqlite3.connect(self.database, **self.options)
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            conn.close()

    def _checkpointed(self, done: asyncio.Future[None]) -> None:
        self.checkpointing = None
        if not done.cancelled() and done.exception() is not None:
            log.warning("checkpoint of %s failed: %s", self.database, done.exception())


# One entry per (event loop, file); entries of closed loops are dropped when a new one is made (a lock
# refers to its loop, so a weak mapping would keep every loop alive).
_files: dict[tuple[int, str], _File] = {}


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _file(key: str, database: str, options: Mapping[str, Any]) -> _File:
    loop = asyncio.get_running_loop()
    found = _files.get((id(loop), key))
    if found is None or found.loop is not loop:
        for stale in [k for k, f in _files.items() if f.loop.is_closed()]:
            del _files[stale]
        found = _files[(id(loop), key)] = _File(loop, database, options)
    return found


def _in_memory(database: str) -> bool:
    return database == ":memory:" or database.startswith("file::memory:") or "mode=memory" in database


def _file_key(database: str, uri: bool) -> str:
    """The same file however it is named (a path, a relative path, a `file:` URI)."""
    if _in_memory(database):
        return database if "cache=shared" in database else f"{database}#{next(_private)}"
    if uri and database.startswith("file:"):
        database = urllib.parse.unquote(urllib.parse.urlsplit(database).path)
    return os.path.realpath(database)


# Pragmas that read, or set something of the connection only (journal_mode=WAL changes the file once,
# on its first connection, and is a no-op from then on). Any other pragma is treated as a writer.
_CONNECTION_PRAGMAS = frozenset(
    {
        "BUSY_TIMEOUT",
        "FOREIGN_KEYS",
        "JOURNAL_MODE",
        "READ_UNCOMMITTED",
        "SYNCHRONOUS",
        "WAL_AUTOCHECKPOINT",
        "COMPILE_OPTIONS",
        "DATABASE_LIST",
        "FOREIGN_KEY_LIST",
        "INDEX_INFO",
        "INDEX_LIST",
        "INDEX_XINFO",
        "TABLE_INFO",
        "TABLE_XINFO",
    }
)
_PRAGMA_NAME = re.compile(r"PRAGMA\s+(?:\w+\.)?(\w+)", re.IGNORECASE)


def _takes_write_lock(sql: str) -> bool:
    head = sql.lstrip()[:40].upper()
    if head.startswith(_LOCK_FREE):
        return False
    if head.startswith("PRAGMA"):
        name = _PRAGMA_NAME.match(sql.lstrip())
        return name is None or name.group(1).upper() not in _CONNECTION_PRAGMAS
    return True


class Cursor:
    """What SQLAlchemy's aiosqlite adapter reads of a cursor; the rows are fetched with the statement."""

    arraysize = 1

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.description: Any = None
        self.lastrowid: int | None = None
        self.rowcount = -1
        self._rows: deque[Any] = deque()

    async def execute(self, sql: str, parameters: Any = None) -> Cursor:
        await self._connection.run(self, sql, parameters, many=False)
        return self

    async def executemany(self, sql: str, parameters: Any) -> Cursor:
        await self._connection.run(self, sql, parameters, many=True)
        return self

    async def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        rows = self._rows
        return [rows.popleft() for _ in range(min(size or self.arraysize, len(rows)))]

    async def close(self) -> None:
        self._rows.clear()


class Connection(aiosqlite.Connection):
    """An aiosqlite connection whose statements run on the event loop (see the module's docstring)."""

    def __init__(
        self, connector: Callable[[], sqlite3.Connection], file: Callable[[], _File], busy_timeout: float
    ) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._thread.daemon = (
            True  # as SQLAlchemy makes aiosqlite's: an engine left open ends with the process
        )
        self._file = file
        self._busy_timeout = busy_timeout
        self._holding: _File | None = None

    async def cursor(self) -> Cursor:  # type: ignore[override]
        return Cursor(self)

    async def execute(self, sql: str, parameters: Any = None) -> Cursor:  # type: ignore[override]
        return await Cursor(self).execute(sql, parameters)

    async def run(self, cursor: Cursor, sql: str, parameters: Any, *, many: bool) -> None:
        raw = self._conn
        if self._holding is None and _takes_write_lock(sql):
            await self._take_writer_lock()
        try:
            target = raw.cursor()
            try:
                if many:
                    target.executemany(sql, parameters)
                elif parameters is None:
                    target.execute(sql)
                else:
                    target.execute(sql, parameters)
                cursor.description = target.description
                cursor.lastrowid = target.lastrowid
                cursor.rowcount = target.rowcount
                cursor._rows = deque(target.fetchall()) if target.description else deque()
            finally:
                target.close()
        finally:
            self._settle()

    async def commit(self) -> None:
        try:
            self._conn.commit()
        finally:
            self._settle()

    async def rollback(self) -> None:
        try:
            self._conn.rollback()
        finally:
            self._settle()

    async def close(self) -> None:
        try:
            await super().close()  # rolls back what is open, then the lock can go
        finally:
            self._let_go()

    def stop(self) -> asyncio.Future[Any] | None:
        closing = super().stop()
        if closing is None:
            self._let_go()
        else:
            closing.add_done_callback(lambda _: self._let_go())
        return closing

    async def _take_writer_lock(self) -> None:
        file = self._file()
        try:
            async with asyncio.timeout(self._busy_timeout):
                await file.lock.acquire()
        except TimeoutError:
            raise sqlite3.OperationalError("database is locked") from None
        self._holding = file

    def _settle(self) -> None:
        """Let the writer lock go once the connection is outside a transaction (a commit, a rollback, an
        autocommit statement or the RELEASE that ends one), and count the transaction for checkpoints."""
        file = self._holding
        if file is not None and (self._connection is None or not self._connection.in_transaction):
            self._let_go()
            file.transaction_ended()

    def _let_go(self) -> None:
        file, self._holding = self._holding, None
        if file is not None:
            file.release()


def connection_factory(
    args: Sequence[Any], kwargs: Mapping[str, Any], busy_timeout: float
) -> Callable[[], Connection]:
    """An `async_creator` for SQLAlchemy: `args` and `kwargs` as the dialect would give sqlite3.connect."""
    database = str(args[0]) if args else ":memory:"
    options = {**kwargs, "check_same_thread": False}
    checkpoint_options = {key: value for key, value in options.items() if key == "uri"}

    def connect() -> sqlite3.Connection:
        raw: sqlite3.Connection = sqlite3.connect(database, **options)
        if not _in_memory(database):
            raw.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run in a worker thread, see _File
        return raw

    def create() -> Connection:
        key = _file_key(database, bool(options.get("uri")))
        return Connection(connect, lambda: _file(key, database, checkpoint_options), busy_timeout)

    return create
