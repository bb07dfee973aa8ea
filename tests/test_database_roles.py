"""deploy/postgres/roles.sql, live on PostgreSQL: the migration role owns the schema and is the only one that
can change it; the application role the pods run as reads and writes rows and nothing else; and a service
started on the application role (ICEP_<SERVICE>_MIGRATE_ON_START=false, as in deploy/k8s) waits for the
migrations Job, then serves reads and writes and publishes its events.

PostgreSQL only: tests/conftest.py collects this module only when ICEP_TEST_POSTGRES_URL names an admin
role with CREATEDB and CREATEROLE (.ci/postgres.sh makes one), as the script's administrator needs. Each
test runs the script, with psql as an operator would, for a database and roles of its own, and drops them
afterwards, also when it fails.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from icep.platform import migrations
from icep.platform.events import decode
from icep.platform.launcher import Launcher, free_platform_ports, platform_env
from icep.platform.testing import read_records, wait_for

#: An admin role with CREATEDB and CREATEROLE, as the script needs (unset: the module is not collected).
ADMIN_URL = os.environ.get("ICEP_TEST_POSTGRES_URL", "")
if not ADMIN_URL:  # reached only by naming this file on the command line of a SQLite run
    raise RuntimeError("tests/test_database_roles.py needs PostgreSQL: set ICEP_TEST_POSTGRES_URL")
SERVICE = "plans"
#: What PostgreSQL answers to a statement the role has no right to (SQLSTATE 42501).
Refused = asyncpg.exceptions.InsufficientPrivilegeError


@dataclass(frozen=True)
class ServiceRoles:
    """One service's database and its two login roles, as roles.sql made them."""

    database: str  # also the application role's name (the script's `service` variable)
    migrator: str
    app_url: str
    migrator_url: str

    @staticmethod
    def for_sqlalchemy(url: str) -> str:
        """The form the services' settings take (`ICEP_<SERVICE>_DATABASE_URL`)."""
        return url.replace("postgresql://", "postgresql+asyncpg://", 1)


def _url(role: str, password: str, database: str) -> str:
    url = make_url(ADMIN_URL).set(username=role, password=password, database=database)
    return url.render_as_string(hide_password=False)


def _psql() -> str:
    """Debian keeps each installed server's client under /usr/lib/postgresql/<major>/bin (where
    .ci/postgres.sh finds the server); elsewhere the psql on PATH."""
    installed = [p for p in Path("/usr/lib/postgresql").glob("*/bin/psql") if p.parts[-3].isdigit()]
    if installed:
        return str(max(installed, key=lambda p: int(p.parts[-3])))
    on_path = shutil.which("psql")
    assert on_path, "psql runs deploy/postgres/roles.sql: install the PostgreSQL client"
    return on_path


def _run_roles_sql(repo_root: Path, service: str, migrator_password: str, app_password: str) -> None:
    """The script exactly as deploy/k8s/README.md tells the administrator to run it."""
    result = subprocess.run(
        [
            _psql(),
            "--no-psqlrc",
            "--quiet",
            ADMIN_URL,
            "-v",
            f"service={service}",
            "-v",
            f"migrator_password={migrator_password}",
            "-v",
            f"app_password={app_password}",
            "-f",
            str(repo_root / "deploy/postgres/roles.sql"),
        ],
        env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, (
        f"roles.sql failed ({result.returncode}); the admin role needs CREATEDB and CREATEROLE"
        f" (.ci/postgres.sh: pg_setup_role):\n{result.stdout}{result.stderr}"
    )


async def _drop(database: str, roles: list[str]) -> None:
    """Everything roles.sql made, whatever state a failed test left it in (the privileges and default
    privileges the roles hold live in the database, so they go with it)."""
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        for statement in (
            f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)',
            *(f'DROP ROLE IF EXISTS "{role}"' for role in roles),
        ):
            try:
                await conn.execute(statement)
            except asyncpg.PostgresError as exc:  # a leftover is untidy, not a failed test
                warnings.warn(f"{statement}: {exc}", stacklevel=1)
    finally:
        await conn.close()


