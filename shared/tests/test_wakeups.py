"""Wake-ups across replicas (PostgreSQL LISTEN/NOTIFY): a commit made through one connection pool (replica
A) wakes the relay of another (replica B) at once, though B's relay polls only once a minute and A calls
no after-commit hook of B's. Collected only on PostgreSQL (see conftest.py)."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import sqlalchemy as sa

from icep.contracts import EventPayload, Releasability
from icep.platform.db import Database
from icep.platform.events import OutgoingEvent
from icep.platform.outbox import UnitOfWorkFactory
from icep.platform.relay import OutboxRelay
from icep.platform.tables import PlatformTables, wakeup_trigger_statements_v1
from icep.platform.testing import wait_for
from icep.platform.wakeups import Wakeups


class Pinged(EventPayload):
    event_type: ClassVar[str] = "icep.test.pinged.v1"
    aggregate: ClassVar[str] = "ping"

    n: int


async def unsent(db: Database, tables: PlatformTables) -> int:
    async with db.sessions() as s:
        query = sa.select(sa.func.count()).where(tables.outbox.c.sent_at.is_(None))
        return int((await s.execute(query)).scalar_one())


async def test_a_commit_on_one_replica_wakes_the_relay_of_another(
    db: Database, tables: PlatformTables, topic: str, kafka_bootstrap: str
) -> None:
    replica_a = Database(db.url)  # its own pool and sessions: another process, as far as B can tell
    wakeups_a = Wakeups(replica_a, "test")
    wakeups_a.watch(tables.outbox, "outbox")  # A announces its outbox commits; B listens
    wakeups_b = Wakeups(db, "test")
    relay_b = OutboxRelay(
        db=db,
        outbox=tables.outbox,
        service="test",
        bootstrap=kafka_bootstrap,
        poll_seconds=60.0,  # only a wake-up can make it publish within the wait below
        rebalance_seconds=60.0,
    )
    wakeups_b.on("outbox", relay_b.wake)
    woken: list[int] = []
    wakeups_b.on("outbox", lambda: woken.append(1))
    tasks = [asyncio.create_task(wakeups_b.run()), asyncio.create_task(relay_b.run())]
    try:
        await asyncio.wait_for(wakeups_b.connected.wait(), 10)
        await wait_for(lambda: relay_b.active, what="B's relay holds the outbox's shards")
        woken.clear()
        uow_a = UnitOfWorkFactory(replica_a, tables.outbox, "test", topic)  # no after-commit hook of B's
        for n in range(3):
            async with uow_a() as tx:
                tx.publish(
                    OutgoingEvent(
                        payload=Pinged(n=n), subject=f"p{n}", releasability=Releasability(owner="DEU")
                    )
                )
        await wait_for(lambda: woken, timeout=10, what="B hears A's commits")

        async def all_sent() -> bool:
            return await unsent(db, tables) == 0

        await wait_for(all_sent, timeout=15, what="B's relay published A's rows")
        # A rolled-back transaction announces nothing (NOTIFY is transactional).
        woken.clear()
        try:
            async with uow_a() as tx:
                tx.publish(
                    OutgoingEvent(payload=Pinged(n=9), subject="p9", releasability=Releasability(owner="DEU"))
                )
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
        async with uow_a() as tx:  # a later commit is heard, so the rolled-back one would have been too
            tx.publish(
                OutgoingEvent(payload=Pinged(n=10), subject="p10", releasability=Releasability(owner="DEU"))
            )
        await wait_for(lambda: len(woken) > 0, what="the commit after the rollback is heard")
        assert len(woken) == 1
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await replica_a.dispose()


def count_notifies(db: Database) -> list[str]:
    """The NOTIFY statements the application sends through `db`'s pool."""
    sent: list[str] = []

    def before(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "pg_notify" in statement:
            sent.append(statement)

    sa.event.listen(db.engine.sync_engine, "before_cursor_execute", before)
    return sent


async def test_where_the_trigger_sends_the_notify_the_application_sends_none(
    db: Database, tables: PlatformTables, topic: str
) -> None:
    replica_a = Database(db.url)
    wakeups_a = Wakeups(replica_a, "test", keepalive_seconds=0.1)  # looks for triggers with each keepalive
    wakeups_a.watch(tables.outbox, "outbox")
    wakeups_b = Wakeups(db, "test")
    woken: list[int] = []
    wakeups_b.on("outbox", lambda: woken.append(1))
    sent = count_notifies(replica_a)
    uow_a = UnitOfWorkFactory(replica_a, tables.outbox, "test", topic)

    async def publish(n: int) -> None:
        async with uow_a() as tx:
            tx.publish(
                OutgoingEvent(payload=Pinged(n=n), subject=f"p{n}", releasability=Releasability(owner="DEU"))
            )

    tasks = [asyncio.create_task(wakeups_b.run())]
    try:
        await asyncio.wait_for(wakeups_b.connected.wait(), 10)
        # No trigger yet: the session sends the NOTIFY before the commit.
        woken.clear()
        await publish(1)
        await wait_for(lambda: woken, timeout=10, what="B hears A's commit")
        assert len(sent) == 1
        # The migration's trigger on the table: once A's listener has found it, A sends none, and the
        # database's NOTIFY wakes B all the same.
        async with db.engine.begin() as conn:
            for statement in wakeup_trigger_statements_v1({tables.outbox.name: wakeups_a.channel("outbox")}):
                await conn.exec_driver_sql(statement)
        tasks.append(asyncio.create_task(wakeups_a.run()))
        await wait_for(lambda: wakeups_a.covered == {tables.outbox.name}, what="A finds the trigger")
        sent.clear()
        woken.clear()
        await publish(2)
        await publish(3)
        await wait_for(lambda: len(woken) >= 2, timeout=10, what="B hears both commits")
        assert sent == []
        # A trigger with another channel is not this table's wake-up: A sends the NOTIFY itself again
        # once its listener has looked again.
        async with db.engine.begin() as conn:
            await conn.exec_driver_sql(f"DROP TRIGGER icep_wakeup ON {tables.outbox.name}")
            await conn.exec_driver_sql(
                f"CREATE TRIGGER icep_wakeup AFTER INSERT ON {tables.outbox.name}"
                " FOR EACH STATEMENT EXECUTE FUNCTION icep_wakeup('icep_other_outbox')"
            )
        await wait_for(lambda: not wakeups_a.covered, what="A sees the trigger is not its own")
        woken.clear()
        await publish(4)
        await wait_for(lambda: woken, timeout=10, what="B hears the commit")
        assert len(sent) == 1
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await replica_a.dispose()
