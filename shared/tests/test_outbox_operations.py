"""Operators' outbox tools against a real broker and database: parking a row the broker refuses lets its
key's later rows go on, a retry publishes it, the status counts right and names the relay's leader, and the
operator routes answer problems for everyone else."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar

import httpx
import jwt
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from jwt.algorithms import ECAlgorithm

from icep.contracts import EventPayload, Releasability
from icep.platform import outbox_admin
from icep.platform.audit import AuditLog, AuditMiddleware
from icep.platform.auth import TokenVerifier
from icep.platform.db import Database
from icep.platform.errors import Conflict, NotFound
from icep.platform.events import OutgoingEvent, decode, utcnow
from icep.platform.outbox import UnitOfWorkFactory
from icep.platform.problems import install_problem_handlers
from icep.platform.relay import OutboxRelay
from icep.platform.tables import PlatformTables
from icep.platform.testing import read_records


class RowBumped(EventPayload):
    event_type: ClassVar[str] = "icep.test.outboxrow.bumped.v1"
    aggregate: ClassVar[str] = "outboxrow"

    n: int
    note: str = ""


def bump(key: str, n: int, note: str = "", owner: str = "DEU") -> OutgoingEvent:
    return OutgoingEvent(
        payload=RowBumped(n=n, note=note), subject=key, releasability=Releasability(owner=owner)
    )


async def rows_by_n(db: Database, tables: PlatformTables) -> dict[int, dict[str, Any]]:
    async with db.sessions() as s:
        rows = (await s.execute(sa.select(tables.outbox))).mappings().all()
    return {json.loads(r["data"])["n"]: dict(r) for r in rows}


async def small_producer(bootstrap: str) -> AIOKafkaProducer:
    """A producer that refuses records over 4 KiB: a row it cannot publish, for real."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", max_request_size=4096
    )
    await producer.start()
    return producer


async def test_a_parked_row_is_skipped_its_key_goes_on_and_a_retry_publishes_it(
    db: Database, tables: PlatformTables, topic: str, kafka_bootstrap: str
) -> None:
    uow = UnitOfWorkFactory(db, tables.outbox, "test", topic)
    async with uow() as tx:
        tx.publish(bump("blocked", 1, note="x" * 8000))
        tx.publish(bump("blocked", 2))
        tx.publish(bump("free", 3))
    producer = await small_producer(kafka_bootstrap)
    relay = OutboxRelay(
        db=db, outbox=tables.outbox, service="test", bootstrap=kafka_bootstrap, producer=producer
    )
    try:
        assert await relay.publish_once() is False  # a failure: back off
        rows = await rows_by_n(db, tables)
        big = rows[1]["id"]
        status = await outbox_admin.status(db, tables.outbox, "test")
        assert (status.backlog, status.parked) == (2, 0)
        assert [(r.id, r.attempts) for r in status.failing] == [(big, 1)]
        assert status.failing[0].last_error and "MessageSizeTooLarge" in status.failing[0].last_error
        assert status.oldest_unsent_at == rows[1]["created_at"].replace(tzinfo=status.oldest_unsent_at.tzinfo)

        # Still blocked on the next round; parked, the key's next row goes on.
        assert await relay.publish_once() is False
        assert (await rows_by_n(db, tables))[2]["sent_at"] is None
        parked = await outbox_admin.park(db, tables.outbox, big, "too large for the broker")
        assert parked.parked_at is not None and parked.parked_reason == "too large for the broker"
        assert await relay.publish_once() is False  # nothing failed, no full batch
        rows = await rows_by_n(db, tables)
        assert rows[2]["sent_at"] is not None and rows[1]["sent_at"] is None
        status = await outbox_admin.status(db, tables.outbox, "test")
        assert (status.backlog, status.parked, status.oldest_age_seconds) == (0, 1, 0.0)
        assert status.failing == [] and [r.id for r in status.parked_rows] == [big]
        assert await relay.publish_once() is False
        assert (await rows_by_n(db, tables))[1]["attempts"] == 2  # parked: not tried again
    finally:
        await producer.stop()

    # After the fix (a producer that takes it), a retry queues it afresh and the relay publishes it.
    retried = await outbox_admin.retry(db, tables.outbox, big)
    assert (retried.attempts, retried.last_error, retried.parked_at) == (0, None, None)
    relay = OutboxRelay(db=db, outbox=tables.outbox, service="test", bootstrap=kafka_bootstrap)
    try:
        assert await relay.publish_once() is False
    finally:
        if relay._producer is not None:
            await relay._producer.stop()
    assert (await rows_by_n(db, tables))[1]["sent_at"] is not None
    records = await read_records(kafka_bootstrap, topic, expect=3)
    assert [decode(r.key, r.value, r.headers).data["n"] for r in records] == [3, 2, 1]

    with pytest.raises(Conflict) as sent:
        await outbox_admin.park(db, tables.outbox, big, "too late")
    assert sent.value.extensions["current_state"] == "sent"
    with pytest.raises(NotFound):
        await outbox_admin.retry(db, tables.outbox, "no-such-row")


