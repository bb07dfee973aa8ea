"""`icep outbox ...` and `icep retention purge ...` against a service's migrated database, found from the
service's own settings (as `icep migrate` finds it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from icep.plans.app import MIGRATIONS
from icep.plans.models import tables
from icep.platform import migrations
from icep.platform.cli import app
from icep.platform.db import Database
from icep.platform.events import utcnow
from icep.platform.ids import new_id


def _run(work: Callable[[Database], Any], url: str) -> Any:
    async def go() -> Any:
        db = Database(url)
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(go())


@pytest.fixture
def plans_db(make_database_url: Callable[[str], str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = make_database_url("plans")
    migrations.upgrade(MIGRATIONS, url)
    monkeypatch.setenv("ICEP_PLANS_DATABASE_URL", url)
    yield url


def _row(key: str, sent_days_ago: float | None) -> dict[str, Any]:
    now = utcnow()
    return {
        "id": new_id(),
        "topic": "icep.plans.events",
        "key": key,
        "type": "icep.plans.plan.submitted.v1",
        "source": "/icep/plans",
        "time": now,
        "nation": "DEU",
        "releasable_to": "ALLIES",
        "data": "{}",
        "created_at": now - timedelta(minutes=5),
        "sent_at": None if sent_days_ago is None else now - timedelta(days=sent_days_ago),
        "attempts": 3,
        "last_error": "KafkaTimeoutError()" if sent_days_ago is None else None,
    }


def test_outbox_status_park_retry_and_retention_purge(plans_db: str) -> None:
    stuck, old_sent = _row("plan-1", None), _row("plan-2", 3)

    async def insert(db: Database) -> None:
        async with db.transaction() as s:
            await s.execute(sa.insert(tables.outbox), [stuck, old_sent])

    _run(insert, plans_db)
    cli = CliRunner()

    status = cli.invoke(app, ["outbox", "status", "plans", "--json"])
    assert status.exit_code == 0, status.output
    found = json.loads(status.output)
    assert (found["backlog"], found["parked"], found["failing"][0]["id"]) == (1, 0, stuck["id"])
    assert found["oldest_age_seconds"] >= 300
    assert found["leader"]["mode"] in ("single-process", "advisory-lock")

    parked = cli.invoke(app, ["outbox", "park", "plans", stuck["id"], "--reason", "poison record"])
    assert parked.exit_code == 0 and "parked" in parked.output, parked.output
    shown = cli.invoke(app, ["outbox", "status", "plans"])
    assert shown.exit_code == 0 and "parked: 1" in shown.output and "poison" in shown.output

    assert cli.invoke(app, ["outbox", "unpark", "plans", stuck["id"]]).exit_code == 0
    retried = cli.invoke(app, ["outbox", "retry", "plans", stuck["id"]])
    assert retried.exit_code == 0 and "queued again" in retried.output

    async def state(db: Database) -> Any:
        async with db.sessions() as s:
            return (await s.execute(sa.select(tables.outbox).where(tables.outbox.c.id == stuck["id"]))).one()

    row = _run(state, plans_db)
    assert (row.attempts, row.last_error, row.parked_at) == (0, None, None)

    missing = cli.invoke(app, ["outbox", "retry", "plans", "no-such-row"])
    assert missing.exit_code == 2 and "no outbox row" in missing.output
    sent = cli.invoke(app, ["outbox", "park", "plans", old_sent["id"], "--reason", "x"])
    assert sent.exit_code == 2 and "published already" in sent.output
    assert cli.invoke(app, ["outbox", "status", "gateway"]).exit_code == 2

    dry = cli.invoke(app, ["retention", "purge", "plans", "--dry-run"])
    assert dry.exit_code == 0 and "would purge" in dry.output, dry.output
    assert _count(plans_db) == 2
    done = cli.invoke(app, ["retention", "purge", "plans"])
    assert done.exit_code == 0, done.output
    assert _count(plans_db) == 1  # the old sent row; never the unsent one


def _count(url: str) -> int:
    async def count(db: Database) -> int:
        async with db.sessions() as s:
            return int((await s.execute(sa.select(sa.func.count()).select_from(tables.outbox))).scalar_one())

    return int(_run(count, url))
