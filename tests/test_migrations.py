"""Every service's migrations: upgrade -> downgrade -> upgrade on the configured database, and the
models match what the migrations build (so no change to a model ships without its migration)."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from icep.platform import migrations
from icep.platform.db import create_engine

SERVICES = ["plans", "procurement", "standards", "notifications"]
#: The platform's tables, which every service with a database has (each in its own database).
PLATFORM_TABLES = ("outbox", "inbox", "idempotency_keys", "audit_log", "dead_letters")


async def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def drift(url: str, metadata: sa.MetaData) -> list[object]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return list(
                await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), metadata))
            )
    finally:
        await engine.dispose()


@pytest.mark.parametrize("service", SERVICES)
async def test_upgrade_downgrade_upgrade(service: str, make_database_url: Callable[[str], str]) -> None:
    app_module = importlib.import_module(f"icep.{service}.app")
    models = importlib.import_module(f"icep.{service}.models")
    migrations_dir: Path = app_module.MIGRATIONS
    url = make_database_url(f"mig_{service}")
    expected = set(models.metadata.tables)
    assert set(PLATFORM_TABLES) <= expected

    await asyncio.to_thread(migrations.upgrade, migrations_dir, url)
    assert await table_names(url) == expected | {"alembic_version"}
    assert await drift(url, models.metadata) == []

    await asyncio.to_thread(migrations.downgrade, migrations_dir, url)
    assert await table_names(url) == {"alembic_version"}

    await asyncio.to_thread(migrations.upgrade, migrations_dir, url)
    assert await table_names(url) == expected | {"alembic_version"}


def test_no_table_of_one_service_is_in_another() -> None:
    owners: dict[str, str] = {}
    for service in SERVICES:
        metadata = importlib.import_module(f"icep.{service}.models").metadata
        for table in set(metadata.tables) - set(PLATFORM_TABLES):
            assert table not in owners, f"{table} is in both {owners[table]} and {service}"
            owners[table] = service
    assert owners["plans"] == "plans" and owners["subscriptions"] == "notifications"


async def test_the_audit_log_refuses_update_and_delete(make_database_url: Callable[[str], str]) -> None:
    """Append-only by the database itself: a trigger refuses UPDATE and DELETE of an audit entry."""
    app_module = importlib.import_module("icep.plans.app")
    url = make_database_url("mig_audit")
    await asyncio.to_thread(migrations.upgrade, app_module.MIGRATIONS, url)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO audit_log (id, time, client_id, client_nation, roles, action, kind,"
                    " resource_type, resource_id, owner_nation, outcome, method, path) VALUES ('e1',"
                    " CURRENT_TIMESTAMP, 'fra-planner', 'FRA', 'planner', 'submitPlan', 'change', 'plan',"
                    " 'p1', 'DEU', 'refused', 'POST', '/v1/plans/p1/submit')"
                )
            )
        for statement in (
            "UPDATE audit_log SET client_id = 'someone-else' WHERE id = 'e1'",
            "DELETE FROM audit_log WHERE id = 'e1'",
        ):
            with pytest.raises(sa.exc.DBAPIError, match="append-only"):
                async with engine.begin() as conn:
                    await conn.execute(sa.text(statement))
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT client_id FROM audit_log"))).all()
        assert [r[0] for r in rows] == ["fra-planner"]
    finally:
        await engine.dispose()
