"""`Idempotency-Key` on every POST: a retry gets the first answer, and the effect happens at most once.

A partner that sends `POST` with `Idempotency-Key: <key>` and does not hear back can send the same request
again with the same key: the service answers with what it answered the first time (marked
`Idempotent-Replayed: true`) instead of creating a second plan, signal or subscription. The key is the
caller's (scoped by the token's client id), lives in the service's own database (`idempotency_keys`) and
expires after `ICEP_IDEMPOTENCY_TTL_SECONDS` (default 24 h); after that the same key is a new request.

The key and the answer are bound to the use case's transaction. A key row is `processing` while its
request runs; the request's unit of work (`icep.platform.outbox.UnitOfWorkFactory`) marks it `committed` in
the same transaction that writes the use case's rows and events (hook `outbox.before_commit`, set here for
the request), and does not commit when the use case's block ends: the transaction stays open
(`outbox.DeferredCommit`) until the route has made its answer, which is written into it (`completed`, with
status, the headers a replay repeats such as `Location`, and body); then it commits, and only then is the
answer sent. So "the effect happened", "the key is spent" and "the answer is kept" commit together or not
at all:

- A key whose request committed never runs again (until it expires), whatever happens afterwards, and a
  retry gets the first answer (same id, same `Location`), also when the process died right after the
  commit. Only where the answer could not be kept with the effect is a retry 409
  `idempotency-outcome-unknown` (the first request was carried out but its answer is lost; read the
  resource): the answer was over `MAX_STORED_BODY`, or a request committed more than one unit of work
  (each but the last commits on its own) and died before the last. (While that request may still be
  finishing, i.e. within `ICEP_IDEMPOTENCY_LOCK_SECONDS` of its start, a retry is 409
  `idempotency-key-in-use` instead.)
- A request that fails with a 5xx after its use case ran rolls the use case back: no effect, key released.
- A key whose request never committed (it was refused, failed, rolled back, or crashed before its commit)
  had no effect, so running it again is safe: a non-2xx answer releases the key (a 400/401/403/404/412/
  415/422/428/429 is not replayed for 24 h after the client fixed the request, as with Stripe), and a key
  left `processing` by a crash is taken over by the next request with it after the lock time. A 2xx of a
  route that commits nothing (a read-only POST) is stored like any answer.
- A request that held its key longer than the lock time and lost it to a retry cannot commit any more:
  its unit of work fails (409 `idempotency-key-in-use`) and rolls back, so the two never both commit.
- The same key with another request (method, path, query, content type or body differ) is 422
  (`idempotency-key-reused`): a key names one request, not a slot. A key released after a refusal is
  free again, so a corrected request may reuse it.
- Without a valid bearer token the request passes through untouched (the route answers 401), and a service
  without a database (the gateway) has no keys: its one POST, `/oauth/token`, issues a fresh token each time.
- Client ids longer than the column (an external issuer's) are stored as `sha256:<hex>` of the id.

A POST that writes outside `uow()` (directly through `Database.transaction()`) is not bound to its key:
every POST of the services writes through a unit of work.

This is one ASGI middleware that `service_app` installs for every service with a database, so no route
has to remember it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from icep.platform import faults, outbox
from icep.platform.db import Database, insert_ignore
from icep.platform.errors import Conflict, DomainError
from icep.platform.events import as_utc, utcnow
from icep.platform.problems import problem
from icep.platform.secrets import SecretBox

if TYPE_CHECKING:
    from icep.platform.auth import TokenVerifier

log = logging.getLogger("icep.idempotency")

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
#: Visible ASCII only, 1 to 255 characters (a UUID is the usual choice).
_KEY = re.compile(r"[\x21-\x7e]{1,255}", re.ASCII)
#: Response headers a replay repeats; others (dates, trace and request ids, cookies) belong to one exchange.
STORED_HEADERS = frozenset(
    {"content-type", "content-language", "content-location", "etag", "last-modified", "link", "location"}
)
#: Answers longer than this are not kept. A replay without its body would break the answer's schema, so
#: a committed request whose answer is longer stays `committed` without an answer (a retry is 409
#: `idempotency-outcome-unknown`), and an uncommitted one releases its key (a retry runs again). Every
#: answer of the services is far below it; only a partner's huge request echoed back could reach it.
MAX_STORED_BODY = 1024 * 1024
#: The `client_id` column's length; a longer client id is stored as `sha256:<hex>` of it.
MAX_CLIENT_ID = 200

PROCESSING = "processing"
COMMITTED = "committed"
COMPLETED = "completed"

OUTCOMES = Counter(
    "icep_idempotency_requests",
    "POST requests with an Idempotency-Key, by outcome "
    "(executed, replayed, reused, in_use, unknown, invalid)",
    ["service", "outcome"],
)


class InvalidKey(ValueError):
    """An `Idempotency-Key` header that is not one key of visible ASCII, 1 to 255 characters."""


def parse_key(values: Sequence[bytes]) -> str:
    """The key of the request's `Idempotency-Key` header(s).

    The header may carry the key bare (`abc-123`) or as a structured-field string (`"abc-123"`, as the
    IETF draft writes it); both name the same key."""
    if len(values) != 1:
        raise InvalidKey("send exactly one Idempotency-Key header")
    raw = values[0].decode("latin-1").strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        raw = raw[1:-1]
    if not _KEY.fullmatch(raw):
        raise InvalidKey("an Idempotency-Key is 1 to 255 visible ASCII characters (a UUID, for example)")
    return raw


def fingerprint(method: str, path: str, query: bytes, content_type: str, body: bytes) -> str:
    """What makes two requests "the same request": a digest of method, path, query, content type and
    body. Each part is length-prefixed, so no two different requests run together into one string."""
    digest = hashlib.sha256()
    for part in (
        method.upper().encode(),
        path.encode(),
        query,
        content_type.strip().lower().encode("latin-1"),
        hashlib.sha256(body).digest(),
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


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


@dataclass(frozen=True)
class Wiring:
    """What the middleware needs of the running service (resolved per request: the app starts later)."""

    store: IdempotencyStore
    verifier: TokenVerifier
    service: str


def _wiring_of_app(scope: Scope) -> Wiring | None:
    app = scope.get("app")
    state = getattr(app, "state", None)
    runtime = getattr(state, "runtime", None)
    store = getattr(runtime, "idempotency", None)
    verifier = getattr(state, "token_verifier", None)
    if runtime is None or store is None or verifier is None:
        return None
    return Wiring(store, verifier, runtime.settings.service_name)


def _header(scope: Scope, name: bytes) -> list[bytes]:
    return [v for k, v in scope["headers"] if k.lower() == name]


def _bearer(scope: Scope) -> str | None:
    values = _header(scope, b"authorization")
    if len(values) != 1:
        return None
    scheme, _, token = values[0].decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, wiring: Callable[[Scope], Wiring | None] = _wiring_of_app) -> None:
        self.app = app
        self.wiring = wiring

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        keys = _header(scope, HEADER.lower().encode())
        wiring = self.wiring(scope) if keys else None
        client_id = await self._caller(wiring, scope) if wiring is not None else None
        if wiring is None or client_id is None:
            # No key, no keys kept here, or no valid token (the route answers that with 401).
            await self.app(scope, receive, send)
            return
        instance = scope.get("path", "")
        try:
            key = parse_key(keys)
        except InvalidKey as exc:
            OUTCOMES.labels(wiring.service, "invalid").inc()
            await problem(400, str(exc), slug="invalid-idempotency-key", instance=instance)(
                scope, receive, send
            )
            return

        body = await _read_body(receive)
        if body is None:
            return  # the client went away before it finished sending
        content_type = b"".join(_header(scope, b"content-type")).decode("latin-1")
        fp = fingerprint(scope["method"], scope["path"], scope.get("query_string", b""), content_type, body)
        store = wiring.store
        try:
            claim = await store.claim(client_id, key, fp)
        except Exception:
            log.exception("cannot claim idempotency key on %s", instance)
            await problem(
                503,
                "idempotency keys cannot be checked right now; retry with the same key",
                slug="idempotency-unavailable",
                instance=instance,
                headers={"Retry-After": "1"},
            )(scope, receive, send)
            return

        if isinstance(claim, Replay):
            OUTCOMES.labels(wiring.service, "replayed").inc()
            await _send_answer(send, claim.answer, replayed=True)
            return
        if isinstance(claim, Reused):
            OUTCOMES.labels(wiring.service, "reused").inc()
            await problem(
                422,
                "this Idempotency-Key was used for another request (method, path, query or body differ); "
                "use a new key for a new request",
                slug="idempotency-key-reused",
                instance=instance,
            )(scope, receive, send)
            return
        if isinstance(claim, InUse):
            OUTCOMES.labels(wiring.service, "in_use").inc()
            await problem(
                409,
                "a request with this Idempotency-Key is still being processed; retry shortly",
                slug="idempotency-key-in-use",
                instance=instance,
                headers={"Retry-After": str(claim.retry_after)},
            )(scope, receive, send)
            return
        if isinstance(claim, OutcomeUnknown):
            OUTCOMES.labels(wiring.service, "unknown").inc()
            await problem(
                409,
                "the first request with this Idempotency-Key was carried out, but its answer was lost; "
                "it will not be carried out again: read the resource to see the outcome",
                title="Outcome of the first request unknown",
                slug="idempotency-outcome-unknown",
                instance=instance,
            )(scope, receive, send)
            return
        if claim.taken_over:
            log.warning(
                "took over idempotency key of %s on %s: its first request neither committed nor finished",
                client_id,
                instance,
            )
        OUTCOMES.labels(wiring.service, "executed").inc()
        await self._execute(scope, send, body, _Held(store, client_id, key, fp, claim.token), receive)

    async def _caller(self, wiring: Wiring, scope: Scope) -> str | None:
        token = _bearer(scope)
        if token is None:
            return None
        try:
            principal = await wiring.verifier.verify(token)
        except DomainError:
            return None
        return principal.client_id

    async def _execute(self, scope: Scope, send: Send, body: bytes, held: _Held, receive: Receive) -> None:
        delivered = False

        async def replay_body() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the client to disconnect

        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        store = held.store
        deferral = outbox.DeferredCommit()
        try:
            # Every unit of work the request commits marks the key `committed` in its own transaction; the
            # last one stays open until the answer is written into it (`_finish`).
            async with store.holding(held.client_id, held.key, held.fp, held.token, deferral):
                await self.app(scope, replay_body, capture)
        except Exception:
            await _quietly(deferral.abandon(), "roll back the request of")
            await _quietly(held.release(), "release")
            raise
        if start is None:
            await _quietly(deferral.abandon(), "roll back the request of")
            await _quietly(held.release(), "release")
            return
        content = b"".join(chunks)
        status = int(start["status"])
        raw_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start.get("headers", [])]
        stored = StoredAnswer(
            status, [(k.lower(), v) for k, v in raw_headers if k.lower() in STORED_HEADERS], content
        )
        if len(content) > MAX_STORED_BODY:
            log.warning("answer to %s is %d bytes: not kept for replays", scope["path"], len(content))
        if deferral.pending is not None:
            if not await self._finish(scope, send, held, deferral, stored):
                return
            kept = status < 500 and len(content) <= MAX_STORED_BODY
        elif status < 500 and len(content) <= MAX_STORED_BODY:
            # Nothing left open: the request committed nothing (kept if a 2xx: a read-only POST), or an
            # earlier unit of work of it committed on its own.
            kept = await _quietly(
                store.complete(
                    held.client_id, held.key, held.fp, held.token, stored, uncommitted=200 <= status < 300
                ),
                "store the answer of",
                failed=True,
            )
        else:
            kept = False
        if not kept:
            # Uncommitted: no effect, so the key is free again. Committed: a retry learns the outcome is lost.
            await _quietly(held.release(), "release")
        await send({**start, "headers": start.get("headers", [])})
        await send({"type": "http.response.body", "body": content, "more_body": False})

    async def _finish(
        self, scope: Scope, send: Send, held: _Held, deferral: outbox.DeferredCommit, answer: StoredAnswer
    ) -> bool:
        """The request's last unit of work is still open: write the answer into it and commit both, or roll
        the effect back (a 5xx, or a failure to store the answer). False when the caller got a problem
        instead of the route's answer."""
        pending = deferral.pending
        assert pending is not None
        if answer.status >= 500:
            # The request failed after its change: undo the change rather than keep an effect nobody heard of.
            await _quietly(deferral.abandon(), "roll back the request of")
            return True
        try:
            if len(answer.body or b"") <= MAX_STORED_BODY and not await held.store.complete_in(
                pending.session, held.client_id, held.key, held.fp, held.token, answer
            ):
                raise KeyLost()
            await deferral.settle()
        except Exception:
            log.exception("could not commit the change and answer of %s", scope["path"])
            await _quietly(deferral.abandon(), "roll back the request of")
            await _quietly(held.release(), "release")
            await problem(
                503,
                "the change could not be committed, so nothing changed; retry with the same Idempotency-Key",
                slug="commit-failed",
                instance=scope.get("path", ""),
                headers={"Retry-After": "1"},
            )(scope, _no_body, send)
            return False
        faults.point("idempotency.after_commit")
        return True


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


@dataclass(frozen=True)
class _Held:
    """The key a request holds while it runs."""

    store: IdempotencyStore
    client_id: str
    key: str
    fp: str
    token: datetime

    async def release(self) -> None:
        await self.store.release(self.client_id, self.key, self.fp, self.token)


async def _quietly(work: Awaitable[Any], what: str, failed: Any = None) -> Any:
    # The answer still goes to the client. A key left `processing` frees itself after the lock time; one
    # left `committed` answers 409 outcome-unknown after it.
    try:
        return await work
    except Exception:
        log.exception("could not %s an idempotency key", what)
        return failed


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_answer(send: Send, answer: StoredAnswer, *, replayed: bool) -> None:
    body = answer.body or b""
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
    headers.append((b"content-length", str(len(body)).encode()))
    if replayed:
        headers.append((REPLAYED_HEADER.lower().encode(), b"true"))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


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
