"""The `idempotency_keys` table: claiming a key (or learning what the request gets instead), marking it
committed in the use case's transaction, storing the answer, releasing the key, sealing the stored
answers and purging expired keys.

The claim outcomes (`Execute`, `Replay`, `Reused`, `InUse`, `OutcomeUnknown`) are what the middleware
acts on; `KeyLost` fails a use case's commit when its request no longer holds its key.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from icep.platform import outbox
from icep.platform.db import Database, insert_ignore
from icep.platform.errors import Conflict
from icep.platform.events import as_utc, utcnow
from icep.platform.secrets import SecretBox

log = logging.getLogger("icep.idempotency")


#: The `client_id` column's length; a longer client id is stored as `sha256:<hex>` of it.
MAX_CLIENT_ID = 200


PROCESSING = "processing"


COMMITTED = "committed"


COMPLETED = "completed"


@dataclass(frozen=True)
class StoredAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes | None


@dataclass(frozen=True)
class Execute:
    """The key is this request's now: run it. `token` tells this hold of the key from any later one (it
    is the row's `locked_until` as this claim set it): only the holder may commit, store or release."""

    token: datetime
    taken_over: bool = False


@dataclass(frozen=True)
class Replay:
    answer: StoredAnswer


@dataclass(frozen=True)
class Reused:
    """The key belongs to another request."""


@dataclass(frozen=True)
class InUse:
    retry_after: int


@dataclass(frozen=True)
class OutcomeUnknown:
    """The key's request committed its effect, but its answer was not stored: it must not run again."""


Claim = Execute | Replay | Reused | InUse | OutcomeUnknown


class KeyLost(Conflict):
    """Raised in a use case's commit when its request no longer holds its key (it ran past the lock time
    and a retry took the key over, or the key expired): the use case rolls back, so only one commits."""

    slug = "idempotency-key-in-use"

    def __init__(self) -> None:
        super().__init__(
            "another request with this Idempotency-Key took the key over while this one ran; "
            "this one changed nothing"
        )


def stored_client_id(client_id: str) -> str:
    """The client id as the `client_id` column keeps it: itself, or `sha256:<hex>` when it is longer than
    the column (an external issuer's ids may be). A digest is as unique as the id, and stable."""
    if len(client_id) <= MAX_CLIENT_ID:
        return client_id
    return "sha256:" + hashlib.sha256(client_id.encode("utf-8")).hexdigest()