async def test_parked_rows_do_not_fill_a_batch(
    db: Database, tables: PlatformTables, topic: str, kafka_bootstrap: str
) -> None:
    """A full batch means "there may be more" only counting rows the relay may publish."""
    uow = UnitOfWorkFactory(db, tables.outbox, "test", topic)
    async with uow() as tx:
        for n in range(5):
            tx.publish(bump(f"k{n}", n))
    rows = await rows_by_n(db, tables)
    for n in (0, 1):
        await outbox_admin.park(db, tables.outbox, rows[n]["id"], "held back")
    relay = OutboxRelay(db=db, outbox=tables.outbox, service="test", bootstrap=kafka_bootstrap, batch_size=2)
    try:
        assert await relay.publish_once() is True  # k2, k3: a full batch
        assert await relay.publish_once() is False  # k4
        assert await relay.publish_once() is False  # nothing
    finally:
        if relay._producer is not None:
            await relay._producer.stop()
    rows = await rows_by_n(db, tables)
    assert [n for n, r in sorted(rows.items()) if r["sent_at"] is None] == [0, 1]
    unparked = await outbox_admin.unpark(db, tables.outbox, rows[0]["id"])
    assert unparked.parked_at is None
    assert (await outbox_admin.status(db, tables.outbox, "test")).backlog == 1


async def test_the_status_names_the_relays_leader(db: Database, tables: PlatformTables) -> None:
    relay = OutboxRelay(db=db, outbox=tables.outbox, service="test", bootstrap="unused:9")
    if not db.is_postgres:
        leader = await outbox_admin.leadership(db, "test")
        assert (leader.mode, leader.held) == ("single-process", None)
        return
    assert (await outbox_admin.leadership(db, "test")).held is False
    try:
        assert await relay.leadership.hold() == frozenset(range(relay.leadership.shards))
        leader = await outbox_admin.leadership(db, "test")
        assert (leader.mode, leader.held) == ("advisory-lock", True) and leader.holder_pid
        assert leader.shards_held == relay.leadership.shards and leader.holder_pids == [leader.holder_pid]
        assert (await outbox_admin.leadership(db, "other")).held is False  # another service's lock
    finally:
        await relay.leadership.release()
    assert (await outbox_admin.leadership(db, "test")).held is False


# --- the operator routes -------------------------------------------------------------------------------

ISSUER = "https://gateway.icep.test"


class Issuer:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())

    async def jwks(self) -> dict[str, Any]:
        return {"keys": [{**ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True), "kid": "k1"}]}

    def headers(self, client_id: str, nation: str, roles: list[str]) -> dict[str, str]:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": "icep",
            "sub": client_id,
            "nation": nation,
            "roles": roles,
            "scope": "read write",
            "iat": now,
            "exp": now + 300,
        }
        return {
            "Authorization": "Bearer "
            + jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": "k1"})
        }


@dataclass
class Api:
    client: httpx.AsyncClient
    issuer: Issuer
    woken: list[int]
    audit: AuditLog


@pytest.fixture
async def api(db: Database, tables: PlatformTables) -> AsyncIterator[Api]:
    """The routes as a service mounts them, on a real database, with its audit trail (the relay's wake-up
    is counted)."""
    issuer = Issuer()
    woken: list[int] = []
    log = AuditLog(db, tables.audit, "test")
    uow = UnitOfWorkFactory(db, tables.outbox, "test", "icep.test.events")
    uow.audit = log
    app = FastAPI()
    install_problem_handlers(app)
    app.add_middleware(AuditMiddleware)
    app.include_router(outbox_admin.operations_router("test"))
    app.state.runtime = SimpleNamespace(
        db=db,
        uow=uow,
        spec=SimpleNamespace(tables=tables),
        relay=None,
        parts={AuditLog: log},
        committed=lambda: woken.append(1),
    )
    app.state.token_verifier = TokenVerifier(ISSUER, "icep", "unused", jwks_source=issuer.jwks)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield Api(client, issuer, woken, log)


