"""The retention purge of the platform's tables on a real database: exactly the old handled inbox rows and
the old sent outbox rows go, in bounded batches, never an unsent or parked row; a dry run deletes nothing;
the counter counts what went; the settings refuse an inbox that would forget before Kafka does."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import REGISTRY
from pydantic import ValidationError

from icep.platform import retention
from icep.platform.db import Database
from icep.platform.events import utcnow
from icep.platform.ids import new_id
from icep.platform.settings import ServiceSettings
from icep.platform.tables import PlatformTables


def outbox_row(key: str, *, sent_hours_ago: float | None, parked: bool = False) -> dict[str, Any]:
    now = utcnow()
    return {
        "id": new_id(),
        "topic": "icep.test.events",
        "key": key,
        "type": "icep.test.thing.bumped.v1",
        "source": "/icep/test",
        "time": now,
        "nation": "DEU",
        "releasable_to": "ALLIES",
        "data": "{}",
        "created_at": now - timedelta(days=30),
        "sent_at": None if sent_hours_ago is None else now - timedelta(hours=sent_hours_ago),
        "parked_at": now - timedelta(days=29) if parked else None,
        "parked_reason": "poison" if parked else None,
    }


def purged(service: str, table: str) -> float:
    value = REGISTRY.get_sample_value("icep_retention_purged_total", {"service": service, "table": table})
    return value or 0.0


async def keys(db: Database, table: sa.Table, column: str) -> list[str]:
    async with db.sessions() as s:
        return sorted((await s.execute(sa.select(table.c[column]))).scalars().all())


async def test_only_old_handled_inbox_and_old_sent_outbox_rows_go_in_batches(
    db: Database, tables: PlatformTables
) -> None:
    now = utcnow()
    async with db.transaction() as s:
        await s.execute(
            sa.insert(tables.outbox),
            [outbox_row(f"old{i}", sent_hours_ago=48) for i in range(5)]
            + [
                outbox_row("recent", sent_hours_ago=2),
                outbox_row("unsent", sent_hours_ago=None),
                outbox_row("parked", sent_hours_ago=None, parked=True),
            ],
        )
        await s.execute(
            sa.insert(tables.inbox),
            [
                {
                    "consumer": "icep-test",
                    "event_id": f"old{i}",
                    "event_type": "t",
                    "processed_at": now - timedelta(days=20),
                }
                for i in range(3)
            ]
            + [{"consumer": "icep-test", "event_id": "new", "event_type": "t", "processed_at": now}],
        )
    settings = ServiceSettings(
        service_name="rtest", inbox_retention_days=14, outbox_retention_hours=24, retention_batch_size=2
    )
    rules = retention.rules_for(tables)
    dry = await retention.purge_once(db, "rtest", settings, rules, dry_run=True)
    assert {t: n for p in dry for t, n in p.rows.items()} == {"inbox": 3, "outbox": 5}
    assert len(await keys(db, tables.outbox, "key")) == 8  # a dry run deletes nothing
    assert purged("rtest", "outbox") == 0

    done = await retention.purge_once(db, "rtest", settings, rules)
    assert {t: n for p in done for t, n in p.rows.items()} == {"inbox": 3, "outbox": 5}
    assert await keys(db, tables.outbox, "key") == ["parked", "recent", "unsent"]
    assert await keys(db, tables.inbox, "event_id") == ["new"]
    assert (purged("rtest", "inbox"), purged("rtest", "outbox")) == (3, 5)

    again = await retention.purge_once(db, "rtest", settings, rules)
    assert {t: n for p in again for t, n in p.rows.items()} == {"inbox": 0, "outbox": 0}


async def test_batches_are_bounded(db: Database, tables: PlatformTables) -> None:
    """Each batch deletes at most `batch_size` rows in its own transaction (seen by counting statements)."""
    async with db.transaction() as s:
        await s.execute(sa.insert(tables.outbox), [outbox_row(f"k{i}", sent_hours_ago=48) for i in range(7)])
    statements: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            statements.append(statement)

    sa.event.listen(db.engine.sync_engine, "before_cursor_execute", note)
    try:
        deleted = await retention.delete_in_batches(
            db, tables.outbox, tables.outbox.c.sent_at.is_not(None), batch_size=3, key=["position"]
        )
    finally:
        sa.event.remove(db.engine.sync_engine, "before_cursor_execute", note)
    assert deleted == 7
    assert len(statements) == 3  # 3 + 3 + 1


async def test_the_broker_is_asked_whether_a_topic_outlives_the_inbox(kafka_bootstrap: str) -> None:
    short, long = f"icep.test-{new_id()[-8:]}.short", f"icep.test-{new_id()[-8:]}.long"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(short, 1, 1, topic_configs={"retention.ms": str(7 * 24 * 3_600_000)}),
                NewTopic(long, 1, 1, topic_configs={"retention.ms": "-1"}),
            ]
        )
    finally:
        await admin.close()
    assert await retention.topic_retention_hours(kafka_bootstrap, [short, long]) == {short: 168.0, long: None}
    warnings = await retention.check_inbox_outlives_topics(kafka_bootstrap, [short, long], inbox_days=14)
    assert len(warnings) == 1 and long in warnings[0] and "forever" in warnings[0]
    assert len(await retention.check_inbox_outlives_topics(kafka_bootstrap, [short], inbox_days=7)) == 1


def test_the_inbox_must_outlive_the_topics() -> None:
    with pytest.raises(ValidationError, match="inbox retention"):
        ServiceSettings(inbox_retention_days=7, kafka_topic_retention_hours=168)
    assert ServiceSettings(inbox_retention_days=8, kafka_topic_retention_hours=168).inbox_retention_days == 8
