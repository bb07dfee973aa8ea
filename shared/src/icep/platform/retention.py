"""Retention: what a service keeps only for a while is purged on a schedule, in bounded batches.

The platform's own rules cover every service with a database: the inbox (rows of handled events, by
`processed_at`, `ICEP_<SVC>_INBOX_RETENTION_DAYS`) and the outbox (rows the broker acknowledged, by
`sent_at`, `ICEP_<SVC>_OUTBOX_RETENTION_HOURS`; unsent and parked rows are never purged). A service adds its
own (`ServiceSpec.retention`: notifications purges finished webhook deliveries and the event log).

One supervised loop per service (`keep`) runs every rule every `ICEP_<SVC>_RETENTION_PURGE_SECONDS`; on
PostgreSQL only the replica holding the `icep-retention-<service>` advisory lock does (the others would
only race it for the same rows). Each batch is its own short transaction, so a purge never holds locks
long nor blocks the writers of the service. `icep retention purge <service> [--dry-run]` runs the same
rules once. Every row deleted counts in `icep_retention_purged_total{service,table}`.

Why the inbox must outlive the topics: the inbox row is what tells a redelivered event from a new one. If
it is purged while Kafka can still deliver the event again (a consumer group reset, a reprocess, a
rebalance after a long stall), the handler runs twice. Settings refuse an inbox retention that is not
longer than `ICEP_KAFKA_TOPIC_RETENTION_HOURS` (Kafka's default: 168 hours), and the loop asks the broker
once at start for the subscribed topics' real `retention.ms` and warns when one keeps records as long as
the inbox keeps its rows, or longer (or forever).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from prometheus_client import Counter

from icep.platform.aio import within
from icep.platform.db import Database, LeaderLock
from icep.platform.events import utcnow
from icep.platform.settings import ServiceSettings
from icep.platform.tables import PlatformTables

if TYPE_CHECKING:
    from icep.platform.app import Runtime

log = logging.getLogger("icep.retention")

RETENTION_PURGED = Counter(
    "icep_retention_purged_total", "Rows deleted by the retention purge", ["service", "table"]
)

#: Purge(db, cutoff, batch size, dry run) -> rows deleted (or, dry, that would be) per table.
Purge = Callable[[Database, datetime, int, bool], Awaitable[Mapping[str, int]]]


@dataclass(frozen=True)
class RetentionRule:
    """Rows of `table` older than `keep_for(settings)` are purged by `purge` (with rows of `also`, which
    go with them, such as a delivery's attempts)."""

    table: str
    keep_for: Callable[[ServiceSettings], timedelta]
    purge: Purge
    also: tuple[str, ...] = ()


async def delete_in_batches(
    db: Database,
    table: sa.Table,
    condition: sa.ColumnElement[bool],
    *,
    batch_size: int,
    dry_run: bool = False,
    key: Sequence[str] | None = None,
) -> int:
    """Delete the rows meeting `condition`, `batch_size` at a time, each batch in its own transaction;
    how many. `dry_run` only counts them."""
    if dry_run:
        async with db.sessions() as session:
            return int((await session.execute(sa.select(sa.func.count()).where(condition))).scalar_one())
    columns = [table.c[name] for name in (key or [c.name for c in table.primary_key.columns])]
    target = columns[0] if len(columns) == 1 else sa.tuple_(*columns)
    deleted = 0
    while True:
        async with db.transaction() as session:
            batch = sa.select(*columns).where(condition).limit(batch_size)
            result = await session.execute(sa.delete(table).where(target.in_(batch)))
            count = int(getattr(result, "rowcount", 0) or 0)
        deleted += count
        if count < batch_size:
            return deleted


def inbox_rule(tables: PlatformTables) -> RetentionRule:
    inbox = tables.inbox

    async def purge(db: Database, cutoff: datetime, batch: int, dry_run: bool) -> Mapping[str, int]:
        condition = inbox.c.processed_at < cutoff
        return {"inbox": await delete_in_batches(db, inbox, condition, batch_size=batch, dry_run=dry_run)}

    return RetentionRule("inbox", lambda s: timedelta(days=s.inbox_retention_days), purge)


async def purge_sent_outbox_rows(
    db: Database, outbox: sa.Table, cutoff: datetime, batch: int = 1000, dry_run: bool = False
) -> int:
    """Rows the broker acknowledged before `cutoff`; an unsent row (parked or not) is never purged."""
    condition = sa.and_(outbox.c.sent_at.is_not(None), outbox.c.sent_at < cutoff)
    return await delete_in_batches(db, outbox, condition, batch_size=batch, dry_run=dry_run, key=["position"])


def outbox_rule(tables: PlatformTables) -> RetentionRule:
    outbox = tables.outbox

    async def purge(db: Database, cutoff: datetime, batch: int, dry_run: bool) -> Mapping[str, int]:
        return {"outbox": await purge_sent_outbox_rows(db, outbox, cutoff, batch, dry_run)}

    return RetentionRule("outbox", lambda s: timedelta(hours=s.outbox_retention_hours), purge)


def rules_for(tables: PlatformTables | None, extra: Sequence[RetentionRule] = ()) -> list[RetentionRule]:
    """The platform's rules for a service's tables, then the service's own."""
    platform = [inbox_rule(tables), outbox_rule(tables)] if tables is not None else []
    return [*platform, *extra]


@dataclass(frozen=True)
class Purged:
    rule: str
    cutoff: datetime
    #: Table -> rows deleted (or, dry, that would be).
    rows: Mapping[str, int]


async def purge_once(
    db: Database,
    service: str,
    settings: ServiceSettings,
    rules: Sequence[RetentionRule],
    *,
    dry_run: bool = False,
) -> list[Purged]:
    """Run every rule once: what each deleted (or, dry, would delete). A failing rule does not stop the
    others; its error is raised after them."""
    done: list[Purged] = []
    failure: Exception | None = None
    for rule in rules:
        cutoff = utcnow() - rule.keep_for(settings)
        try:
            rows = await rule.purge(db, cutoff, settings.retention_batch_size, dry_run)
        except Exception as exc:
            log.exception("purging %s of %s failed", rule.table, service)
            failure = failure or exc
            continue
        done.append(Purged(rule.table, cutoff, rows))
        for table, count in rows.items():
            if not dry_run and count:
                RETENTION_PURGED.labels(service, table).inc(count)
                log.info("purged %d %s rows of %s older than %s", count, table, service, cutoff.isoformat())
    if failure is not None:
        raise failure
    return done


async def topic_retention_hours(bootstrap: str, topics: Sequence[str]) -> dict[str, float | None]:
    """The topics' `retention.ms` from the broker, in hours (None: kept forever, `-1`)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t, {"retention.ms": None}) for t in topics]
        )
    finally:
        await admin.close()
    found: dict[str, float | None] = {}
    for response in responses:
        for _error, _message, _type, name, entries in response.resources:
            for entry in entries:
                if entry[0] == "retention.ms" and entry[1] is not None:
                    ms = int(entry[1])
                    found[name] = None if ms < 0 else ms / 3_600_000
    return found


async def check_inbox_outlives_topics(bootstrap: str, topics: Sequence[str], inbox_days: float) -> list[str]:
    """Warnings (also logged) for each topic that keeps records as long as the inbox keeps its rows, or
    longer: a record redelivered after its inbox row was purged would be handled a second time."""
    warnings = []
    for topic, hours in sorted((await topic_retention_hours(bootstrap, topics)).items()):
        if hours is None or hours >= inbox_days * 24:
            kept = "forever" if hours is None else f"{hours:g} hours"
            warnings.append(
                f"topic {topic} keeps records {kept}, the inbox its rows {inbox_days:g} days: an event "
                "redelivered after that would be handled twice; raise the inbox retention"
            )
    for warning in warnings:
        log.warning("%s", warning)
    return warnings


async def keep(runtime: Runtime) -> None:
    """Background loop of a service: purge past retention every `retention_purge_seconds`, on the leader."""
    db = runtime.db
    assert db is not None
    settings = runtime.settings
    service = settings.service_name
    rules = rules_for(runtime.spec.tables, runtime.spec.retention)
    for rule in rules:
        for table in (rule.table, *rule.also):
            RETENTION_PURGED.labels(service, table)  # present at 0 from the start
    spec = runtime.spec
    if spec.uses_kafka and spec.subscribe_topics and spec.tables is not None:
        try:
            topics = [settings.topic_name(t) for t in spec.subscribe_topics]
            await within(
                30,
                check_inbox_outlives_topics(
                    settings.kafka_bootstrap_servers, topics, settings.inbox_retention_days
                ),
            )
        except Exception:  # the broker may be down at start: the settings' check stands
            log.info("could not ask the broker for the topics' retention", exc_info=True)
    leadership = LeaderLock(db, f"icep-retention-{service}")
    try:
        while True:
            try:
                if await leadership.hold():
                    await purge_once(db, service, settings, rules)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("the retention purge of %s failed; trying again later", service, exc_info=True)
            await asyncio.sleep(settings.retention_purge_seconds)
    finally:
        await leadership.release()
