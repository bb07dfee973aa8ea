"""A consuming service's dead letters: the records its consumer group gave up on.

Lifecycle of a row of `dead_letters` (one per group and event):

- **waiting**: the consumer dead-lettered the record. It sent it to `icep.dlq.<group>` first (the durable
  copy, which keeps its own Kafka retention), then wrote this row, then logged it once, and only then moved
  its offset on (`record`).
- **redriven**: an operator sent the original record (key, value, headers) again to its origin topic with an
  `icep_redrive: <dead letter id>` header (`DeadLetters.redrive`). The group's handler runs again: its
  failed attempts rolled back, so it has no inbox row for the event and the inbox lets it through once;
  every other group on that topic has one and skips it as a duplicate.
- **resolved**: the consumer handled the redriven record; it marks the row in the same transaction as the
  inbox row (`resolve`). Should the handler fail again the record is dead-lettered again and the row goes
  back to **waiting** with the new error and attempts (its redrive count kept).

Purging deletes rows only; nothing here deletes records from Kafka.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncSession

from icep.platform.aio import within
from icep.platform.db import Database, insert_ignore
from icep.platform.errors import Conflict, DomainError, NotFound, Unprocessable
from icep.platform.events import utcnow
from icep.platform.ids import new_id
from icep.platform.kafka import new_producer
from icep.platform.logs import kafka_client
from icep.platform.tables import DEAD_LETTER_STATUSES

log = logging.getLogger("icep.operations")

#: The header a redriven record carries: the id of its dead letter.
REDRIVE_HEADER = "icep_redrive"
#: The consumer group a redriven record is for: the origin topic is shared, and every other group that reads
#: it ignores the copy (its inbox may no longer remember the event once inbox retention has passed).
REDRIVE_GROUP_HEADER = "icep_redrive_group"
#: Headers the consumer adds to a dead-letter record (error, attempts, origin); never sent back.
DLQ_HEADER_PREFIX = "icep_dlq_"

WAITING = "waiting"
REDRIVEN = "redriven"
RESOLVED = "resolved"

DEAD_LETTERS_WAITING = Gauge(
    "icep_dead_letters_waiting",
    "Dead letters waiting for an operator (redrive or purge), per dead-letter topic",
    ["service", "topic"],
)


class KafkaUnavailable(DomainError):
    """The broker did not take the redriven record in time: nothing changed, try again later."""

    status = 503
    title = "Service unavailable"
    slug = "unavailable"


def kept_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> list[tuple[str, bytes]]:
    """A record's own headers: without the dead-letter headers and without an earlier redrive mark."""
    return [
        (k, v)
        for k, v in (headers or ())
        if v is not None
        and not k.startswith(DLQ_HEADER_PREFIX)
        and k not in (REDRIVE_HEADER, REDRIVE_GROUP_HEADER)
    ]


def headers_to_json(headers: Sequence[tuple[str, bytes]]) -> list[dict[str, str]]:
    """Headers as JSON: text when the value is UTF-8 (all of the platform's), else base64."""
    out: list[dict[str, str]] = []
    for name, value in headers:
        try:
            out.append({"name": name, "value": value.decode()})
        except UnicodeDecodeError:
            out.append({"name": name, "base64": base64.b64encode(value).decode()})
    return out


def headers_from_json(headers: Sequence[dict[str, str]]) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for header in headers:
        if "value" in header:
            out.append((header["name"], header["value"].encode()))
        else:
            out.append((header["name"], base64.b64decode(header["base64"])))
    return out


