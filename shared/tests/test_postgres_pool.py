"""PostgreSQL's pool pings a connection before use only when it sat idle: one whose server session ended
while it waited in the pool is replaced without the caller seeing an error. `Database.reading()` takes a
pooled connection outside any transaction block, and the pool gets it back transactional."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from icep.platform import db as dbmodule
from icep.platform.db import Database


async def _backend_pid(database: Database) -> int:
    async with database.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _terminate(admin: Database, pid: int) -> None:
    async with admin.connect() as conn:
        ended = await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        assert ended.scalar_one()


@pytest.mark.parametrize("idle_before_ping", [0.0, 3600.0])
async def test_an_idle_connection_whose_session_ended_is_replaced_after_its_ping(
    make_database_url: Callable[[str], str], monkeypatch: pytest.MonkeyPatch, idle_before_ping: float
) -> None:
    monkeypatch.setattr(dbmodule, "IDLE_BEFORE_PING_S", idle_before_ping)
    url = make_database_url("pool")
    database = Database(url, pool_size=2, max_overflow=0)
    admin = Database(url)  # ends the pooled connections' server sessions, as a restart would
    try:
        first = await _backend_pid(database)
        async with database.connect() as a, database.connect() as b:  # two pooled connections
            pids = {
                (await a.execute(text("SELECT pg_backend_pid()"))).scalar_one(),
                (await b.execute(text("SELECT pg_backend_pid()"))).scalar_one(),
            }
        assert first in pids and len(pids) == 2
        for pid in pids:
            await _terminate(admin, pid)
        if idle_before_ping == 0.0:
            # each checkout pings the idle connection, finds it dead and opens a new one
            assert await _backend_pid(database) not in pids
        else:
            # not idle long enough to be pinged: the statement meets the ended session, once
            with pytest.raises(DBAPIError):
                await _backend_pid(database)
            assert await _backend_pid(database) not in pids
    finally:
        await database.dispose()
        await admin.dispose()


async def test_reads_outside_a_transaction_block_and_the_pool_gets_its_connection_back_transactional(
    make_database_url: Callable[[str], str],
) -> None:
    url = make_database_url("reading")
    database = Database(url, pool_size=1, max_overflow=0)  # one connection: the same one every time
    other = Database(url)
    try:
        async with database.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (n int)"))
        xact = text("SELECT pg_current_xact_id()::text")
        async with database.reading() as conn:
            # No BEGIN: each statement is a transaction of its own.
            assert (await conn.execute(xact)).scalar_one() != (await conn.execute(xact)).scalar_one()
            await conn.execute(text("INSERT INTO t VALUES (1)"))
            async with other.connect() as look:  # committed without a commit call
                assert (await look.execute(text("SELECT count(*) FROM t"))).scalar_one() == 1
        async with database.connect() as conn:  # the same pooled connection, in a transaction again
            assert (await conn.execute(xact)).scalar_one() == (await conn.execute(xact)).scalar_one()
            await conn.execute(text("INSERT INTO t VALUES (2)"))
            await conn.rollback()
        async with other.connect() as look:
            assert (await look.execute(text("SELECT count(*) FROM t"))).scalar_one() == 1
    finally:
        await database.dispose()
        await other.dispose()
