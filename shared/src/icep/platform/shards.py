"""Work shared across replicas: a role's work (the outbox relay, the webhook dispatcher) cut into shards,
each held by one live replica through a PostgreSQL session advisory lock.

A row's shard is `(hashtext(<key>) & 2147483647) % shards`, computed by PostgreSQL in the relay's and the
dispatcher's WHERE clause (`shard_condition`): the outbox row's key (its aggregate) for the relay, the
subscription id for the dispatcher. One shard has one holder, so one key's rows, and one subscription's
deliveries, are worked on by one replica at a time and their order holds. The hash is computed in SQL
rather than stored in a column: no migration in every service, no insert-time cost, and the shard count can
change at any restart; the rows it is computed for are only the unsent/pending ones a round reads anyway.
(`hashtext` is PostgreSQL's own; every replica asks the same server, so all agree on it.)

Balancing: each replica takes one *membership* slot (an advisory lock `(<role>:members, slot)`), and the
live members are the granted slot locks in `pg_locks`. A replica of rank `r` among `n` members wants the
shards `i` with `i % n == r`; it releases the others and tries to take its own. A holder that dies ends its
database session, which frees its slot and its shards: the survivors count one member fewer at their next
rebalance (every `rebalance_seconds`) and take the freed shards. A shard whose previous holder has not let
go yet is simply tried again at the next rebalance. All of a role's locks live on one dedicated AUTOCOMMIT
connection (never idle in a transaction), as `LeaderLock` does.

SQLite is one process's file: that process holds every shard, and no condition is added to the queries.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from prometheus_client import Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from icep.platform.db import Database

log = logging.getLogger("icep.shards")

SHARDS_HELD = Gauge(
    "icep_shards_held",
    "Work shards of the role this process holds (all of them on SQLite)",
    ["service", "role"],
)

#: How many replicas of one role can be members at once (membership slots).
MEMBER_SLOTS = 64

_DATABASE = "(SELECT oid FROM pg_database WHERE datname = current_database())"


def lock_class(name: str) -> int:
    """A stable signed 32-bit key: the first half of a two-key advisory lock `(class, slot)`."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "big", signed=True)


def shard_expression(column: sa.ColumnElement[str], shards: int) -> sa.ColumnElement[int]:
    """The shard of a row, in SQL (PostgreSQL)."""
    return sa.func.hashtext(column).op("&")(2147483647).op("%")(shards)


def shard_condition(
    column: sa.ColumnElement[str], shards: int, held: frozenset[int]
) -> sa.ColumnElement[bool]:
    """The rows of the shards `held`; `true` when that is every shard (a lone replica)."""
    if len(held) >= shards:
        return sa.true()
    if not held:
        return sa.false()
    return shard_expression(column, shards).in_(sorted(held))


async def holders(db: Database, name: str) -> dict[int, int]:
    """Shard -> the database backend pid holding it, from `pg_locks` (PostgreSQL)."""
    async with db.reading() as conn:
        rows = await conn.execute(
            text(
                "SELECT objid::int, pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                f" AND objsubid = 2 AND classid::bigint = :k AND database = {_DATABASE}"
            ),
            {"k": lock_class(f"{name}:shards") & 0xFFFFFFFF},
        )
        return {int(shard): int(pid) for shard, pid in rows.all()}


