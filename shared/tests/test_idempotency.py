"""Idempotency-Key: the key's rules, the store on a real database, and the middleware in front of an app.

The end-to-end behaviour through the gateway, per service, is in tests/e2e/test_idempotency.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI, Response
from hypothesis import given
from hypothesis import strategies as st

from icep.platform.auth import TokenVerifier
from icep.platform.db import Database
from icep.platform.events import utcnow
from icep.platform.idempotency import (
    MAX_STORED_BODY,
    Execute,
    IdempotencyMiddleware,
    IdempotencyStore,
    InUse,
    InvalidKey,
    Replay,
    Reused,
    StoredAnswer,
    Wiring,
    fingerprint,
    parse_key,
)
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


@pytest.fixture
def store(db: Database, tables: PlatformTables) -> IdempotencyStore:
    return IdempotencyStore(db, tables.idempotency, ttl=timedelta(hours=1), lock=timedelta(seconds=30))


ANSWER = StoredAnswer(201, [("content-type", "application/json"), ("location", "/v1/x/1")], b'{"id":"1"}')


async def test_a_key_runs_once_then_replays_its_answer(store: IdempotencyStore) -> None:
    assert await store.claim("client-a", "k1", "fp") == Execute()
    assert isinstance(await store.claim("client-a", "k1", "fp"), InUse)
    await store.complete("client-a", "k1", "fp", ANSWER)
    assert await store.claim("client-a", "k1", "fp") == Replay(ANSWER)
    assert await store.claim("client-a", "k1", "other") == Reused()


async def test_keys_are_the_callers_own(store: IdempotencyStore) -> None:
    assert await store.claim("client-a", "shared", "fp-a") == Execute()
    assert await store.claim("client-b", "shared", "fp-b") == Execute()


async def test_a_released_key_runs_again(store: IdempotencyStore) -> None:
    assert await store.claim("client-a", "k2", "fp") == Execute()
    await store.release("client-a", "k2", "fp")
    assert await store.claim("client-a", "k2", "fp") == Execute()


async def test_an_abandoned_key_is_taken_over_after_the_lock_time(store: IdempotencyStore) -> None:
    now = utcnow()
    assert await store.claim("client-a", "k3", "fp", now=now) == Execute()
    in_use = await store.claim("client-a", "k3", "fp", now=now + timedelta(seconds=29))
    assert isinstance(in_use, InUse) and 1 <= in_use.retry_after <= 5
    assert await store.claim("client-a", "k3", "fp", now=now + timedelta(seconds=31)) == Execute(
        taken_over=True
    )
    # The one that took it over holds it now.
    assert isinstance(await store.claim("client-a", "k3", "fp", now=now + timedelta(seconds=32)), InUse)


async def test_an_expired_key_is_a_new_key_and_is_purged(
    store: IdempotencyStore, db: Database, tables: PlatformTables
) -> None:
    now = utcnow()
    assert await store.claim("client-a", "old", "fp", now=now) == Execute()
    await store.complete("client-a", "old", "fp", ANSWER)
    assert await store.claim("client-a", "kept", "fp", now=now) == Execute()
    later = now + timedelta(hours=1, seconds=1)
    # Expired: even another request may use the key now, and it runs.
    assert await store.claim("client-a", "old", "other-fp", now=later) == Execute()
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


class Things:
    """A tiny service: POST /things creates a thing; what ran is counted."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.failures_left = 0
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    def app(self, store: IdempotencyStore, keys: Keys) -> FastAPI:
        app = FastAPI()
        install_problem_handlers(app)

        async def source() -> dict[str, Any]:
            return keys.jwks

        verifier = TokenVerifier(ISSUER, AUDIENCE, "https://issuer.test/jwks", jwks_source=source)
        app.add_middleware(IdempotencyMiddleware, wiring=lambda scope: Wiring(store, verifier, "test"))

        @app.post("/things", status_code=201)
        async def create(body: dict[str, Any], response: Response) -> dict[str, Any]:
            self.entered.set()
            if self.gate is not None:
                await self.gate.wait()
            if self.failures_left:
                self.failures_left -= 1
                raise RuntimeError("the database went away")
            thing = {"id": str(len(self.created) + 1), **body}
            self.created.append(thing)
            response.headers["Location"] = f"/things/{thing['id']}"
            response.headers["ETag"] = '"1"'
            response.headers["X-Request-Id"] = f"req-{len(self.created)}"
            return thing

        @app.post("/big")
        async def big() -> Response:
            return Response(b"x" * (MAX_STORED_BODY + 1), media_type="application/octet-stream")

        return app


