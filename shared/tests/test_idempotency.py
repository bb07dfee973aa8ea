"""Idempotency-Key: the key's rules, the store on a real database, the key bound to the use case's
transaction (a real unit of work), and the middleware in front of an app.

The end-to-end behaviour through the gateway, per service, is in tests/e2e/test_idempotency.py.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI, Header, Response
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from icep.platform.auth import TokenVerifier
from icep.platform.db import Database
from icep.platform.errors import Conflict, PreconditionRequired
from icep.platform.events import utcnow
from icep.platform.idempotency import (
    COMMITTED,
    MAX_STORED_BODY,
    PROCESSING,
    Claim,
    Execute,
    IdempotencyMiddleware,
    IdempotencyStore,
    InUse,
    InvalidKey,
    KeyLost,
    OutcomeUnknown,
    Replay,
    Reused,
    StoredAnswer,
    Wiring,
    fingerprint,
    parse_key,
    stored_client_id,
)
from icep.platform.outbox import UnitOfWorkFactory
from icep.platform.problems import install_problem_handlers
from icep.platform.tables import PlatformTables

# --- the key and the fingerprint ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "key"),
    [
        (b"3f2b9c1e-6b1a-4f7e-9d3c-2a1b0c9d8e7f", "3f2b9c1e-6b1a-4f7e-9d3c-2a1b0c9d8e7f"),
        (b'"abc-123"', "abc-123"),  # the structured-field string form of the IETF draft
        (b"  padded  ", "padded"),
        (b"x", "x"),
        (b"~" * 255, "~" * 255),
    ],
)
def test_keys_that_are_accepted(header: bytes, key: str) -> None:
    assert parse_key([header]) == key


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [b"a", b"b"],
        [b""],
        [b'""'],
        [b"a" * 256],
        [b"with space"],
        [b"caf\xe9"],
        [b"tab\there"],
    ],
)
def test_keys_that_are_refused(headers: list[bytes]) -> None:
    with pytest.raises(InvalidKey):
        parse_key(headers)


@given(
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=255).filter(
        lambda k: not (len(k) >= 2 and k[0] == k[-1] == '"')
    )
)
def test_any_visible_ascii_key_up_to_255_is_a_key(key: str) -> None:
    assert parse_key([key.encode()]) == key


def test_the_fingerprint_tells_every_part_of_a_request_apart() -> None:
    base = ("POST", "/v1/plans", b"", "application/json", b'{"a":1}')
    same = fingerprint(*base)
    assert fingerprint(*base) == same
    assert fingerprint("post", "/v1/plans", b"", "Application/JSON ", b'{"a":1}') == same
    others = [
        ("PUT", "/v1/plans", b"", "application/json", b'{"a":1}'),
        ("POST", "/v1/plans/x", b"", "application/json", b'{"a":1}'),
        ("POST", "/v1/plans", b"dry=1", "application/json", b'{"a":1}'),
        ("POST", "/v1/plans", b"", "text/plain", b'{"a":1}'),
        ("POST", "/v1/plans", b"", "application/json", b'{"a":2}'),
        # Parts do not run together: moving bytes from the path into the query changes the digest.
        ("POST", "/v1/plan", b"s", "application/json", b'{"a":1}'),
    ]
    assert len({fingerprint(*o) for o in others} | {same}) == len(others) + 1


# --- the store, on the configured database --------------------------------------------------------------

LOCK = timedelta(seconds=30)


@pytest.fixture
def store(db: Database, tables: PlatformTables) -> IdempotencyStore:
    return IdempotencyStore(db, tables.idempotency, ttl=timedelta(hours=1), lock=LOCK)


@pytest.fixture
def uow(db: Database, tables: PlatformTables) -> UnitOfWorkFactory:
    return UnitOfWorkFactory(db, tables.outbox, "test", "icep.test.events")


ANSWER = StoredAnswer(201, [("content-type", "application/json"), ("location", "/v1/x/1")], b'{"id":"1"}')


def executed(claim: Claim) -> Execute:
    assert isinstance(claim, Execute), claim
    return claim


async def count_effects(db: Database, effects: sa.Table) -> int:
    async with db.sessions() as session:
        return int((await session.execute(sa.select(sa.func.count()).select_from(effects))).scalar_one())


async def state_of(db: Database, table: sa.Table, client_id: str, key: str) -> str | None:
    async with db.sessions() as session:
        state = (
            await session.execute(
                sa.select(table.c.state).where(
                    table.c.client_id == stored_client_id(client_id), table.c.key == key
                )
            )
        ).scalar_one_or_none()
    return None if state is None else str(state)


async def use_case(uow: UnitOfWorkFactory, effects: sa.Table, value: str, *, fail: bool = False) -> None:
    """A use case: writes one row in its unit of work (and rolls it back when it fails)."""
    async with uow() as tx:
        await tx.session.execute(sa.insert(effects).values(event_id=str(uuid.uuid4()), value=value))
        if fail:
            raise Conflict("the use case refused after writing")


async def test_a_key_runs_once_then_replays_its_answer(store: IdempotencyStore) -> None:
    run = executed(await store.claim("client-a", "k1", "fp"))
    assert not run.taken_over
    assert isinstance(await store.claim("client-a", "k1", "fp"), InUse)
    assert await store.complete("client-a", "k1", "fp", run.token, ANSWER, uncommitted=True)
    assert await store.claim("client-a", "k1", "fp") == Replay(ANSWER)
    assert await store.claim("client-a", "k1", "other") == Reused()


async def test_keys_are_the_callers_own(store: IdempotencyStore) -> None:
    executed(await store.claim("client-a", "shared", "fp-a"))
    executed(await store.claim("client-b", "shared", "fp-b"))


async def test_a_released_key_runs_again(store: IdempotencyStore) -> None:
    run = executed(await store.claim("client-a", "k2", "fp"))
    await store.release("client-a", "k2", "fp", run.token)
    executed(await store.claim("client-a", "k2", "fp"))


async def test_an_abandoned_uncommitted_key_is_taken_over_after_the_lock_time(
    store: IdempotencyStore,
) -> None:
    now = utcnow()
    executed(await store.claim("client-a", "k3", "fp", now=now))
    in_use = await store.claim("client-a", "k3", "fp", now=now + timedelta(seconds=29))
    assert isinstance(in_use, InUse) and 1 <= in_use.retry_after <= 5
    assert executed(await store.claim("client-a", "k3", "fp", now=now + timedelta(seconds=31))).taken_over
    # The one that took it over holds it now.
    assert isinstance(await store.claim("client-a", "k3", "fp", now=now + timedelta(seconds=32)), InUse)


async def test_an_expired_key_is_a_new_key_and_is_purged(
    store: IdempotencyStore, db: Database, tables: PlatformTables
) -> None:
    now = utcnow()
    run = executed(await store.claim("client-a", "old", "fp", now=now))
    assert await store.complete("client-a", "old", "fp", run.token, ANSWER, uncommitted=True)
    executed(await store.claim("client-a", "kept", "fp", now=now))
    later = now + timedelta(hours=1, seconds=1)
    # Expired: even another request may use the key now, and it runs.
    executed(await store.claim("client-a", "old", "other-fp", now=later))
    assert await store.purge(now=later + timedelta(hours=1, seconds=1)) == 2
    async with db.sessions() as session:
        left = (
            await session.execute(sa.select(sa.func.count()).select_from(tables.idempotency))
        ).scalar_one()
    assert left == 0


async def test_concurrent_claims_of_one_key_let_exactly_one_run(store: IdempotencyStore) -> None:
    claims = await asyncio.gather(*(store.claim("client-a", "race", "fp") for _ in range(8)))
    assert sum(isinstance(c, Execute) for c in claims) == 1
    assert all(isinstance(c, Execute | InUse) for c in claims)


# --- the key and the use case's transaction ------------------------------------------------------------


async def test_a_use_case_that_committed_never_runs_again_even_if_its_answer_was_lost(
    store: IdempotencyStore,
    uow: UnitOfWorkFactory,
    db: Database,
    tables: PlatformTables,
    effects_table: sa.Table,
) -> None:
    now = utcnow()
    run = executed(await store.claim("client-a", "crash", "fp", now=now))
    async with store.holding("client-a", "crash", "fp", run.token):
        await use_case(uow, effects_table, "once")
    # ... and here the process "crashes": `complete` never runs.
    assert await state_of(db, tables.idempotency, "client-a", "crash") == COMMITTED
    # While the first request might still be finishing, a retry is asked to wait ...
    assert isinstance(await store.claim("client-a", "crash", "fp", now=now + timedelta(seconds=1)), InUse)
    # ... and after the lock time it is told the outcome is unknown, never taken over: not after the lock
    # time, not later, not while the key lives.
    for later in (LOCK + timedelta(seconds=1), LOCK * 10, timedelta(minutes=59)):
        assert await store.claim("client-a", "crash", "fp", now=now + later) == OutcomeUnknown()
    assert await state_of(db, tables.idempotency, "client-a", "crash") == COMMITTED
    assert await count_effects(db, effects_table) == 1


async def test_a_committed_key_that_is_released_is_unknown_at_once_and_keeps_no_answer_of_a_4xx_before(
    store: IdempotencyStore, uow: UnitOfWorkFactory, effects_table: sa.Table
) -> None:
    # A failure after the commit (a 5xx, an answer too long to keep): `release` keeps the key spent.
    run = executed(await store.claim("client-a", "k", "fp"))
    async with store.holding("client-a", "k", "fp", run.token):
        await use_case(uow, effects_table, "once")
    await store.release("client-a", "k", "fp", run.token)
    assert await store.claim("client-a", "k", "fp") == OutcomeUnknown()
    # Without a commit a refusal's answer is not kept (it had no effect): only a 2xx may be.
    other = executed(await store.claim("client-a", "refused", "fp"))
    refusal = StoredAnswer(428, [("content-type", "application/problem+json")], b"{}")
    assert not await store.complete("client-a", "refused", "fp", other.token, refusal)


async def test_a_rolled_back_use_case_leaves_its_key_free_to_run(
    store: IdempotencyStore,
    uow: UnitOfWorkFactory,
    db: Database,
    tables: PlatformTables,
    effects_table: sa.Table,
) -> None:
    now = utcnow()
    first = executed(await store.claim("client-a", "rb", "fp", now=now))
    async with store.holding("client-a", "rb", "fp", first.token):
        with pytest.raises(Conflict):
            await use_case(uow, effects_table, "rolled back", fail=True)
    assert await state_of(db, tables.idempotency, "client-a", "rb") == PROCESSING
    assert await count_effects(db, effects_table) == 0
    # It crashed before answering: after the lock time a retry takes the key over, and runs.
    retry = executed(await store.claim("client-a", "rb", "fp", now=now + LOCK + timedelta(seconds=1)))
    assert retry.taken_over
    async with store.holding("client-a", "rb", "fp", retry.token):
        await use_case(uow, effects_table, "ran")
    assert await state_of(db, tables.idempotency, "client-a", "rb") == COMMITTED
    assert await count_effects(db, effects_table) == 1

    # Rolled back and released (the middleware's way after a refusal): a retry runs at once.
    again = executed(await store.claim("client-a", "rb2", "fp"))
    async with store.holding("client-a", "rb2", "fp", again.token):
        with pytest.raises(Conflict):
            await use_case(uow, effects_table, "rolled back", fail=True)
    await store.release("client-a", "rb2", "fp", again.token)
    assert not executed(await store.claim("client-a", "rb2", "fp")).taken_over


async def test_a_request_that_lost_its_key_to_a_retry_cannot_commit(
    store: IdempotencyStore,
    uow: UnitOfWorkFactory,
    db: Database,
    tables: PlatformTables,
    effects_table: sa.Table,
) -> None:
    # The first request ran past its lock time; a retry took the key over.
    slow = executed(await store.claim("client-a", "slow", "fp", now=utcnow() - LOCK - timedelta(seconds=1)))
    retry = executed(await store.claim("client-a", "slow", "fp"))
    assert retry.taken_over
    async with store.holding("client-a", "slow", "fp", slow.token):
        with pytest.raises(KeyLost):
            await use_case(uow, effects_table, "second effect")
    assert await count_effects(db, effects_table) == 0
    async with store.holding("client-a", "slow", "fp", retry.token):
        await use_case(uow, effects_table, "the one effect")
        await use_case(uow, effects_table, "a second transaction of the same request")
    assert await state_of(db, tables.idempotency, "client-a", "slow") == COMMITTED
    assert await count_effects(db, effects_table) == 2
    # The slow one's end changes nothing: its answer is not stored, its release frees nothing.
    assert not await store.complete("client-a", "slow", "fp", slow.token, ANSWER, uncommitted=True)
    await store.release("client-a", "slow", "fp", slow.token)
    assert await store.complete("client-a", "slow", "fp", retry.token, ANSWER)
    assert await store.claim("client-a", "slow", "fp") == Replay(ANSWER)


async def test_only_the_requests_own_units_of_work_spend_its_key(
    store: IdempotencyStore,
    uow: UnitOfWorkFactory,
    db: Database,
    tables: PlatformTables,
    effects_table: sa.Table,
) -> None:
    run = executed(await store.claim("client-a", "own", "fp"))
    go = asyncio.Event()

    async def outlives_the_request() -> None:
        await go.wait()
        await use_case(uow, effects_table, "a task started by the request, committing after it")

    async with store.holding("client-a", "own", "fp", run.token):
        late = asyncio.create_task(outlives_the_request())
        # A consumer's joined unit of work in a transaction of its own does not touch the key.
        async with db.transaction() as session:
            joined = uow.joined(session)
            await session.execute(sa.insert(effects_table).values(event_id=str(uuid.uuid4()), value="j"))
            await joined.flush()
        assert await state_of(db, tables.idempotency, "client-a", "own") == PROCESSING
    go.set()
    await late
    await use_case(uow, effects_table, "after the request")
    assert await state_of(db, tables.idempotency, "client-a", "own") == PROCESSING
    assert await count_effects(db, effects_table) == 3


async def test_a_client_id_longer_than_the_column_works(
    store: IdempotencyStore,
    uow: UnitOfWorkFactory,
    db: Database,
    tables: PlatformTables,
    effects_table: sa.Table,
) -> None:
    long_a, long_b = "a" * 299 + "1", "a" * 299 + "2"  # alike for 299 characters
    assert stored_client_id(long_a).startswith("sha256:") and len(stored_client_id(long_a)) <= 200
    assert stored_client_id("short-id") == "short-id"
    run = executed(await store.claim(long_a, "k", "fp"))
    async with store.holding(long_a, "k", "fp", run.token):
        await use_case(uow, effects_table, "long")
    assert await store.complete(long_a, "k", "fp", run.token, ANSWER)
    assert await store.claim(long_a, "k", "fp") == Replay(ANSWER)
    executed(await store.claim(long_b, "k", "fp"))  # another client, its own keys
    async with db.sessions() as session:
        ids = (await session.execute(sa.select(tables.idempotency.c.client_id))).scalars().all()
    assert sorted(ids) == sorted([stored_client_id(long_a), stored_client_id(long_b)])


# --- the middleware in front of an app ------------------------------------------------------------------

ISSUER, AUDIENCE = "https://issuer.test", "icep"


class Keys:
    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        public = jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        self.jwks = {"keys": [{**public, "kid": "k1", "alg": "ES256", "use": "sig"}]}

    def token(self, client_id: str) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": client_id,
            "iat": now,
            "exp": now + 300,
            "nation": "DEU",
            "roles": ["planner"],
        }
        return jwt.encode(claims, self.private, algorithm="ES256", headers={"kid": "k1"})


class Thing(BaseModel):
    name: str


class Things:
    """A tiny service: POST /things creates a thing in a unit of work (a row in `effects`)."""

    def __init__(self, uow: UnitOfWorkFactory, effects: sa.Table) -> None:
        self.uow = uow
        self.effects = effects
        self.created: list[dict[str, Any]] = []
        self.failures_left = 0
        self.fail_after_commit = False
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def commit(self, name: str) -> dict[str, Any]:
        async with self.uow() as tx:
            await tx.session.execute(sa.insert(self.effects).values(event_id=str(uuid.uuid4()), value=name))
            if self.failures_left:
                self.failures_left -= 1
                raise RuntimeError("the database went away")
        thing = {"id": str(len(self.created) + 1), "name": name}
        self.created.append(thing)
        return thing

    def app(self, store: IdempotencyStore, keys: Keys) -> FastAPI:
        app = FastAPI()
        install_problem_handlers(app)

        async def source() -> dict[str, Any]:
            return keys.jwks

        verifier = TokenVerifier(ISSUER, AUDIENCE, "https://issuer.test/jwks", jwks_source=source)
        app.add_middleware(IdempotencyMiddleware, wiring=lambda scope: Wiring(store, verifier, "test"))

        @app.post("/things", status_code=201)
        async def create(body: Thing, response: Response) -> dict[str, Any]:
            self.entered.set()
            if self.gate is not None:
                await self.gate.wait()
            thing = await self.commit(body.name)
            if self.fail_after_commit:
                raise RuntimeError("the answer could not be made")
            response.headers["Location"] = f"/things/{thing['id']}"
            response.headers["ETag"] = '"1"'
            response.headers["X-Request-Id"] = f"req-{len(self.created)}"
            return thing

        @app.post("/things/{thing_id}/rename")
        async def rename(thing_id: str, body: Thing, if_match: str | None = Header(None)) -> dict[str, Any]:
            if if_match is None:
                raise PreconditionRequired("send If-Match")
            return await self.commit(body.name)

        @app.post("/things/refused-after-commit")
        async def refused_after_commit(body: Thing) -> dict[str, Any]:
            await self.commit(body.name)
            raise Conflict("committed, then refused")

        @app.post("/echo")
        async def echo(body: Thing) -> dict[str, Any]:
            self.created.append({"echo": body.name})
            return {"echo": body.name}

        @app.post("/big")
        async def big(commit: bool = True) -> Response:
            if commit:
                await self.commit("big")
            else:
                self.created.append({"big": "read"})
            return Response(b"x" * (MAX_STORED_BODY + 1), media_type="application/octet-stream")

        return app


@pytest.fixture
async def things(
    store: IdempotencyStore, uow: UnitOfWorkFactory, effects_table: sa.Table
) -> AsyncIterator[tuple[Things, Keys, httpx.AsyncClient]]:
    things, keys = Things(uow, effects_table), Keys()
    transport = httpx.ASGITransport(app=things.app(store, keys), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as client:
        yield things, keys, client


def _as(keys: Keys, client_id: str, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {keys.token(client_id)}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def _problem(r: httpx.Response, status: int, slug: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/" + slug)


async def test_a_retry_gets_the_first_answer_and_nothing_runs_twice(
    things: tuple[Things, Keys, httpx.AsyncClient], db: Database, effects_table: sa.Table
) -> None:
    app, keys, client = things
    first = await client.post("/things", json={"name": "a"}, headers=_as(keys, "c1", "key-1"))
    again = await client.post("/things", json={"name": "a"}, headers=_as(keys, "c1", "key-1"))
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() == {"id": "1", "name": "a"}
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert again.headers["location"] == first.headers["location"] and again.headers["etag"] == '"1"'
    assert "x-request-id" not in again.headers  # one exchange's own headers are not replayed
    assert len(app.created) == 1 and await count_effects(db, effects_table) == 1


async def test_another_body_with_the_key_is_422_and_another_client_has_its_own_keys(
    things: tuple[Things, Keys, httpx.AsyncClient],
) -> None:
    app, keys, client = things
    assert (await client.post("/things", json={"name": "1"}, headers=_as(keys, "c1", "k"))).status_code == 201
    reused = await client.post("/things", json={"name": "2"}, headers=_as(keys, "c1", "k"))
    _problem(reused, 422, "idempotency-key-reused")
    other = await client.post("/things", json={"name": "2"}, headers=_as(keys, "c2", "k"))
    assert other.status_code == 201 and "idempotent-replayed" not in other.headers
    assert [t["name"] for t in app.created] == ["1", "2"]


async def test_without_a_key_or_a_valid_token_requests_pass_through(
    things: tuple[Things, Keys, httpx.AsyncClient],
) -> None:
    app, keys, client = things
    for _ in range(2):
        assert (await client.post("/things", json={"name": "n"}, headers=_as(keys, "c1"))).status_code == 201
    bad = {"Authorization": "Bearer not-a-token", "Idempotency-Key": "k"}
    for _ in range(2):
        assert (await client.post("/things", json={"name": "n"}, headers=bad)).status_code == 201
    assert len(app.created) == 4


async def test_a_malformed_key_is_400(things: tuple[Things, Keys, httpx.AsyncClient]) -> None:
    app, keys, client = things
    r = await client.post("/things", json={"name": "n"}, headers=_as(keys, "c1", "has space"))
    _problem(r, 400, "invalid-idempotency-key")
    assert app.created == []


async def test_a_failure_before_the_commit_releases_the_key_so_a_retry_runs(
    things: tuple[Things, Keys, httpx.AsyncClient], db: Database, effects_table: sa.Table
) -> None:
    app, keys, client = things
    app.failures_left = 1
    failed = await client.post("/things", json={"name": "1"}, headers=_as(keys, "c1", "k"))
    assert failed.status_code == 500
    assert await count_effects(db, effects_table) == 0  # rolled back
    retried = await client.post("/things", json={"name": "1"}, headers=_as(keys, "c1", "k"))
    assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers
    assert len(app.created) == 1 and await count_effects(db, effects_table) == 1


async def test_a_5xx_after_the_use_case_rolls_its_change_back_so_a_retry_runs(
    things: tuple[Things, Keys, httpx.AsyncClient], db: Database, effects_table: sa.Table
) -> None:
    """The use case's transaction is still open while the answer is made: a request that fails with a 5xx
    after its use case leaves no effect and no spent key, so the retry runs (once)."""
    app, keys, client = things
    app.fail_after_commit = True
    failed = await client.post("/things", json={"name": "1"}, headers=_as(keys, "c1", "k"))
    assert failed.status_code == 500
    assert await count_effects(db, effects_table) == 0
    app.fail_after_commit = False
    retried = await client.post("/things", json={"name": "1"}, headers=_as(keys, "c1", "k"))
    assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers
    again = await client.post("/things", json={"name": "1"}, headers=_as(keys, "c1", "k"))
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == retried.headers["location"]
    assert await count_effects(db, effects_table) == 1


async def test_an_answer_lost_after_the_commit_is_replayed_with_its_location(
    store: IdempotencyStore, uow: UnitOfWorkFactory, effects_table: sa.Table, db: Database
) -> None:
    """The answer is written in the use case's own transaction: when the answer never reaches the caller
    (the connection, or the process, dies right after the commit), the retry gets it, never
    `idempotency-outcome-unknown`."""
    things, keys = Things(uow, effects_table), Keys()
    app = things.app(store, keys)
    headers = {**_as(keys, "c1", "lost"), "Content-Type": "application/json"}
    body = b'{"name":"lost"}'
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/things",
        "raw_path": b"/things",
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "server": ("service.test", 80),
        "client": ("127.0.0.1", 1234),
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def connection_gone(message: Any) -> None:
        raise OSError("connection reset by peer")

    with pytest.raises(OSError):
        await app(scope, receive, connection_gone)
    assert await state_of(db, store.table, "c1", "lost") == "completed"
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as client:
        retried = await client.post("/things", content=body, headers=headers)
    assert retried.status_code == 201 and retried.headers["idempotent-replayed"] == "true"
    assert retried.headers["location"] == "/things/1" and retried.json() == {"id": "1", "name": "lost"}
    assert len(things.created) == 1 and await count_effects(db, effects_table) == 1


async def test_a_crash_after_the_commit_leaves_a_key_that_never_runs_again(
    things: tuple[Things, Keys, httpx.AsyncClient],
    store: IdempotencyStore,
    uow: UnitOfWorkFactory,
    db: Database,
    effects_table: sa.Table,
) -> None:
    """The first request ran (through the middleware's own pieces) and committed; the process died before
    it stored the answer. The retry, through the middleware, does not run the use case again."""
    app, keys, client = things
    body = b'{"name":"crash"}'
    fp = fingerprint("POST", "/things", b"", "application/json", body)
    headers = {**_as(keys, "c1", "crash"), "Content-Type": "application/json"}
    for key, started in (("fresh", utcnow()), ("crash", utcnow() - LOCK - timedelta(seconds=1))):
        run = executed(await store.claim("c1", key, fp, now=started))
        async with store.holding("c1", key, fp, run.token):
            await use_case(uow, effects_table, "crash")
    # Within the lock time: it may still be finishing, retry shortly.
    busy = await client.post("/things", content=body, headers={**headers, "Idempotency-Key": "fresh"})
    _problem(busy, 409, "idempotency-key-in-use")
    # After it: the answer is lost, and the use case is not run again.
    unknown = await client.post("/things", content=body, headers=headers)
    _problem(unknown, 409, "idempotency-outcome-unknown")
    assert app.created == [] and await count_effects(db, effects_table) == 2


async def test_a_refused_request_is_not_kept_so_the_fixed_request_runs(
    things: tuple[Things, Keys, httpx.AsyncClient], db: Database, effects_table: sa.Table
) -> None:
    app, keys, client = things
    headers = _as(keys, "c1", "k")
    # 428: no If-Match. The same request with it and the same key runs.
    refused = await client.post("/things/1/rename", json={"name": "r"}, headers=headers)
    _problem(refused, 428, "precondition-required")
    ran = await client.post("/things/1/rename", json={"name": "r"}, headers={**headers, "If-Match": '"1"'})
    assert ran.status_code == 200 and "idempotent-replayed" not in ran.headers
    # 422: invalid body. The corrected body with the same key runs (the refusal did not spend the key).
    headers = {**_as(keys, "c1", "k2"), "Content-Type": "application/json"}
    invalid = await client.post("/things", content=b"{not json", headers=headers)
    _problem(invalid, 422, "validation")
    fixed = await client.post("/things", content=b'{"name":"fixed"}', headers=headers)
    assert fixed.status_code == 201 and "idempotent-replayed" not in fixed.headers
    assert [t["name"] for t in app.created] == ["r", "fixed"] and await count_effects(db, effects_table) == 2
    # Once it ran, the key is spent: its answer is replayed, another body is 422.
    again = await client.post("/things", content=b'{"name":"fixed"}', headers=headers)
    assert again.headers["idempotent-replayed"] == "true" and again.json() == fixed.json()
    _problem(
        await client.post("/things", content=b'{"name":"x"}', headers=headers), 422, "idempotency-key-reused"
    )


async def test_a_4xx_after_the_commit_is_kept(
    things: tuple[Things, Keys, httpx.AsyncClient], db: Database, effects_table: sa.Table
) -> None:
    _, keys, client = things
    headers = _as(keys, "c1", "k")
    first = await client.post("/things/refused-after-commit", json={"name": "c"}, headers=headers)
    again = await client.post("/things/refused-after-commit", json={"name": "c"}, headers=headers)
    _problem(first, 409, "conflict")
    assert again.status_code == 409 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert await count_effects(db, effects_table) == 1


async def test_a_2xx_of_a_route_that_commits_nothing_is_kept(
    things: tuple[Things, Keys, httpx.AsyncClient],
) -> None:
    app, keys, client = things
    first = await client.post("/echo", json={"name": "e"}, headers=_as(keys, "c1", "k"))
    again = await client.post("/echo", json={"name": "e"}, headers=_as(keys, "c1", "k"))
    assert first.status_code == again.status_code == 200 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert app.created == [{"echo": "e"}]


async def test_the_same_key_while_the_first_runs_is_409_with_retry_after(
    things: tuple[Things, Keys, httpx.AsyncClient],
) -> None:
    app, keys, client = things
    app.gate = asyncio.Event()
    first = asyncio.create_task(client.post("/things", json={"name": "1"}, headers=_as(keys, "c1", "k")))
    await asyncio.wait_for(app.entered.wait(), 10)
    busy = await client.post("/things", json={"name": "1"}, headers=_as(keys, "c1", "k"))
    _problem(busy, 409, "idempotency-key-in-use")
    assert 1 <= int(busy.headers["retry-after"]) <= 5
    app.gate.set()
    assert (await first).status_code == 201
    replay = await client.post("/things", json={"name": "1"}, headers=_as(keys, "c1", "k"))
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    assert len(app.created) == 1


async def test_an_answer_too_long_to_keep_is_never_replayed_without_its_body(
    things: tuple[Things, Keys, httpx.AsyncClient], db: Database, effects_table: sa.Table
) -> None:
    app, keys, client = things
    # Committed: the key is spent, and a retry learns that the answer is lost.
    first = await client.post("/big", headers=_as(keys, "c1", "k"))
    assert first.status_code == 200 and len(first.content) == MAX_STORED_BODY + 1
    _problem(await client.post("/big", headers=_as(keys, "c1", "k")), 409, "idempotency-outcome-unknown")
    assert await count_effects(db, effects_table) == 1
    # Nothing committed: the key is released, and a retry runs again (and gets the whole answer).
    for _ in range(2):
        read = await client.post("/big", params={"commit": "false"}, headers=_as(keys, "c1", "k2"))
        assert read.status_code == 200 and len(read.content) == MAX_STORED_BODY + 1
        assert "idempotent-replayed" not in read.headers
    assert app.created.count({"big": "read"}) == 2
