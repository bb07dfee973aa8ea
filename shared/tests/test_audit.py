"""The audit trail's recorder and query rule, on a real database behind a real ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Any, ClassVar

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI, Request

from icep.contracts import EventPayload, Releasability
from icep.platform import audit
from icep.platform.audit import AUDIT_DROPPED, AuditLog, AuditMiddleware, AuditQuery
from icep.platform.auth import Principal
from icep.platform.db import Database
from icep.platform.errors import Conflict, Forbidden
from icep.platform.events import OutgoingEvent, utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWorkFactory
from icep.platform.problems import install_problem_handlers
from icep.platform.tables import PlatformTables


class ThingBumped(EventPayload):
    event_type: ClassVar[str] = "icep.test.thing.bumped.v1"
    aggregate: ClassVar[str] = "thing"

    n: int


def principal(spec: str) -> Principal:
    client, nation, roles = spec.split(":")
    return Principal(client, nation, frozenset(roles.split(",")), frozenset({"read", "write"}))


@dataclass
class Harness:
    client: httpx.AsyncClient
    log: AuditLog
    db: Database
    table: sa.Table

    async def rows(self) -> list[dict[str, Any]]:
        async with self.db.sessions() as s:
            return [dict(r._mapping) for r in (await s.execute(sa.select(self.table))).all()]

    async def call(self, method: str, path: str, who: str) -> httpx.Response:
        return await self.client.request(method, path, headers={"x-test-principal": who})


@pytest.fixture
async def harness(db: Database, tables: PlatformTables) -> AsyncIterator[Harness]:
    """A service-shaped app: the audit middleware, a change through the unit of work (naming its record or
    not, refused or not) and a read that calls the read hook."""
    log = AuditLog(db, tables.audit, "test", queue_size=3)
    uow = UnitOfWorkFactory(db, tables.outbox, "test", "icep.test.events")
    uow.audit = log
    app = FastAPI()
    app.state.runtime = SimpleNamespace(parts={AuditLog: log})
    install_problem_handlers(app)
    app.add_middleware(AuditMiddleware)

    def caller(request: Request) -> None:
        request.state.principal = principal(request.headers["x-test-principal"])

    @app.post("/v1/things/{thing_id}/bump", operation_id="bumpThing")
    async def bump(
        thing_id: str, request: Request, refuse: bool = False, name: bool = True
    ) -> dict[str, str]:
        caller(request)
        async with uow() as tx:
            if name:
                audit.subject("thing", thing_id, "DEU")
            else:
                tx.publish(
                    OutgoingEvent(
                        payload=ThingBumped(n=1), subject=thing_id, releasability=Releasability(owner="POL")
                    )
                )
            if refuse:
                raise Conflict("the thing cannot be bumped now")
        return {"id": thing_id}

    @app.get("/v1/things/{thing_id}", operation_id="getThing")
    async def get(thing_id: str, request: Request) -> dict[str, str]:
        caller(request)
        audit.read("thing", thing_id, "DEU")
        return {"id": thing_id}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield Harness(client, log, db, tables.audit)


async def test_a_change_is_recorded_in_its_own_transaction(harness: Harness) -> None:
    r = await harness.call("POST", "/v1/things/t1/bump", "deu-planner:DEU:planner,subscriber")
    assert r.status_code == 200
    assert harness.log.pending == 0  # written with the change, not queued
    [row] = await harness.rows()
    assert {k: row[k] for k in ("client_id", "client_nation", "roles", "action", "kind", "outcome")} == {
        "client_id": "deu-planner",
        "client_nation": "DEU",
        "roles": "planner,subscriber",
        "action": "bumpThing",
        "kind": "change",
        "outcome": "success",
    }
    assert (row["resource_type"], row["resource_id"], row["owner_nation"]) == ("thing", "t1", "DEU")
    assert (row["method"], row["path"]) == ("POST", "/v1/things/t1/bump")


async def test_without_a_named_record_the_first_event_names_it(harness: Harness) -> None:
    r = await harness.call("POST", "/v1/things/t2/bump?name=false", "pol-planner:POL:planner")
    assert r.status_code == 200
    [row] = await harness.rows()
    assert (row["resource_type"], row["resource_id"], row["owner_nation"]) == ("thing", "t2", "POL")


async def test_a_refused_change_is_recorded_with_its_problem_type_and_no_success(harness: Harness) -> None:
    r = await harness.call("POST", "/v1/things/t3/bump?refuse=true", "fra-planner:FRA:planner")
    assert r.status_code == 409
    assert await harness.rows() == []  # the change's transaction rolled back, its entry with it
    assert harness.log.pending == 1
    assert await harness.log.flush() == 1
    [row] = await harness.rows()
    assert (row["outcome"], row["status"], row["client_nation"]) == ("refused", 409, "FRA")
    assert row["problem_type"].endswith("/conflict")
    assert (row["resource_id"], row["owner_nation"]) == ("t3", "DEU")  # the owner sees who tried


async def test_reads_by_other_nations_are_queued_and_written_in_one_batch(harness: Harness) -> None:
    assert (await harness.call("GET", "/v1/things/t4", "deu-planner:DEU:planner")).status_code == 200
    assert harness.log.pending == 0  # the owner's own read is no entry
    for who in ("nato-reviewer:NATO:reviewer", "fra-planner:FRA:planner"):
        assert (await harness.call("GET", "/v1/things/t4", who)).status_code == 200
    assert harness.log.pending == 2 and await harness.rows() == []
    assert await harness.log.flush() == 2
    rows = await harness.rows()
    assert {(r["client_id"], r["kind"], r["action"], r["owner_nation"]) for r in rows} == {
        ("nato-reviewer", "read", "getThing", "DEU"),
        ("fra-planner", "read", "getThing", "DEU"),
    }


async def test_a_full_queue_drops_and_counts_never_silently(harness: Harness) -> None:
    before = AUDIT_DROPPED.labels("test")._value.get()
    for _ in range(5):
        assert (await harness.call("GET", "/v1/things/t5", "fra-planner:FRA:planner")).status_code == 200
    assert (harness.log.pending, harness.log.dropped) == (3, 2)
    assert AUDIT_DROPPED.labels("test")._value.get() == before + 2
    assert await harness.log.flush() == 3 and len(await harness.rows()) == 3


def row(owner: str | None, client: str, outcome: str = "success", **extra: Any) -> dict[str, Any]:
    return {
        "id": new_id(),
        "time": utcnow(),
        "client_id": client,
        "client_nation": client[:3].upper(),
        "roles": "planner",
        "action": "submitPlan",
        "kind": "change",
        "resource_type": "plan",
        "resource_id": extra.get("resource_id", "p1"),
        "owner_nation": owner,
        "outcome": outcome,
        "status": None,
        "problem_type": None,
        "trace_id": None,
        "method": "POST",
        "path": "/v1/plans/p1/submit",
    }


async def test_operators_see_their_nations_records_and_nato_all(db: Database, tables: PlatformTables) -> None:
    log = AuditLog(db, tables.audit, "test")
    rows = [
        row("DEU", "deu-planner"),
        row("DEU", "fra-planner", "refused"),
        row("FRA", "fra-planner", resource_id="p2"),
        row(None, "pol-planner", "refused", resource_id="p3"),
    ]
    async with db.sessions() as s, s.begin():
        await s.execute(sa.insert(tables.audit), rows)

    async def ids(who: str, **filters: Any) -> list[str]:
        found, _ = await log.query(principal(who), AuditQuery(**filters))
        return [r["id"] for r in found]

    newest_first = [r["id"] for r in reversed(rows)]
    assert await ids("deu-operator:DEU:operator") == [rows[1]["id"], rows[0]["id"]]
    assert await ids("fra-operator:FRA:operator") == [rows[2]["id"]]
    assert await ids("nato-reviewer:NATO:operator,reviewer") == newest_first
    # Asking for another nation's records is an empty answer, as if there were none.
    assert await ids("fra-operator:FRA:operator", nation="DEU") == []
    assert await ids("deu-operator:DEU:operator", outcome="refused") == [rows[1]["id"]]
    assert await ids("nato-reviewer:NATO:operator", client_id="fra-planner") == [rows[2]["id"], rows[1]["id"]]
    assert await ids("nato-reviewer:NATO:operator", since=utcnow() + timedelta(minutes=1)) == []
    # Newest first, page by page, with the last id shown as the cursor.
    page, after = await log.query(principal("nato-reviewer:NATO:operator"), AuditQuery(limit=3))
    assert [r["id"] for r in page] == newest_first[:3] and after == newest_first[2]
    rest, after = await log.query(principal("nato-reviewer:NATO:operator"), AuditQuery(limit=3, cursor=after))
    assert [r["id"] for r in rest] == newest_first[3:] and after is None

    audit.may_query(principal("nato-reviewer:NATO:operator,reviewer"))
    with pytest.raises(Forbidden):
        audit.may_query(principal("deu-planner:DEU:planner"))


def test_query_times_are_utc_and_out_of_range_ones_refused() -> None:
    from datetime import datetime, timezone

    from icep.platform.errors import Unprocessable

    plus_one = timezone(timedelta(hours=1))
    query = audit.audit_query(since=datetime(2026, 12, 6, 10, 0, tzinfo=plus_one))
    assert query.since is not None and query.since.utcoffset() == timedelta(0) and query.since.hour == 9
    with pytest.raises(Unprocessable):
        audit.audit_query(until=datetime(1, 1, 1, 0, 30, tzinfo=plus_one))
