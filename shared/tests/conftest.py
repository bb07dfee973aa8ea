from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import sqlalchemy as sa

from icep.platform.db import Database
from icep.platform.kafka import ensure_topics
from icep.platform.tables import PlatformTables, platform_tables

#: Modules proving what only PostgreSQL has (LISTEN/NOTIFY across processes, its connection pool) are
#: collected only when the suite runs on PostgreSQL: a SQLite run neither runs them nor reports them as
#: skipped.
POSTGRES_ONLY = ["test_wakeups.py", "test_postgres_pool.py"]
collect_ignore = [] if os.environ.get("ICEP_TEST_POSTGRES_URL") else POSTGRES_ONLY

metadata = sa.MetaData()
TABLES: PlatformTables = platform_tables(metadata)
#: What a test handler writes, so its effects can be counted.
effects = sa.Table(
    "effects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("value", sa.String(200), nullable=False),
)


@pytest.fixture
async def db(make_database_url: Callable[[str], str]) -> AsyncIterator[Database]:
    database = Database(make_database_url("platform"))
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def topic(kafka_bootstrap: str) -> str:
    name = f"icep.test-{uuid.uuid4().hex[:8]}.events"
    await ensure_topics(kafka_bootstrap, [name], partitions=3, replication=1)
    return name


@pytest.fixture
def tables() -> PlatformTables:
    return TABLES


@pytest.fixture
def effects_table() -> sa.Table:
    return effects
