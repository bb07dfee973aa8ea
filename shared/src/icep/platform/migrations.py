"""Alembic migrations, one environment per service (`services/<name>/migrations/`).

Each service's `env.py` is two lines: import its metadata and call `run_env(metadata)`. Migrations run
on start (`upgrade`), and `icep migrate <service>` runs them by hand. In production a migrations Job runs
`icep migrate` with a role that may change the schema, and the services (`ICEP_<SERVICE>_MIGRATE_ON_START=
false`, an application role without DDL rights) wait until the schema is the one their code expects
(`wait_until_current`).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from icep.platform.db import advisory_key, ensure_sqlite_dir, normalize_url

log = logging.getLogger("icep.migrations")


def alembic_config(migrations_dir: Path, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def upgrade(migrations_dir: Path, url: str, revision: str = "head") -> None:
    """Blocking; call from a thread (`asyncio.to_thread`) when an event loop is running."""
    ensure_sqlite_dir(url)
    command.upgrade(alembic_config(migrations_dir, url), revision)


def heads(migrations_dir: Path, url: str) -> set[str]:
    """The revisions the code expects (the scripts' heads)."""
    return set(ScriptDirectory.from_config(alembic_config(migrations_dir, url)).get_heads())


def revisions(migrations_dir: Path, url: str) -> set[str]:
    """Every revision the code's scripts know."""
    script = ScriptDirectory.from_config(alembic_config(migrations_dir, url))
    return {r.revision for r in script.walk_revisions()}


async def applied(url: str) -> set[str]:
    """The revisions the database is at (empty before the first migration)."""
    engine = create_async_engine(normalize_url(url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda c: MigrationContext.configure(c).get_current_heads()))
    finally:
        await engine.dispose()


class SchemaNotCurrent(RuntimeError):
    """The database is not (yet) at the revision the code expects: the migrations Job has not run."""


async def wait_until_current(migrations_dir: Path, url: str, timeout: float, interval: float = 2.0) -> None:
    """Wait until the database is at the code's head revisions, without changing anything.

    For a service that does not migrate on start: a rolling update's new pods wait here for the
    migrations Job, while the old pods keep serving. A database ahead of the code (revisions it does not
    know) is accepted with a warning: an older release keeps running on a newer, additive schema. A
    database that cannot be reached counts as not current (it may be starting too). Raises
    `SchemaNotCurrent` after `timeout` seconds.
    """
    expected = heads(migrations_dir, url)
    known = revisions(migrations_dir, url)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            found = await applied(url)
            problem = f"at {sorted(found) or 'no revision'}, the code expects {sorted(expected)}"
        except (OSError, SQLAlchemyError) as exc:
            found, problem = set(), f"unreachable ({type(exc).__name__}: {exc})"
        if found == expected:
            return
        if found and not found & known:
            # Revisions this code does not know: a newer release migrated the database (a rollback, or an
            # old pod restarting during a rollout). Migrations are additive (expand, then contract in a
            # later release), so the older code runs on the newer schema; waiting would only crash-loop it.
            log.warning(
                "the database is ahead of this code (%s > %s); serving", sorted(found), sorted(expected)
            )
            return
        if asyncio.get_running_loop().time() >= deadline:
            raise SchemaNotCurrent(f"the database is {problem}; run `icep migrate` (the migrations Job)")
        log.warning("waiting for the migrations Job: the database is %s", problem)
        await asyncio.sleep(interval)


def downgrade(migrations_dir: Path, url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(migrations_dir, url), revision)


def current(migrations_dir: Path, url: str) -> None:
    command.current(alembic_config(migrations_dir, url), verbose=True)


def run_env(target_metadata: MetaData) -> None:
    """The body of every service's `env.py`."""
    config = context.config
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set"
    sqlite = url.startswith("sqlite")

    def configure(connection: Connection | None = None) -> None:
        context.configure(
            connection=connection,
            url=None if connection is not None else url,
            target_metadata=target_metadata,
            render_as_batch=sqlite,  # SQLite alters tables by copying them
            compare_type=True,
            literal_binds=connection is None,
        )

    if context.is_offline_mode():
        configure()
        with context.begin_transaction():
            context.run_migrations()
        return

    def do_run(connection: Connection) -> None:
        configure(connection)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Replicas starting together migrate one after another, not over each other.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:k)"), {"k": advisory_key("icep-migrations")}
                )
            context.run_migrations()

    async def run_async() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
        await engine.dispose()

    asyncio.run(run_async())
