"""Rows queued with `write_before_commit` are written once per writer, in one call, just before
`Database.transaction` commits; a rolled-back transaction writes none, and a commit that would drop them
is refused."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from icep.platform.db import Database, write_before_commit


def _writer(table: sa.Table, calls: list[list[str]]) -> Any:
    async def write(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
        calls.append([row["value"] for row in rows])
        await session.execute(sa.insert(table), rows)

    return write


async def _values(db: Database, table: sa.Table) -> list[str]:
    async with db.connect() as conn:
        return list((await conn.execute(sa.select(table.c.value).order_by(table.c.id))).scalars())


async def test_a_transactions_queued_rows_go_in_one_call_per_writer_before_the_commit(
    db: Database, effects_table: sa.Table
) -> None:
    calls: list[list[str]] = []
    write = _writer(effects_table, calls)
    async with db.transaction() as session:
        for n in range(5):
            write_before_commit(session, write, {"event_id": f"e{n}", "value": f"v{n}"})
            assert calls == []  # nothing written while the transaction's own work goes on
    assert calls == [["v0", "v1", "v2", "v3", "v4"]]
    assert await _values(db, effects_table) == ["v0", "v1", "v2", "v3", "v4"]


async def test_a_rolled_back_transaction_writes_none_of_its_queued_rows(
    db: Database, effects_table: sa.Table
) -> None:
    calls: list[list[str]] = []
    with pytest.raises(RuntimeError, match="the handler failed"):
        async with db.transaction() as session:
            write_before_commit(session, _writer(effects_table, calls), {"event_id": "e", "value": "lost"})
            raise RuntimeError("the handler failed")
    assert calls == []
    assert await _values(db, effects_table) == []


async def test_a_commit_that_would_drop_queued_rows_is_refused(db: Database, effects_table: sa.Table) -> None:
    calls: list[list[str]] = []
    async with db.sessions() as session:
        await session.begin()
        await session.execute(sa.insert(effects_table).values(event_id="x", value="direct"))
        write_before_commit(session, _writer(effects_table, calls), {"event_id": "e", "value": "queued"})
        with pytest.raises(RuntimeError, match="not written before the commit"):
            await session.commit()
    assert calls == []
    assert await _values(db, effects_table) == []
