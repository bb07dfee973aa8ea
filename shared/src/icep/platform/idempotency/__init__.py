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

The package's modules: `keys` (the header and the request fingerprint), `store` (the `idempotency_keys`
table and the claim outcomes) and `middleware` (the ASGI middleware).
"""

from icep.platform.idempotency.keys import HEADER, REPLAYED_HEADER, InvalidKey, fingerprint, parse_key
from icep.platform.idempotency.middleware import (
    MAX_STORED_BODY,
    OUTCOMES,
    STORED_HEADERS,
    IdempotencyMiddleware,
    Wiring,
)
from icep.platform.idempotency.store import (
    COMMITTED,
    COMPLETED,
    MAX_CLIENT_ID,
    PROCESSING,
    Claim,
    Execute,
    IdempotencyStore,
    InUse,
    KeyLost,
    OutcomeUnknown,
    Replay,
    Reused,
    StoredAnswer,
    purge_expired_keys,
    stored_client_id,
)

__all__ = [
    "COMMITTED",
    "COMPLETED",
    "HEADER",
    "MAX_CLIENT_ID",
    "MAX_STORED_BODY",
    "OUTCOMES",
    "PROCESSING",
    "REPLAYED_HEADER",
    "STORED_HEADERS",
    "Claim",
    "Execute",
    "IdempotencyMiddleware",
    "IdempotencyStore",
    "InUse",
    "InvalidKey",
    "KeyLost",
    "OutcomeUnknown",
    "Replay",
    "Reused",
    "StoredAnswer",
    "Wiring",
    "fingerprint",
    "parse_key",
    "purge_expired_keys",
    "stored_client_id",
]