class IdempotencyStore:
    """The `idempotency_keys` table: claim a key, mark it committed, store its answer, or release it."""

    def __init__(
        self, db: Database, table: sa.Table, ttl: timedelta, lock: timedelta, box: SecretBox | None = None
    ) -> None:
        self.db = db
        self.table = table
        self.ttl = ttl
        self.lock = lock
        #: Seals stored answers at rest (one may show a webhook secret); None: kept as they are (tests).
        self.box = box

    def _seal(self, body: bytes | None) -> bytes | None:
        return body if body is None or self.box is None else self.box.seal_bytes(body)

    def _open(self, stored: bytes | None) -> bytes | None:
        return stored if stored is None or self.box is None else self.box.open_bytes(bytes(stored))

    def _where(self, client_id: str, key: str) -> sa.ColumnElement[bool]:
        return sa.and_(self.table.c.client_id == stored_client_id(client_id), self.table.c.key == key)

    def _held(self, client_id: str, key: str, fp: str, token: datetime) -> sa.ColumnElement[bool]:
        return sa.and_(
            self._where(client_id, key),
            self.table.c.fingerprint == fp,
            self.table.c.locked_until == token,
        )

    async def claim(self, client_id: str, key: str, fp: str, now: datetime | None = None) -> Claim:
        """In one short transaction of its own: take a new (or expired, or abandoned uncommitted) key, or
        say what the request gets instead. Concurrent claims of one key serialise on its row: one runs."""
        now = now or utcnow()
        token = now + self.lock
        fresh: dict[str, Any] = {
            "fingerprint": fp,
            "state": PROCESSING,
            "status": None,
            "headers": None,
            "body": None,
            "created_at": now,
            "expires_at": now + self.ttl,
            "locked_until": token,
        }
        row_key = {"client_id": stored_client_id(client_id), "key": key}
        async with self.db.transaction() as session:
            if await insert_ignore(session, self.table, {**row_key, **fresh}):
                return Execute(token)
            row = (
                await session.execute(
                    sa.select(self.table).where(self._where(client_id, key)).with_for_update()
                )
            ).one_or_none()
            if row is None:  # purged between the two statements
                await session.execute(sa.insert(self.table).values(**row_key, **fresh))
                return Execute(token)
            if as_utc(row.expires_at) <= now:
                # An expired key is a new key, whatever it named before.
                await session.execute(
                    sa.update(self.table).where(self._where(client_id, key)).values(**fresh)
                )
                return Execute(token)
            if row.fingerprint != fp:
                return Reused()
            if row.state == COMPLETED:
                headers = [(str(k), str(v)) for k, v in (row.headers or [])]
                return Replay(StoredAnswer(int(row.status), headers, self._open(row.body)))
            locked_until = as_utc(row.locked_until) if row.locked_until is not None else None
            if locked_until is not None and locked_until > now:
                return InUse(retry_after=max(1, min(5, math.ceil((locked_until - now).total_seconds()))))
            if row.state == COMMITTED:
                # Its effect is in; its answer never came. Never run it again: that would be a second effect.
                return OutcomeUnknown()
            # The request that held the key has neither committed nor finished within the lock time:
            # presumed crashed before its commit, so it had no effect. If it is merely slow, its commit now
            # fails (`KeyLost`), because the key's token is this request's.
            await session.execute(
                sa.update(self.table).where(self._where(client_id, key)).values(locked_until=token)
            )
            return Execute(token, taken_over=True)

    async def mark_committed(
        self, session: AsyncSession, client_id: str, key: str, fp: str, token: datetime
    ) -> None:
        """In the use case's own transaction, just before it commits: the key is spent with its effect.
        Fails (`KeyLost`, rolling the use case back) when the key is no longer this request's."""
        result = await session.execute(
            sa.update(self.table)
            .where(
                self._held(client_id, key, fp, token),
                self.table.c.state.in_((PROCESSING, COMMITTED)),
            )
            .values(state=COMMITTED)
        )
        if not getattr(result, "rowcount", 0):
            raise KeyLost()

    async def complete(
        self,
        client_id: str,
        key: str,
        fp: str,
        token: datetime,
        answer: StoredAnswer,
        *,
        uncommitted: bool = False,
    ) -> bool:
        """Keep the answer for the key's retries, if the key is still this request's and its transaction
        committed (or, with `uncommitted`, also if it committed nothing); True when it was kept."""
        states = (COMMITTED, PROCESSING) if uncommitted else (COMMITTED,)
        async with self.db.transaction() as session:
            result = await session.execute(
                sa.update(self.table)
                .where(self._held(client_id, key, fp, token), self.table.c.state.in_(states))
                .values(
                    state=COMPLETED,
                    status=answer.status,
                    headers=[list(h) for h in answer.headers],
                    body=self._seal(answer.body),
                    locked_until=None,
                )
            )
        return bool(getattr(result, "rowcount", 0))

    async def release(self, client_id: str, key: str, fp: str, token: datetime) -> None:
        """The request ends without a stored answer. If it never committed, the key is given up (it had no
        effect, so a retry may run). If it committed, the key stays spent, and is unlocked at once so a
        retry learns that right away (409 `idempotency-outcome-unknown`)."""
        async with self.db.transaction() as session:
            held = self._held(client_id, key, fp, token)
            await session.execute(sa.delete(self.table).where(held, self.table.c.state == PROCESSING))
            await session.execute(
                sa.update(self.table).where(held, self.table.c.state == COMMITTED).values(locked_until=None)
            )

    async def reseal(self, batch: int = 200) -> int:
        """Seal stored answers kept in plaintext (before sealing) or under an older key with the current
        key; how many changed. A row that changed meanwhile is left as it is now."""
        box = self.box
        if box is None:
            return 0
        async with self.db.sessions() as session:
            rows = (
                await session.execute(
                    sa.select(self.table.c.client_id, self.table.c.key, self.table.c.body).where(
                        self.table.c.body.is_not(None)
                    )
                )
            ).all()
        stale = [r for r in rows if not box.is_current_bytes(bytes(r.body))]
        for start in range(0, len(stale), batch):
            async with self.db.transaction() as session:
                for r in stale[start : start + batch]:
                    await session.execute(
                        sa.update(self.table)
                        .where(
                            self.table.c.client_id == r.client_id,
                            self.table.c.key == r.key,
                            self.table.c.body == r.body,
                        )
                        .values(body=box.seal_bytes(box.open_bytes(bytes(r.body))))
                    )
        return len(stale)

    async def purge(self, now: datetime | None = None) -> int:
        """Delete expired keys; how many went."""
        async with self.db.transaction() as session:
            result = await session.execute(
                sa.delete(self.table).where(self.table.c.expires_at <= (now or utcnow()))
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def complete_in(
        self, session: AsyncSession, client_id: str, key: str, fp: str, token: datetime, answer: StoredAnswer
    ) -> bool:
        """Keep the answer in the use case's own transaction, still open (`outbox.DeferredCommit`): the
        answer commits with the effect, or neither does. True when the key was this request's."""
        result = await session.execute(
            sa.update(self.table)
            .where(self._held(client_id, key, fp, token), self.table.c.state == COMMITTED)
            .values(
                state=COMPLETED,
                status=answer.status,
                headers=[list(h) for h in answer.headers],
                body=self._seal(answer.body),
                locked_until=None,
            )
        )
        return bool(getattr(result, "rowcount", 0))

    @asynccontextmanager
    async def holding(
        self,
        client_id: str,
        key: str,
        fp: str,
        token: datetime,
        deferral: outbox.DeferredCommit | None = None,
    ) -> AsyncIterator[None]:
        """While inside: every unit of work this task (and what it starts) commits marks the key
        `committed` in its own transaction, and with `deferral` the last one is left open for the answer.
        Leaving ends that, also for tasks that outlive the request."""
        hold = _Hold(self, client_id, key, fp, token)
        reset = outbox.before_commit.set(hold)
        reset_deferral = outbox.deferred_commit.set(deferral)
        try:
            yield
        finally:
            hold.active = False
            if deferral is not None:
                deferral.active = False
            outbox.deferred_commit.reset(reset_deferral)
            outbox.before_commit.reset(reset)


@dataclass
class _Hold:
    store: IdempotencyStore
    client_id: str
    key: str
    fp: str
    token: datetime
    active: bool = field(default=True)

    async def __call__(self, session: AsyncSession) -> None:
        if self.active:
            await self.store.mark_committed(session, self.client_id, self.key, self.fp, self.token)


async def purge_expired_keys(store: IdempotencyStore, every_seconds: float) -> None:
    """A background loop: expired keys are already ignored; this keeps the table small. It first seals the
    stored answers that are not under the current key (after a key rotation, or kept before sealing)."""
    try:
        resealed = await store.reseal()
        if resealed:
            log.info("sealed %d stored answers with the current secret key", resealed)
    except Exception:
        log.exception("could not reseal stored answers; they stay readable, and are resealed at next start")
    while True:
        purged = await store.purge()
        if purged:
            log.info("purged %d expired idempotency keys", purged)
        await asyncio.sleep(every_seconds)