async def test_operator_routes(api: Api, db: Database, tables: PlatformTables) -> None:
    client, issuer, woken = api.client, api.issuer, api.woken
    uow = UnitOfWorkFactory(db, tables.outbox, "test", "icep.test.events")
    async with uow() as tx:
        tx.publish(bump("deu-key", 1))
        tx.publish(bump("pol-key", 2, owner="POL"))
    rows = await rows_by_n(db, tables)
    deu, pol = rows[1]["id"], rows[2]["id"]
    base = "/v1/operations/test/outbox"
    operator = issuer.headers("deu-operator", "DEU", ["operator"])
    nato = issuer.headers("nato-operator", "NATO", ["operator"])

    r = await client.get(base)
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    r = await client.get(base, headers=issuer.headers("deu-planner", "DEU", ["planner"]))
    assert r.status_code == 403 and r.json()["required_roles"] == ["operator"]
    r = await client.post(
        f"{base}/{deu}/park", json={"reason": "x"}, headers=issuer.headers("p", "DEU", ["planner"])
    )
    assert r.status_code == 403

    r = await client.get(base, headers=operator)
    assert r.status_code == 200
    status = r.json()
    assert (status["service"], status["backlog"], status["parked"]) == ("test", 2, 0)
    assert status["leader"]["this_replica_active"] is False

    r = await client.post(
        f"{base}/{deu}/park", json={"reason": "poison: the broker refuses it"}, headers=operator
    )
    assert r.status_code == 200 and r.json()["parked_reason"] == "poison: the broker refuses it"
    assert woken == [1]
    # Who parked it is in the audit trail, written with the change.
    async with db.sessions() as s:
        [entry] = (await s.execute(sa.select(tables.audit))).mappings().all()
    assert (entry["client_id"], entry["action"], entry["kind"], entry["outcome"]) == (
        "deu-operator",
        "parkTestOutboxRow",
        "change",
        "success",
    )
    assert (entry["resource_type"], entry["resource_id"], entry["owner_nation"]) == ("outbox_row", deu, "DEU")
    # Another nation's event is not the DEU operator's to see or touch; NATO's operators see all.
    r = await client.post(f"{base}/{pol}/park", json={"reason": "x"}, headers=operator)
    assert r.status_code == 404 and r.json()["type"].endswith("/not-found")
    await outbox_admin.park(db, tables.outbox, pol, "parked by the CLI")
    assert [row["id"] for row in (await client.get(base, headers=operator)).json()["parked_rows"]] == [deu]
    assert len((await client.get(base, headers=nato)).json()["parked_rows"]) == 2

    r = await client.post(f"{base}/no-such-row/retry", headers=operator)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    r = await client.post(f"{base}/{deu}/park", json={"reason": ""}, headers=operator)
    assert r.status_code == 422
    r = await client.post(f"{base}/{deu}/park", json={"reason": "x", "extra": 1}, headers=operator)
    assert r.status_code == 422

    r = await client.post(f"{base}/{deu}/unpark", headers=operator)
    assert r.status_code == 200 and r.json()["parked_at"] is None
    r = await client.post(f"{base}/{pol}/retry", headers=nato)
    assert r.status_code == 200 and r.json()["parked_at"] is None and r.json()["attempts"] == 0

    async with db.transaction() as s:
        await s.execute(sa.update(tables.outbox).where(tables.outbox.c.id == deu).values(sent_at=utcnow()))
    r = await client.post(f"{base}/{deu}/park", json={"reason": "late"}, headers=operator)
    assert r.status_code == 409 and r.json()["current_state"] == "sent"
    r = await client.post(f"{base}/{deu}/retry", headers=operator)
    assert r.status_code == 409


async def test_a_send_acknowledged_after_its_row_was_parked_marks_the_row_sent(
    db: Database, tables: PlatformTables, topic: str, kafka_bootstrap: str
) -> None:
    """A send timed out during an outage, the operator parked the row, then the broker acknowledged the
    send after all: the record is on Kafka, so the row is sent and unparked (a retry must not publish it
    a second time)."""
    uow = UnitOfWorkFactory(db, tables.outbox, "test", topic)
    async with uow() as tx:
        tx.publish(bump("late", 1))
    row_id = (await rows_by_n(db, tables))[1]["id"]
    await outbox_admin.park(db, tables.outbox, row_id, "the broker does not answer")
    relay = OutboxRelay(db=db, outbox=tables.outbox, service="test", bootstrap=kafka_bootstrap)
    acknowledged: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    acknowledged.set_result(None)
    relay._unacked[row_id] = acknowledged  # the earlier send, acknowledged since it timed out
    assert await relay.publish_once() is False
    row = (await rows_by_n(db, tables))[1]
    assert row["sent_at"] is not None and row["parked_at"] is None and row["parked_reason"] is None
    assert relay._unacked == {}
    with pytest.raises(Conflict):
        await outbox_admin.retry(db, tables.outbox, row_id)