@pytest.fixture
async def make_roles(repo_root: Path) -> AsyncIterator[Callable[[], Awaitable[ServiceRoles]]]:
    """`await make_roles()` runs roles.sql for a fresh database and roles of a unique name."""
    made: list[tuple[str, list[str]]] = []

    async def make() -> ServiceRoles:
        name = f"icep_t_roles_{uuid.uuid4().hex[:10]}"
        migrator = f"{name}_migrator"  # the script's naming: <service>_migrator
        made.append((name, [name, migrator]))
        app_password, migrator_password = secrets.token_hex(16), secrets.token_hex(16)
        await asyncio.to_thread(_run_roles_sql, repo_root, name, migrator_password, app_password)
        return ServiceRoles(
            database=name,
            migrator=migrator,
            app_url=_url(name, app_password, name),
            migrator_url=_url(migrator, migrator_password, name),
        )

    try:
        yield make
    finally:
        for database, roles in made:
            await _drop(database, roles)


def _migrate(url: str) -> subprocess.CompletedProcess[str]:
    """`icep migrate plans`, as the migrations Job runs it."""
    return subprocess.run(
        [sys.executable, "-m", "icep.platform.cli", "migrate", SERVICE],
        env={**os.environ, f"ICEP_{SERVICE.upper()}_DATABASE_URL": ServiceRoles.for_sqlalchemy(url)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _migrated(roles: ServiceRoles) -> None:
    """The Job's run of `icep migrate`, with the migration role."""
    result = await asyncio.to_thread(_migrate, roles.migrator_url)
    assert result.returncode == 0, result.stdout + result.stderr


async def _upgraded(roles: ServiceRoles) -> None:
    """What `icep migrate` does, in this process (no interpreter to start), with the migration role."""
    from icep.plans.app import MIGRATIONS

    await asyncio.to_thread(migrations.upgrade, MIGRATIONS, ServiceRoles.for_sqlalchemy(roles.migrator_url))


async def _fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def _tables(url: str) -> dict[str, str]:
    """The public schema's tables and their owners."""
    rows = await _fetch(url, "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'")
    return {r["tablename"]: r["tableowner"] for r in rows}


def _expected_tables() -> set[str]:
    from icep.plans.models import metadata

    return set(metadata.tables) | {"alembic_version"}


# --- who may change the schema ----------------------------------------------------------------------------


async def test_the_roles_hold_what_the_script_says_and_no_more(
    make_roles: Callable[[], Awaitable[ServiceRoles]],
) -> None:
    roles = await make_roles()
    [db] = await _fetch(
        ADMIN_URL,
        "SELECT pg_get_userbyid(datdba) AS owner,"
        " has_database_privilege('public', datname, 'CONNECT') AS public_connects,"
        " has_database_privilege($2, datname, 'CONNECT') AS app_connects,"
        " has_database_privilege($2, datname, 'CREATE') AS app_creates_schemas,"
        " has_database_privilege($2, datname, 'TEMPORARY') AS app_creates_temp"
        " FROM pg_database WHERE datname = $1",
        roles.database,
        roles.database,
    )
    assert db["owner"] == roles.migrator
    assert db["app_connects"] and not db["public_connects"]
    assert not db["app_creates_schemas"] and not db["app_creates_temp"]
    attributes = await _fetch(
        ADMIN_URL,
        "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls, rolcanlogin"
        " FROM pg_roles WHERE rolname = ANY($1::text[])",
        [roles.database, roles.migrator],
    )
    assert len(attributes) == 2
    for role in attributes:
        assert role["rolcanlogin"], role["rolname"]
        assert not (role["rolsuper"] or role["rolcreatedb"] or role["rolcreaterole"] or role["rolbypassrls"])
    [membership] = await _fetch(
        ADMIN_URL, "SELECT pg_has_role($1, $2, 'MEMBER') AS member", roles.database, roles.migrator
    )
    assert not membership["member"], "the application role must not be able to become the owner"
    [schema] = await _fetch(
        roles.app_url,
        "SELECT pg_get_userbyid(nspowner) AS owner, has_schema_privilege('public', 'CREATE') AS app_creates"
        " FROM pg_namespace WHERE nspname = 'public'",
    )
    assert schema["owner"] == roles.migrator and not schema["app_creates"]


async def test_only_the_migration_role_can_migrate(make_roles: Callable[[], Awaitable[ServiceRoles]]) -> None:
    roles = await make_roles()
    # What a Deployment would do if it still migrated on start: its role may not.
    refused = await asyncio.to_thread(_migrate, roles.app_url)
    assert refused.returncode != 0
    assert "permission denied for schema public" in refused.stdout + refused.stderr
    assert await _tables(roles.migrator_url) == {}, "the refused migration left nothing behind"

    await _migrated(roles)
    tables = await _tables(roles.app_url)
    assert set(tables) == _expected_tables()
    assert set(tables.values()) == {roles.migrator}


# --- what the application role may do ---------------------------------------------------------------------


async def test_the_application_role_writes_rows_and_changes_no_schema(
    make_roles: Callable[[], Awaitable[ServiceRoles]],
) -> None:
    roles = await make_roles()
    await _upgraded(roles)
    tables = await _tables(roles.app_url)
    now = datetime.now(UTC)
    app = await asyncpg.connect(roles.app_url)
    try:
        # Rows: insert (the outbox's position comes from its sequence), select, update, delete.
        position = await app.fetchval(
            "INSERT INTO outbox (id, topic, key, type, source, time, nation, releasable_to, data, created_at)"
            " VALUES ($1, 'icep.plans.events', 'p1', 'icep.plans.plan.created.v1', '/icep/plans', $2, 'DEU',"
            " 'allies', '{}', $2) RETURNING position",
            "e1",
            now,
        )
        assert position >= 1
        updated = await app.execute(
            "UPDATE outbox SET sent_at = $1, attempts = attempts + 1 WHERE id = 'e1'", now
        )
        assert updated == "UPDATE 1"
        row = await app.fetchrow("SELECT sent_at, attempts FROM outbox WHERE id = 'e1'")
        assert row is not None and row["attempts"] == 1 and row["sent_at"] == now
        await app.execute(
            "INSERT INTO inbox (consumer, event_id, event_type, processed_at) VALUES ('c', 'e1', 't', $1)",
            now,
        )
        assert await app.execute("DELETE FROM outbox WHERE id = 'e1'") == "DELETE 1"
        assert await app.execute("DELETE FROM inbox WHERE event_id = 'e1'") == "DELETE 1"
        assert await app.fetchval("SELECT count(*) FROM outbox") == 0
        # The audit log takes entries from the application; its guard refuses changing them.
        await app.execute(
            "INSERT INTO audit_log (id, time, client_id, client_nation, roles, action, kind, resource_type,"
            " resource_id, owner_nation, outcome, method, path) VALUES ('a1', $1, 'deu-planner', 'DEU',"
            " 'planner', 'createPlan', 'change', 'plan', 'p1', 'DEU', 'done', 'POST', '/v1/plans')",
            now,
        )

        # No schema: every kind of DDL is refused, and so is a way around it.
        refusals = {
            "CREATE TABLE extra (id integer)": "permission denied for schema public",
            "CREATE TEMPORARY TABLE scratch (id integer)": "permission denied to create temporary tables",
            "CREATE SCHEMA extra": "permission denied for database",
            "ALTER TABLE outbox ADD COLUMN extra integer": "must be owner of table outbox",
            "CREATE INDEX outbox_extra ON outbox (topic)": "must be owner of table outbox",
            "DROP TABLE outbox": "must be owner of table outbox",
            "TRUNCATE outbox": "permission denied for table outbox",
            # The audit log's append-only guard can be neither switched off nor dropped by the application.
            "ALTER TABLE audit_log DISABLE TRIGGER USER": "must be owner of table audit_log",
            "DROP FUNCTION audit_log_append_only()": "must be owner of function",
            "UPDATE audit_log SET client_id = 'x'": "append-only",
            "DELETE FROM audit_log": "append-only",
            f'SET ROLE "{roles.migrator}"': "permission denied to set role",
        }
        for statement, message in refusals.items():
            with pytest.raises(Refused, match=message):
                await app.execute(statement)
    finally:
        await app.close()
    assert await _tables(roles.app_url) == tables, "nothing about the schema changed"

    # A table a later release's migration creates is the application's to use, with no grant in between.
    migrator = await asyncpg.connect(roles.migrator_url)
    try:
        await migrator.execute("CREATE TABLE later_release (id serial PRIMARY KEY, note text)")
    finally:
        await migrator.close()
    app = await asyncpg.connect(roles.app_url)
    try:
        await app.execute("INSERT INTO later_release (note) VALUES ('written by the application')")
        assert await app.fetchval("SELECT note FROM later_release") == "written by the application"
        assert await app.execute("DELETE FROM later_release") == "DELETE 1"
        with pytest.raises(Refused, match="must be owner of table later_release"):
            await app.execute("DROP TABLE later_release")
    finally:
        await app.close()


# --- the service on the application role ------------------------------------------------------------------


async def test_a_service_on_the_application_role_waits_for_the_job_then_serves(
    make_roles: Callable[[], Awaitable[ServiceRoles]], kafka_bootstrap: str, tmp_path: Path
) -> None:
    roles = await make_roles()
    namespace = f"r{uuid.uuid4().hex[:10]}."
    ports, management = free_platform_ports()
    launcher = Launcher(
        env=platform_env(
            ports,
            bootstrap=kafka_bootstrap,
            var_dir=tmp_path / "var",
            management_ports=management,
            extra={
                # As deploy/k8s runs it: the application role, no migration on start.
                "ICEP_PLANS_DATABASE_URL": ServiceRoles.for_sqlalchemy(roles.app_url),
                "ICEP_PLANS_MIGRATE_ON_START": "false",
                "ICEP_PLANS_MIGRATION_WAIT_SECONDS": "60",
                "ICEP_OUTBOX_POLL_SECONDS": "0.5",
                "ICEP_TOPIC_NAMESPACE": namespace,
            },
        ),
        log_dir=tmp_path / "logs",
        ports=ports,
        management_ports=management,
    )
    try:
        plans = launcher.start("plans")
        launcher.start("gateway")
        await wait_for(
            lambda: "waiting for the migrations Job" in launcher.log_tail("plans", 200),
            timeout=60,
            what="plans to wait for the migrations Job",
        )
        assert plans.alive()
        await _migrated(roles)  # the Job, with the migration role
        await asyncio.to_thread(launcher.wait_ready, "plans", 60)
        await asyncio.to_thread(launcher.wait_ready, "gateway", 60)

        gateway = f"http://127.0.0.1:{ports['gateway']}"
        async with httpx.AsyncClient(base_url=gateway, timeout=20) as http:
            token = await http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=("deu-planner", "deu-planner-dev-secret"),
            )
            assert token.status_code == 200, token.text
            http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
            # A write: the plan, its version, its event in the outbox, its audit entry, in one transaction.
            body = {
                "title": "Plan written by the application role",
                "period_start": "2025-01-01",
                "period_end": "2029-12-31",
                "capability_areas": ["munitions"],
                "releasability": {"scope": "allies"},
            }
            created = await http.post("/v1/plans", json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
            assert created.status_code == 201, created.text
            plan_id = created.json()["id"]
            # A read.
            read = await http.get(f"/v1/plans/{plan_id}")
            assert read.status_code == 200, read.text
            assert read.json()["title"] == body["title"]

        # The relay, on the same role, published the event and marked it sent.
        records = await read_records(kafka_bootstrap, f"{namespace}icep.plans.events", expect=1)
        assert plan_id in {decode(r.key, r.value, r.headers).subject for r in records}

        async def sent() -> bool:
            rows = await _fetch(roles.app_url, "SELECT sent_at FROM outbox")
            return bool(rows) and all(r["sent_at"] is not None for r in rows)

        await wait_for(sent, timeout=30, what="the relay to mark the outbox row sent")
        [audit] = await _fetch(roles.app_url, "SELECT count(*) AS n FROM audit_log")
        assert audit["n"] >= 1
        assert plans.alive()
        log = plans.log_path.read_text(errors="replace")
        assert "permission denied" not in log and "InsufficientPrivilege" not in log
    finally:
        launcher.stop_all()