def header(headers: Sequence[tuple[str, bytes]], name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode(errors="replace")
    return None


@dataclass(frozen=True)
class Origin:
    topic: str
    partition: int
    offset: int


async def record(
    session: AsyncSession,
    table: sa.Table,
    *,
    group: str,
    event_id: str,
    event_type: str | None,
    owner_nation: str | None,
    origin: Origin,
    dead_letter: Origin,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
    error: str,
    attempts: int,
) -> str:
    """Write the dead letter of `event_id` for `group`; a second one of the same event (it failed again
    after a redrive, or the consumer restarted before its offset moved) updates the row back to waiting,
    its redrive count kept. Returns the row's id."""
    now = utcnow()
    changing: dict[str, Any] = {
        "event_type": event_type,
        "owner_nation": owner_nation,
        "origin_topic": origin.topic,
        "origin_partition": origin.partition,
        "origin_offset": origin.offset,
        "dlq_topic": dead_letter.topic,
        "dlq_partition": dead_letter.partition,
        "dlq_offset": dead_letter.offset,
        "error": error,
        "attempts": attempts,
        "dead_lettered_at": now,
        "status": WAITING,
    }
    row_id = new_id()
    inserted = await insert_ignore(
        session,
        table,
        {
            "id": row_id,
            "consumer": group,
            "event_id": event_id,
            "record_key": key,
            "record_value": value,
            "headers": headers_to_json(headers),
            "redrive_count": 0,
            **changing,
        },
    )
    mine = (table.c.consumer == group) & (table.c.event_id == event_id)
    if not inserted:
        await session.execute(sa.update(table).where(mine).values(**changing))
        row_id = (await session.execute(sa.select(table.c.id).where(mine))).scalar_one()
    return row_id


async def resolve(session: AsyncSession, table: sa.Table, group: str, dead_letter_id: str) -> None:
    """In the consumer's transaction of a redriven record it handled: its dead letter is resolved."""
    await session.execute(
        sa.update(table)
        .where((table.c.id == dead_letter_id) & (table.c.consumer == group) & (table.c.status != RESOLVED))
        .values(status=RESOLVED, resolved_at=utcnow())
    )


async def refresh_gauge(db: Database, table: sa.Table, service: str, topics: Iterable[str] = ()) -> None:
    """Set `icep_dead_letters_waiting` from the table (0 for a known topic without waiting rows)."""
    async with db.sessions() as session:
        rows = (
            await session.execute(
                sa.select(table.c.dlq_topic, sa.func.count())
                .where(table.c.status == WAITING)
                .group_by(table.c.dlq_topic)
            )
        ).all()
    counts = dict.fromkeys(topics, 0) | {str(topic): int(n) for topic, n in rows}
    for topic, n in counts.items():
        DEAD_LETTERS_WAITING.labels(service, topic).set(n)


async def keep_gauge_fresh(
    db: Database, table: sa.Table, service: str, topics: Iterable[str], seconds: float
) -> None:
    """The gauge also moves when someone else (the CLI, another replica) redrives or purges."""
    topics = list(topics)
    while True:
        try:
            await refresh_gauge(db, table, service, topics)
        except Exception as exc:  # the database is away: the next round tries again
            log.warning("could not count the dead letters waiting (%s)", exc)
        await asyncio.sleep(seconds)


@dataclass(frozen=True)
class DeadLetterQuery:
    status: str | None = None
    event_type: str | None = None
    #: Only the dead letters of events this nation owns (a nation's operators); None: all of them.
    owner_nation: str | None = None
    cursor: str | None = None
    limit: int = 50


class DeadLetters:
    """The dead letters of one service's consumer group, for operators."""

    def __init__(
        self,
        db: Database,
        table: sa.Table,
        *,
        group: str,
        service: str,
        bootstrap: str,
        dlq_topic: str,
        send_timeout: float = 20.0,
    ) -> None:
        self.db = db
        self.table = table
        self.group = group
        self.service = service
        self.bootstrap = bootstrap
        self.dlq_topic = dlq_topic
        self.send_timeout = send_timeout

    def _where(self, query: DeadLetterQuery) -> sa.ColumnElement[bool]:
        t = self.table
        where: sa.ColumnElement[bool] = t.c.consumer == self.group
        if query.status is not None:
            if query.status not in DEAD_LETTER_STATUSES:
                raise Unprocessable(
                    f"status must be one of {', '.join(DEAD_LETTER_STATUSES)}", parameter="status"
                )
            where &= t.c.status == query.status
        if query.event_type is not None:
            where &= t.c.event_type == query.event_type
        if query.owner_nation is not None:
            where &= t.c.owner_nation == query.owner_nation
        return where

    async def query(self, query: DeadLetterQuery) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; the cursor is the last id of the page."""
        t = self.table
        stmt = sa.select(t).where(self._where(query)).order_by(t.c.id.desc()).limit(query.limit + 1)
        if query.cursor:
            stmt = stmt.where(t.c.id < query.cursor)
        async with self.db.sessions() as session:
            rows = [dict(r._mapping) for r in (await session.execute(stmt)).all()]
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        return rows, (rows[-1]["id"] if more and rows else None)

    async def get(self, dead_letter_id: str, owner_nation: str | None = None) -> dict[str, Any]:
        where = self._where(DeadLetterQuery(owner_nation=owner_nation)) & (self.table.c.id == dead_letter_id)
        async with self.db.sessions() as session:
            row = (await session.execute(sa.select(self.table).where(where))).first()
        if row is None:
            raise NotFound(f"no dead letter {dead_letter_id} in {self.service}")
        return dict(row._mapping)

    async def redrive(self, dead_letter_id: str, owner_nation: str | None = None) -> dict[str, Any]:
        """Send the record again to its origin topic. A resolved dead letter is refused (409): the
        consumer has handled it. A redriven one may be sent again (the inbox makes a copy harmless)."""
        row = await self.get(dead_letter_id, owner_nation)
        if row["status"] == RESOLVED:
            raise Conflict(
                f"dead letter {dead_letter_id} is resolved: its event has been handled",
                current_state=RESOLVED,
            )
        producer = await self._producer()
        try:
            return await self._redrive(producer, row)
        finally:
            await producer.stop()

    async def redrive_all(
        self, *, event_type: str | None = None, owner_nation: str | None = None, status: str = WAITING
    ) -> list[dict[str, Any]]:
        """Redrive every dead letter with `status` (waiting by default; never resolved ones)."""
        if status == RESOLVED:
            raise Conflict("resolved dead letters have been handled; they are not redriven")
        query = DeadLetterQuery(status=status, event_type=event_type, owner_nation=owner_nation)
        async with self.db.sessions() as session:
            rows = [
                dict(r._mapping)
                for r in (
                    await session.execute(
                        sa.select(self.table).where(self._where(query)).order_by(self.table.c.id)
                    )
                ).all()
            ]
        if not rows:
            return []
        producer = await self._producer()
        try:
            return [await self._redrive(producer, row) for row in rows]
        finally:
            await producer.stop()

    async def _producer(self) -> AIOKafkaProducer:
        producer = new_producer(self.bootstrap, f"{self.group}-redrive")
        try:
            token = kafka_client.set(f"dead-letter redrive {self.group}")  # named for the outage log
            try:
                await within(self.send_timeout, producer.start())
            finally:
                kafka_client.reset(token)
        except (KafkaError, OSError, TimeoutError) as exc:
            await producer.stop()
            raise KafkaUnavailable(
                f"Kafka is not reachable ({type(exc).__name__}); nothing redriven"
            ) from exc
        return producer

    async def _redrive(self, producer: AIOKafkaProducer, row: dict[str, Any]) -> dict[str, Any]:
        t = self.table
        previous = row["status"]
        now = utcnow()
        # Marked before the send: the consumer may handle the record (and resolve the row) before the send
        # returns here, and that must not be written over.
        async with self.db.transaction() as session:
            await session.execute(
                sa.update(t)
                .where(t.c.id == row["id"])
                .values(status=REDRIVEN, redriven_at=now, redrive_count=t.c.redrive_count + 1)
            )
        headers = [
            *headers_from_json(row["headers"]),
            (REDRIVE_HEADER, row["id"].encode()),
            (REDRIVE_GROUP_HEADER, row["consumer"].encode()),
        ]
        try:
            metadata = await within(
                self.send_timeout,
                producer.send_and_wait(
                    row["origin_topic"], value=row["record_value"], key=row["record_key"], headers=headers
                ),
            )
        except (KafkaError, OSError, TimeoutError) as exc:
            async with self.db.transaction() as session:
                await session.execute(
                    sa.update(t)
                    .where((t.c.id == row["id"]) & (t.c.status == REDRIVEN))
                    .values(status=previous, redrive_count=t.c.redrive_count - 1)
                )
            raise KafkaUnavailable(
                f"Kafka did not take the record of dead letter {row['id']} ({type(exc).__name__})"
            ) from exc
        log.info(
            "redrove dead letter %s (event %s, %s) to %s[%d]@%d",
            row["id"],
            row["event_id"],
            row["event_type"],
            metadata.topic,
            metadata.partition,
            metadata.offset,
        )
        await self.refresh_gauge()
        return await self.get(row["id"])

    async def purge(
        self,
        *,
        dead_letter_id: str | None = None,
        status: str | None = None,
        everything: bool = False,
        owner_nation: str | None = None,
    ) -> int:
        """Delete rows: one, those with a status, or all. The Kafka topic keeps its copies."""
        if sum((dead_letter_id is not None, status is not None, everything)) != 1:
            raise Unprocessable("purge one dead letter, those with a status, or all of them")
        where = self._where(DeadLetterQuery(status=status, owner_nation=owner_nation))
        if dead_letter_id is not None:
            where &= self.table.c.id == dead_letter_id
        async with self.db.transaction() as session:
            result = await session.execute(sa.delete(self.table).where(where))
        deleted = int(getattr(result, "rowcount", 0) or 0)
        if dead_letter_id is not None and deleted == 0:
            raise NotFound(f"no dead letter {dead_letter_id} in {self.service}")
        await self.refresh_gauge()
        return deleted

    async def refresh_gauge(self) -> None:
        await refresh_gauge(self.db, self.table, self.service, [self.dlq_topic])


def payload_text(value: bytes | None) -> str:
    """The record's value for people: pretty JSON when it is JSON, else text, else base64."""
    import json

    if value is None:
        return "null"
    try:
        return json.dumps(json.loads(value), indent=2, ensure_ascii=False)
    except ValueError:
        pass
    try:
        return value.decode()
    except UnicodeDecodeError:
        return base64.b64encode(value).decode()


def key_text(key: bytes | None) -> str | None:
    if key is None:
        return None
    try:
        return key.decode()
    except UnicodeDecodeError:
        return base64.b64encode(key).decode()


def when(value: datetime | None) -> str:
    return "" if value is None else value.isoformat(timespec="seconds")
