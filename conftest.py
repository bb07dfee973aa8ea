"""Fixtures shared by every test in the repository: a real Kafka broker and real databases.

- Kafka: the broker named by `KAFKA_BOOTSTRAP_SERVERS`, or else a local Apache Kafka started from the
  jars in `deploy/kafka/libs` (fetched with Maven when missing) for the test session.
- Databases: SQLite files by default; PostgreSQL when `ICEP_TEST_POSTGRES_URL` names an admin URL, in
  which case each test database is created fresh and dropped at the end.
"""

from __future__ import annotations

import asyncio
import os
import uuid
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from icep.platform import kafka_local

POSTGRES_ADMIN_URL = os.environ.get("ICEP_TEST_POSTGRES_URL", "")


ROOT = Path(__file__).resolve().parent

#: Tests whose outcome cannot depend on the database: the gateway keeps none (its tests and the token and
#: key checks of test_identity), `icep up` always runs SQLite, the manifests, alert rules and dashboards are
#: files, the local broker (and a broker cluster losing a node) and the launcher are no database's, nor is
#: the partner SDK's work against its own test servers. When CI runs SQLite and PostgreSQL side by side, the
#: PostgreSQL run leaves them out (`-m "not database_agnostic"`): they run once, not twice.
#: A test here that asks for a database of its own (`make_database_url` in its signature) is not one.
DATABASE_AGNOSTIC = (
    "services/gateway/tests/",
    "shared/tests/test_kafka_local.py",
    "shared/tests/test_kafka_outage_log.py",
    "shared/tests/test_launcher_restarts.py",
    "shared/tests/test_telemetry.py",
    "tests/e2e/test_icep_up.py",
    "tests/e2e/test_identity.py",
    "tests/e2e/test_portal_browser.py",
    "tests/faults/test_broker_faults.py",
    "tests/test_deploy.py",
    "tests/test_k8s.py",
    "tests/test_observability.py",
    # The partner SDK against its scripted servers and the OpenAPI document (its run against the platform
    # is in test_against_the_platform.py, which is not listed).
    "clients/python/tests/test_events_and_webhooks.py",
    "clients/python/tests/test_models_match_the_api.py",
    "clients/python/tests/test_tokens_and_retries.py",
    "clients/python/tests/test_typed_lists.py",
    "tests/test_docs.py",
    # Journeys through the platform whose subject is its surface, not its storage: what partners and
    # operators see over HTTP (the SDK, the quickstarts as written, error shapes), health and metrics, traces,
    # and the event path end to end. The storage under them is exercised on both databases by the domain
    # journeys (authorization, privacy, concurrency, idempotency, lifecycles) that stay on both.
    "clients/python/tests/test_against_the_platform.py",
    "tests/e2e/test_api_errors.py",
    "tests/e2e/test_operator_health.py",
    "tests/e2e/test_readme_quickstart.py",
    "tests/e2e/test_thin_flow.py",
    "tests/e2e/test_tracing.py",
)


#: Long runs whose findings are the same on either database, so once is enough, on the production one: the
#: fuzzing of the whole API; the kill -9 and replica fault runs, the standards expiry across restarts, the
#: rescreening on start and the seeds (what production does after a crash, a restart or a first deploy); and
#: the check that every aggregate's readers are its events' receivers (long, and its SQL filters are the
#: ones production runs). When CI runs both side by side, the SQLite run leaves them out
#: (`-m "not production_database"`); a run on SQLite alone runs them.
PRODUCTION_DATABASE = (
    "tests/e2e/test_schemathesis.py",
    "tests/e2e/test_plans_seed.py",
    "tests/e2e/test_procurement_seed.py",
    "tests/e2e/test_procurement_supply_chain.py",
    "tests/e2e/test_standards_expiry.py",
    "tests/e2e/test_standards_seed.py",
    "tests/e2e/test_visibility_consistency.py",
    "tests/faults/test_delivery_faults.py",
    "tests/faults/test_replica_faults.py",
)


#: The tier a change to a rule runs first (`make test-unit`): no broker, no platform processes. A test is in
#: the slower tier (`integration`) when it needs the broker or starts the platform, whatever its folder.
INTEGRATION_FIXTURES = frozenset({"kafka_bootstrap", "start_platform", "platform"})
INTEGRATION_PATHS = ("tests/e2e/", "tests/faults/")
#: Files that start processes or a broker from the test body itself rather than through a fixture.
INTEGRATION_FILES = (
    "shared/tests/test_kafka_local.py",
    "shared/tests/test_kafka_outage_log.py",
    "shared/tests/test_launcher_restarts.py",
    "tests/test_operations_cli.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            where = item.path.resolve().relative_to(ROOT).as_posix()
        except ValueError:
            continue
        needs = set(getattr(item, "fixturenames", ()))
        if (
            needs & INTEGRATION_FIXTURES
            or where.startswith(INTEGRATION_PATHS)
            or where.startswith(INTEGRATION_FILES)
        ):
            item.add_marker(pytest.mark.integration)
        own_database = "make_database_url" in getattr(getattr(item, "_fixtureinfo", None), "argnames", ())
        if where.startswith(DATABASE_AGNOSTIC) and not own_database:
            item.add_marker(pytest.mark.database_agnostic)
        if where.startswith(PRODUCTION_DATABASE):
            item.add_marker(pytest.mark.production_database)


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"icep database: {'postgresql' if POSTGRES_ADMIN_URL else 'sqlite'}",
        f"icep kafka: {os.environ.get('KAFKA_BOOTSTRAP_SERVERS') or 'local broker from deploy/kafka'}",
    ]


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    kafka_local.fetch_jars()
    broker = kafka_local.LocalKafka(
        data_dir=tmp_path_factory.mktemp("kafka"),
        port=kafka_local.free_port(),
        controller_port=kafka_local.free_port(),
    )
    broker.start()
    try:
        broker.wait_ready(120)
        yield broker.bootstrap_servers
    finally:
        broker.stop()


def _pg_admin(sql: str) -> None:
    """Run one admin statement. In a thread of its own, so it works with or without a running loop."""
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.fixture(scope="session")
def make_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], str]]:
    """`make_database_url("plans")` gives a fresh, empty database of the configured kind."""
    created: list[str] = []
    root = tmp_path_factory.mktemp("db")

    def make(name: str) -> str:
        suffix = uuid.uuid4().hex[:8]
        if not POSTGRES_ADMIN_URL:
            return f"sqlite+aiosqlite:///{root / f'{name}-{suffix}.db'}"
        dbname = f"icep_t_{name}_{suffix}"
        _pg_admin(f'CREATE DATABASE "{dbname}"')
        created.append(dbname)
        base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
        return f"{base}/{dbname}".replace("postgresql://", "postgresql+asyncpg://", 1)

    yield make
    for dbname in created:
        try:
            _pg_admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        except Exception as exc:  # a leftover test database is untidy, not a failed test
            warnings.warn(f"could not drop test database {dbname}: {exc}", stacklevel=1)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent
