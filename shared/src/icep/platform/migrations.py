"""Alembic migrations, one environment per service (`services/<name>/migrations/`).

Each service's `env.py` is two lines: import its metadata and call `run_env(metadata)`. Migrations run
on start (`upgrade`), and `icep migrate <service>` runs them by hand.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from icep.platform.db import advisory_key, ensure_sqlite_dir, normalize_url


def alembic_config(migrations_dir: Path, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def upgrade(migrations_dir: Path, url: str, revision: str = "head") -> None:
    """Blocking; call from a thread (`asyncio.to_thread`) when an event loop is running."""
    ensure_sqlite_dir(url)
    command.upgrade(alembic_config(migrations_dir, url), revision)


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