class ShardLocks:
    """The shards of one role this replica holds; `hold()` keeps them balanced among live replicas."""

    def __init__(
        self,
        db: Database,
        name: str,
        *,
        shards: int,
        rebalance_seconds: float = 1.0,
        service: str = "",
        role: str = "",
    ) -> None:
        self.db = db
        self.name = name
        self.shards = shards
        self.rebalance_seconds = rebalance_seconds
        self.everything = frozenset(range(shards))
        self._members_key = lock_class(f"{name}:members")
        self._shards_key = lock_class(f"{name}:shards")
        self._conn: AsyncConnection | None = None
        self._slot: int | None = None
        self._due = 0.0
        self.held: frozenset[int] = frozenset()
        self.members = 0
        #: Set at the first `hold()` on PostgreSQL. Before it (a tool or a test calling a round directly)
        #: the queries are not narrowed to shards at all, as with a single process.
        self.sharing = False
        self._labels = (service or name, role or name)

    def condition(self, column: sa.ColumnElement[str]) -> sa.ColumnElement[bool]:
        """The WHERE condition keeping a query to the shards held (`true` for all of them)."""
        if not self.sharing:
            return sa.true()
        return shard_condition(column, self.shards, self.held)

    async def hold(
        self, before_release: Callable[[], Awaitable[None]] | None = None, *, force: bool = False
    ) -> frozenset[int]:
        """The shards held now, rebalanced when due. `before_release` runs before any shard is let go
        (a dispatcher stops what it is sending for them, so no other replica sends it at the same time)."""
        if not self.db.is_postgres:
            self._set(self.everything)
            return self.held
        self.sharing = True
        now = asyncio.get_running_loop().time()
        if self._conn is not None and now < self._due and not force:
            return self.held
        self._due = now + self.rebalance_seconds
        try:
            await self._rebalance(before_release)
        except Exception:
            log.warning("lost the %s shard locks; taking them again", self.name, exc_info=True)
            if before_release is not None and self.held:
                await before_release()
            await self._drop()
            raise
        return self.held

    async def _connection(self) -> AsyncConnection:
        if self._conn is None:
            conn = await self.db.engine.connect()
            try:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text("SET statement_timeout = '10s'"))
            except Exception:
                await conn.invalidate()
                await conn.close()
                raise
            self._conn = conn
        return self._conn

    async def _members(self, conn: AsyncConnection) -> list[int]:
        rows = await conn.execute(
            text(
                "SELECT objid::int FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2"
                f" AND classid::bigint = :k AND database = {_DATABASE} ORDER BY 1"
            ),
            {"k": self._members_key & 0xFFFFFFFF},
        )
        return [int(slot) for (slot,) in rows.all()]

    async def _rebalance(self, before_release: Callable[[], Awaitable[None]] | None) -> None:
        conn = await self._connection()
        members = await self._members(conn)
        if self._slot is None:
            for slot in (s for s in range(MEMBER_SLOTS) if s not in members):
                took = (
                    await conn.execute(
                        text("SELECT pg_try_advisory_lock(:k, :slot)"), {"k": self._members_key, "slot": slot}
                    )
                ).scalar()
                if took:
                    self._slot = slot
                    log.info("%s: member slot %d", self.name, slot)
                    break
            if self._slot is None:
                return  # every slot taken: stand by
            members = await self._members(conn)
        if self._slot not in members:
            raise ConnectionError("the membership lock is gone")
        self.members = len(members)
        rank = members.index(self._slot)
        wanted = frozenset(s for s in range(self.shards) if s % len(members) == rank)
        surplus = self.held - wanted
        if surplus:
            if before_release is not None:
                await before_release()
            await conn.execute(
                text("SELECT pg_advisory_unlock(:k, s) FROM unnest(CAST(:shards AS int[])) AS s"),
                {"k": self._shards_key, "shards": sorted(surplus)},
            )
        missing = wanted - self.held
        taken: set[int] = set()
        if missing:
            rows = await conn.execute(
                text("SELECT s FROM unnest(CAST(:shards AS int[])) AS s WHERE pg_try_advisory_lock(:k, s)"),
                {"k": self._shards_key, "shards": sorted(missing)},
            )
            taken = {int(s) for (s,) in rows.all()}
        else:
            await conn.execute(text("SELECT 1"))  # the session (and so every lock) is still there
        before = self.held
        self._set((self.held - surplus) | taken)
        if self.held != before:
            log.info(
                "%s: holding %d of %d shards (%d members, rank %d)",
                self.name,
                len(self.held),
                self.shards,
                len(members),
                rank,
            )
        if len(self.held) < len(wanted):
            self._due = 0.0  # a previous holder has not let go yet: try again next round

    def _set(self, held: frozenset[int]) -> None:
        self.held = held
        SHARDS_HELD.labels(*self._labels).set(len(held))

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._slot = None
        self._set(frozenset())
        if conn is not None:
            try:
                await conn.invalidate()
                await conn.close()
            except Exception:
                log.debug("closing the %s lock connection failed", self.name, exc_info=True)

    async def release(self) -> None:
        """Let go of every shard and the membership: ending the lock session frees them all at once."""
        await self._drop()
