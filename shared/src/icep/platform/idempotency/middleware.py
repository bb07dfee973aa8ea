"""The ASGI middleware every service with a database installs: for a POST with an `Idempotency-Key`
and a valid bearer token it claims the key, replays a stored answer or refuses with a problem, or runs
the request with the key held and keeps its answer in the use case's transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from icep.platform import faults, outbox
from icep.platform.errors import DomainError
from icep.platform.idempotency.keys import HEADER, REPLAYED_HEADER, InvalidKey, fingerprint, parse_key
from icep.platform.idempotency.store import (
    IdempotencyStore,
    InUse,
    KeyLost,
    OutcomeUnknown,
    Replay,
    Reused,
    StoredAnswer,
)
from icep.platform.problems import problem

if TYPE_CHECKING:
    from icep.platform.auth import TokenVerifier

log = logging.getLogger("icep.idempotency")


#: Response headers a replay repeats; others (dates, trace and request ids, cookies) belong to one exchange.
STORED_HEADERS = frozenset(
    {"content-type", "content-language", "content-location", "etag", "last-modified", "link", "location"}
)


#: Answers longer than this are not kept. A replay without its body would break the answer's schema, so
#: a committed request whose answer is longer stays `committed` without an answer (a retry is 409
#: `idempotency-outcome-unknown`), and an uncommitted one releases its key (a retry runs again). Every
#: answer of the services is far below it; only a partner's huge request echoed back could reach it.
MAX_STORED_BODY = 1024 * 1024


OUTCOMES = Counter(
    "icep_idempotency_requests",
    "POST requests with an Idempotency-Key, by outcome "
    "(executed, replayed, reused, in_use, unknown, invalid)",
    ["service", "outcome"],
)


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
