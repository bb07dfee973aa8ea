"""SQLite statements on the event loop's thread: writers of one process queue on the loop's writer lock
(never in SQLite's busy handler, where the holder could not run to let go), readers never wait, and the
lock is let go however a transaction ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from icep.platform import sqlite_connection
from icep.platform.db import Database
from icep.platform.testing import wait_for

metadata = sa.MetaData()
counter = sa.Table(
    "counter",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("value", sa.Integer, nullable=False),
)
notes = sa.Table(
    "notes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("text", sa.String(50), nullable=False),
)


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite:///{tmp_path}/lite.db")
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(counter.insert().values(id=1, value=0))
    yield db
    await db.dispose()


def engine_with_timeout(db: Database, seconds: float) -> AsyncEngine:
    """A second engine on the same file whose writers give up after `seconds`."""
    url = make_url(db.url)
    args, options = url.get_dialect()().create_connect_args(url)
    creator = sqlite_connection.connection_factory(args, options, seconds)
    return create_async_engine(db.url, async_creator=creator)


async def test_concurrent_read_modify_write_transactions_lose_no_update(database: Database) -> None:
    async def increment() -> None:
        async with database.transaction() as session:
            value = (await session.execute(sa.select(counter.c.value).where(counter.c.id == 1))).scalar_one()
            await asyncio.sleep(0)  # give every other writer the chance to run in between
            await session.execute(counter.update().where(counter.c.id == 1).values(value=value + 1))

    async with asyncio.timeout(60):
        await asyncio.gather(*(increment() for _ in range(200)))
    async with database.connect() as conn:
        assert (await conn.execute(sa.select(counter.c.value))).scalar_one() == 200


async def test_a_writer_waits_on_the_loop_for_an_open_write_transaction_and_readers_do_not(
    database: Database,
) -> None:
    holding = asyncio.Event()
    finish = asyncio.Event()
    order: list[str] = []

    async def first() -> None:
        async with database.transaction() as session:
            await session.execute(notes.insert().values(text="first"))
            holding.set()
            await finish.wait()  # the write lock is held across an await of something else
            order.append("first commits")

    async def second() -> None:
        await holding.wait()
        async with database.transaction() as session:
            order.append("second writes")
            await session.execute(notes.insert().values(text="second"))

    async with asyncio.timeout(30):
        one = asyncio.create_task(first())
        two = asyncio.create_task(second())
        await holding.wait()
        async with database.connect() as conn:  # a reader sees the last commit at once
            assert (await conn.execute(sa.select(sa.func.count()).select_from(notes))).scalar_one() == 0
        assert not two.done()
        finish.set()
        await asyncio.gather(one, two)
    assert order == ["first commits", "second writes"]
    async with database.connect() as conn:
        rows = (await conn.execute(sa.select(notes.c.text).order_by(notes.c.id))).scalars().all()
    assert rows == ["first", "second"]


async def test_a_writer_that_waits_past_the_busy_timeout_gets_database_is_locked(database: Database) -> None:
    impatient = engine_with_timeout(database, 0.2)
    try:
        async with asyncio.timeout(30), database.transaction() as session:
            await session.execute(notes.insert().values(text="held"))
            with pytest.raises(OperationalError, match="database is locked"):
                async with impatient.begin() as conn:
                    await conn.execute(notes.insert().values(text="waited too long"))
        async with impatient.begin() as conn:  # once the holder commits, the same engine writes
            await conn.execute(notes.insert().values(text="later"))
        async with database.connect() as conn:
            rows = (await conn.execute(sa.select(notes.c.text).order_by(notes.c.id))).scalars().all()
        assert rows == ["held", "later"]
    finally:
        await impatient.dispose()


async def test_the_lock_is_let_go_when_a_transaction_fails_or_its_task_is_cancelled(
    database: Database,
) -> None:
    with pytest.raises(RuntimeError):
        async with database.transaction() as session:
            await session.execute(notes.insert().values(text="rolled back"))
            raise RuntimeError("the use case failed")

    inside = asyncio.Event()

    async def stuck() -> None:
        async with database.transaction() as session:
            await session.execute(notes.insert().values(text="cancelled"))
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(stuck())
    async with asyncio.timeout(30):
        await inside.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with database.transaction() as session:
            await session.execute(notes.insert().values(text="after"))
    async with database.connect() as conn:
        rows = (await conn.execute(sa.select(notes.c.text))).scalars().all()
    assert rows == ["after"]


async def test_one_file_named_as_a_path_and_as_a_uri_shares_one_writer_lock(
    database: Database, tmp_path: Path
) -> None:
    by_uri = Database(f"sqlite:///file:{tmp_path}/lite.db?uri=true")
    holding = asyncio.Event()
    try:
        async with asyncio.timeout(30):

            async def through_the_uri() -> None:
                await holding.wait()
                async with by_uri.transaction() as session:  # queues on the loop, not in the busy handler
                    await session.execute(notes.insert().values(text="by uri"))

            waiting = asyncio.create_task(through_the_uri())
            async with database.transaction() as session:
                await session.execute(notes.insert().values(text="by path"))
                holding.set()
                await asyncio.sleep(0)  # the other writer runs up to its wait for the lock
                assert not waiting.done()
            await waiting
        async with database.connect() as conn:
            rows = (await conn.execute(sa.select(notes.c.text).order_by(notes.c.id))).scalars().all()
        assert rows == ["by path", "by uri"]
    finally:
        await by_uri.dispose()


async def test_a_connection_finalised_on_another_thread_lets_a_waiting_writer_through(
    database: Database,
) -> None:
    loop = asyncio.get_running_loop()
    async with database.engine.connect() as holder:
        raw = await holder.get_raw_connection()
        driver = raw.driver_connection
        assert isinstance(driver, sqlite_connection.Connection)
        await holder.execute(notes.insert().values(text="held"))
        assert driver._holding is not None

        async def writer() -> None:
            async with database.transaction() as session:
                await session.execute(notes.insert().values(text="after"))

        waiting = asyncio.create_task(writer())
        await asyncio.sleep(0)
        assert not waiting.done()
        # as SQLAlchemy's finaliser does when the GC collects a checked-out connection on another thread
        await loop.run_in_executor(None, driver.stop)
        async with asyncio.timeout(5):
            await waiting
        await holder.invalidate()
    async with database.connect() as conn:
        assert (await conn.execute(sa.select(notes.c.text))).scalars().all() == ["after"]


async def test_the_connection_threads_do_not_keep_the_process_alive(database: Database) -> None:
    async with database.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert isinstance(driver, sqlite_connection.Connection)
        assert driver._thread.daemon


async def test_statements_return_rows_counts_and_ids(database: Database) -> None:
    async with database.engine.begin() as conn:
        inserted = await conn.execute(notes.insert().values(text="a"))
        assert inserted.inserted_primary_key == (1,)
        await conn.execute(notes.insert(), [{"text": "b"}, {"text": "c"}, {"text": "d"}])
        changed = await conn.execute(notes.update().where(notes.c.id > 1).values(text="x"))
        assert changed.rowcount == 3
        rows = (await conn.execute(sa.select(notes.c.id, notes.c.text).order_by(notes.c.id))).all()
    assert [tuple(row) for row in rows] == [(1, "a"), (2, "x"), (3, "x"), (4, "x")]
    async with database.engine.connect() as conn:
        streamed = await conn.stream(sa.select(notes.c.id).order_by(notes.c.id))
        assert [row[0] async for row in streamed] == [1, 2, 3, 4]


async def test_the_log_is_checkpointed_off_the_loop_every_so_many_commits(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_connection, "CHECKPOINT_EVERY", 20)
    async with database.connect() as conn:  # no automatic checkpoint on the loop's thread
        assert (await conn.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar_one() == 0
    file = tmp_path / "lite.db"
    before = file.stat().st_size
    written = 0

    async def write_one_and_look() -> bool:
        """Another commit of about a page; whether the database file (not only its log) holds 40 pages
        more than before, as it does only once commits have been checkpointed into it."""
        nonlocal written
        async with database.transaction() as session:
            await session.execute(notes.insert().values(text="x" * 4000))
        written += 1
        return file.stat().st_size > before + 40 * 4000

    await wait_for(write_one_and_look, timeout=30, interval=0.01, what="checkpoints into the file")
    assert written >= 40
    async with database.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(notes))).scalar_one() == written


@pytest.mark.parametrize(
    ("sql", "takes_lock"),
    [
        ("SELECT 1", False),
        ("  select * from notes", False),
        ("SAVEPOINT sa_1", False),
        ("RELEASE SAVEPOINT sa_1", False),
        ("ROLLBACK TO SAVEPOINT sa_1", False),
        ("INSERT INTO notes (text) VALUES ('a')", True),
        ("BEGIN IMMEDIATE", True),
        ("WITH x AS (SELECT 1) DELETE FROM notes", True),
        ("PRAGMA journal_mode=WAL", False),
        ("PRAGMA busy_timeout=10000", False),
        ("PRAGMA table_info(notes)", False),
        ("PRAGMA user_version=3", True),
        ("PRAGMA read_uncommitted = 0", False),
        ("PRAGMA main.table_info(notes)", False),
        ("PRAGMA wal_checkpoint(TRUNCATE)", True),
        ("PRAGMA optimize", True),
        ("CREATE TABLE t (a INTEGER)", True),
    ],
)
def test_which_statements_take_the_writer_lock(sql: str, takes_lock: bool) -> None:
    assert sqlite_connection._takes_write_lock(sql) is takes_lock
