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
as long as that writer's transaction lasts.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sqlite3
import weakref
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

    def __init__(self, database: str, options: Mapping[str, Any], checkpoints: bool) -> None:
        self.lock = asyncio.Lock()
        self.database = database
        self.options = options
        self.checkpoints = checkpoints
        self.commits = 0
        self.checkpointing: asyncio.Future[None] | None = None

    def committed(self) -> None:
        self.commits += 1
        if not self.checkpoints or self.commits < CHECKPOINT_EVERY or self.checkpointing is not None:
            return
        self.commits = 0
        self.checkpointing = asyncio.get_running_loop().run_in_executor(None, self._checkpoint)
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


_files: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _File]] = weakref.WeakKeyDictionary()


def _file(key: str, database: str, options: Mapping[str, Any], checkpoints: bool) -> _File:
    files = _files.setdefault(asyncio.get_running_loop(), {})
    found = files.get(key)
    if found is None:
        found = files[key] = _File(database, options, checkpoints)
    return found


# Pragmas that set something of the connection only, as every new connection does (journal_mode=WAL
# changes the file once, on its first connection, and is a no-op from then on).
_CONNECTION_PRAGMAS = ("JOURNAL_MODE", "BUSY_TIMEOUT", "FOREIGN_KEYS", "SYNCHRONOUS")


def _takes_write_lock(sql: str) -> bool:
    head = sql.lstrip()[:40].upper()
    if head.startswith(_LOCK_FREE):
        return False
    if head.startswith("PRAGMA"):
        name = head[6:].lstrip()
        return "=" in sql and not name.startswith(_CONNECTION_PRAGMAS)
    return True


class Cursor:
    """What SQLAlchemy's aiosqlite adapter reads of a cursor; the rows are fetched with the statement."""

    arraysize = 1

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.description: Any = None
        self.lastrowid: int | None = None
        self.rowcount = -1
        self._rows: list[Any] = []

    async def execute(self, sql: str, parameters: Any = None) -> Cursor:
        await self._connection.run(self, sql, parameters, many=False)
        return self

    async def executemany(self, sql: str, parameters: Any) -> Cursor:
        await self._connection.run(self, sql, parameters, many=True)
        return self

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        size = size or self.arraysize
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    async def close(self) -> None:
        self._rows = []


class Connection(aiosqlite.Connection):
    """An aiosqlite connection whose statements run on the event loop (see the module's docstring)."""

    def __init__(
        self, connector: Callable[[], sqlite3.Connection], file: Callable[[], _File], busy_timeout: float
    ) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._file = file
        self._busy_timeout = busy_timeout
        self._holding: asyncio.Lock | None = None

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
                cursor._rows = target.fetchall() if target.description else []
            finally:
                target.close()
        finally:
            self._settle()

    async def commit(self) -> None:
        try:
            self._conn.commit()
        finally:
            self._settle()
        self._file().committed()

    async def rollback(self) -> None:
        try:
            self._conn.rollback()
        finally:
            self._settle()

    async def close(self) -> None:
        self._let_go()
        await super().close()

    def stop(self) -> asyncio.Future[Any] | None:
        self._let_go()
        return super().stop()

    async def _take_writer_lock(self) -> None:
        lock = self._file().lock
        try:
            async with asyncio.timeout(self._busy_timeout):
                await lock.acquire()
        except TimeoutError:
            raise sqlite3.OperationalError("database is locked") from None
        self._holding = lock

    def _settle(self) -> None:
        """Let the writer lock go once the connection is outside a transaction."""
        if self._holding is not None and (self._connection is None or not self._connection.in_transaction):
            self._let_go()

    def _let_go(self) -> None:
        lock, self._holding = self._holding, None
        if lock is not None and lock.locked():
            lock.release()


def connection_factory(
    args: Sequence[Any], kwargs: Mapping[str, Any], busy_timeout: float
) -> Callable[[], Connection]:
    """An `async_creator` for SQLAlchemy: `args` and `kwargs` as the dialect would give sqlite3.connect."""
    database = str(args[0]) if args else ":memory:"
    options = {**kwargs, "check_same_thread": False}
    in_memory = database == ":memory:" or "mode=memory" in database
    shared_key = database if options.get("uri") else os.path.realpath(database)

    checkpoint_options = {key: value for key, value in options.items() if key == "uri"}

    def connect() -> sqlite3.Connection:
        raw: sqlite3.Connection = sqlite3.connect(database, **options)
        if not in_memory:
            raw.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run in a worker thread, see _File
        return raw

    def create() -> Connection:
        key = f"{shared_key}#{next(_private)}" if in_memory and "cache=shared" not in database else shared_key
        return Connection(
            connect, lambda: _file(key, database, checkpoint_options, not in_memory), busy_timeout
        )

    return create