@pytest.fixture
async def things(store: IdempotencyStore) -> AsyncIterator[tuple[Things, Keys, httpx.AsyncClient]]:
    things, keys = Things(), Keys()
    transport = httpx.ASGITransport(app=things.app(store, keys), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as client:
        yield things, keys, client


def _as(keys: Keys, client_id: str, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {keys.token(client_id)}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


async def test_a_retry_gets_the_first_answer_and_nothing_runs_twice(
    things: tuple[Things, Keys, httpx.AsyncClient],
) -> None:
    app, keys, client = things
    first = await client.post("/things", json={"name": "a"}, headers=_as(keys, "c1", "key-1"))
    again = await client.post("/things", json={"name": "a"}, headers=_as(keys, "c1", "key-1"))
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() == {"id": "1", "name": "a"}
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert again.headers["location"] == first.headers["location"] and again.headers["etag"] == '"1"'
    assert "x-request-id" not in again.headers  # one exchange's own headers are not replayed
    assert len(app.created) == 1


async def test_another_body_with_the_key_is_422_and_another_client_has_its_own_keys(
    things: tuple[Things, Keys, httpx.AsyncClient],
) -> None:
    app, keys, client = things
    assert (await client.post("/things", json={"n": 1}, headers=_as(keys, "c1", "k"))).status_code == 201
    reused = await client.post("/things", json={"n": 2}, headers=_as(keys, "c1", "k"))
    assert reused.status_code == 422
    assert reused.headers["content-type"] == "application/problem+json"
    assert reused.json()["type"].endswith("/idempotency-key-reused")
    other = await client.post("/things", json={"n": 2}, headers=_as(keys, "c2", "k"))
    assert other.status_code == 201 and "idempotent-replayed" not in other.headers
    assert [t["n"] for t in app.created] == [1, 2]


async def test_without_a_key_or_a_valid_token_requests_pass_through(
    things: tuple[Things, Keys, httpx.AsyncClient],
) -> None:
    app, keys, client = things
    for _ in range(2):
        assert (await client.post("/things", json={}, headers=_as(keys, "c1"))).status_code == 201
    bad = {"Authorization": "Bearer not-a-token", "Idempotency-Key": "k"}
    for _ in range(2):
        assert (await client.post("/things", json={}, headers=bad)).status_code == 201
    assert len(app.created) == 4


async def test_a_malformed_key_is_400(things: tuple[Things, Keys, httpx.AsyncClient]) -> None:
    app, keys, client = things
    r = await client.post("/things", json={}, headers=_as(keys, "c1", "has space"))
    assert r.status_code == 400 and r.json()["type"].endswith("/invalid-idempotency-key")
    assert app.created == []


async def test_a_failure_releases_the_key_so_a_retry_runs(
    things: tuple[Things, Keys, httpx.AsyncClient],
) -> None:
    app, keys, client = things
    app.failures_left = 1
    failed = await client.post("/things", json={"n": 1}, headers=_as(keys, "c1", "k"))
    assert failed.status_code == 500
    retried = await client.post("/things", json={"n": 1}, headers=_as(keys, "c1", "k"))
    assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers
    assert len(app.created) == 1


async def test_a_4xx_answer_is_kept_too(things: tuple[Things, Keys, httpx.AsyncClient]) -> None:
    _, keys, client = things
    headers = {**_as(keys, "c1", "k"), "Content-Type": "application/json"}
    first = await client.post("/things", content=b"{not json", headers=headers)
    again = await client.post("/things", content=b"{not json", headers=headers)
    assert first.status_code == again.status_code == 422
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"


async def test_the_same_key_while_the_first_runs_is_409_with_retry_after(
    things: tuple[Things, Keys, httpx.AsyncClient],
) -> None:
    app, keys, client = things
    app.gate = asyncio.Event()
    first = asyncio.create_task(client.post("/things", json={"n": 1}, headers=_as(keys, "c1", "k")))
    await asyncio.wait_for(app.entered.wait(), 10)
    busy = await client.post("/things", json={"n": 1}, headers=_as(keys, "c1", "k"))
    assert busy.status_code == 409 and busy.json()["type"].endswith("/idempotency-key-in-use")
    assert 1 <= int(busy.headers["retry-after"]) <= 5
    app.gate.set()
    assert (await first).status_code == 201
    replay = await client.post("/things", json={"n": 1}, headers=_as(keys, "c1", "k"))
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    assert len(app.created) == 1


async def test_an_answer_too_long_to_keep_replays_its_status_without_body(
    things: tuple[Things, Keys, httpx.AsyncClient],
) -> None:
    _, keys, client = things
    first = await client.post("/big", headers=_as(keys, "c1", "k"))
    assert first.status_code == 200 and len(first.content) == MAX_STORED_BODY + 1
    again = await client.post("/big", headers=_as(keys, "c1", "k"))
    assert again.status_code == 200 and again.content == b""
    assert again.headers["idempotent-replayed"] == "true"
