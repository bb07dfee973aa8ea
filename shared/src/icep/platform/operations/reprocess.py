"""Reprocess a consumer group from an offset or a time, after a handler fix; and its lag.

The inbox says which events a group has handled; it is why a record read twice does nothing twice, and
also why a fixed handler would never see an event again. Reprocessing therefore does two things, with the
group's consumers stopped (as `kafka-consumer-groups --reset-offsets` requires; refused otherwise):

1. commits the group's offsets at the chosen position (an offset, or `offsets_for_times` of a time), and
2. deletes the group's inbox rows of the records at or after that position (the inbox keeps each row's
   origin topic, partition and offset; rows older than those columns are matched by `processed_at` for a
   time and not at all for an offset).

When the service starts again each event in the range is handled once more and gets its inbox row again;
any copy of it (a redelivery, another producer's retry) is a duplicate as before. Offsets go first: should
the second step fail, the events are skipped as duplicates (nothing twice) and the command can be run
again. Limit: only events whose inbox rows still exist are guarded, so the inbox retention must cover the
reprocessed range (older events are handled again as new ones would be).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from icep.platform.db import Database
from icep.platform.errors import Conflict, Unprocessable

#: States of a group without members, whose offsets may be moved.
INACTIVE_STATES = frozenset({"Empty", "Dead"})


class GroupActive(Conflict):
    """The group has running consumers: moving its offsets under them would be lost or fought over."""

    title = "Consumer group active"
    slug = "consumer-group-active"


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    #: The group's committed offset; None when it has committed none there.
    committed: int | None
    end: int

    @property
    def lag(self) -> int:
        return self.end - (self.committed if self.committed is not None else 0)


@dataclass(frozen=True)
class PartitionMove:
    topic: str
    partition: int
    committed: int | None
    target: int
    end: int


@dataclass
class ReprocessPlan:
    group: str
    moves: list[PartitionMove]
    #: Inbox rows of the range (with their origin), and older rows without origin that match by time.
    inbox_rows: int = 0
    legacy_rows: int = 0
    from_time: datetime | None = None
    notes: list[str] = field(default_factory=list)


async def group_state(bootstrap: str, group: str) -> tuple[str, int]:
    """The group's state (`Empty`, `Stable`, `Dead`, ...) and its number of members."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    for described in response.groups:
        error_code, group_id, state, members = described[0], described[1], described[2], described[5]
        if group_id == group:
            if error_code:
                raise Unprocessable(f"Kafka could not describe consumer group {group} (error {error_code})")
            return str(state), len(members)
    return "Dead", 0


async def ensure_inactive(bootstrap: str, group: str) -> None:
    state, members = await group_state(bootstrap, group)
    if state not in INACTIVE_STATES or members:
        raise GroupActive(
            f"consumer group {group} is active ({state}, {members} member(s)): stop the service's "
            "consumers first (scale it to 0, or ICEP_<SERVICE>_CONSUMER_ENABLED=false), then run this again",
            state=state,
            members=members,
        )


async def _partitions(admin: AIOKafkaAdminClient, topics: Iterable[str]) -> list[TopicPartition]:
    out: list[TopicPartition] = []
    for described in await admin.describe_topics(list(topics)):
        partitions = sorted(p["partition"] for p in described.get("partitions", []))
        if described.get("error_code") or not partitions:
            raise Unprocessable(f"topic {described.get('topic')} does not exist")
        out += [TopicPartition(described["topic"], p) for p in partitions]
    return out


async def lag(bootstrap: str, group: str, topics: Iterable[str]) -> list[PartitionLag]:
    """Per partition of the group's topics: committed offset, end offset, lag."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        tps = await _partitions(admin, topics)
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
        await admin.close()
    out = []
    for tp in tps:
        mark = committed.get(tp)
        offset = mark.offset if mark is not None and mark.offset >= 0 else None
        out.append(PartitionLag(tp.topic, tp.partition, offset, ends[tp]))
    return out


async def plan_reprocess(
    bootstrap: str,
    db: Database,
    inbox: sa.Table,
    *,
    group: str,
    topics: list[str],
    from_offset: int | None = None,
    from_time: datetime | None = None,
    topic: str | None = None,
    partition: int | None = None,
) -> ReprocessPlan:
    """What `reprocess` would do: the offsets per partition, the inbox rows it would delete."""
    if (from_offset is None) == (from_time is None):
        raise Unprocessable("reprocess from an offset or from a time (one of them)")
    if topic is not None:
        if topic not in topics:
            raise Unprocessable(f"{group} does not consume {topic}; it consumes {', '.join(topics)}")
        topics = [topic]
    elif partition is not None:
        raise Unprocessable("--partition needs --topic")
    if from_offset is not None and from_offset < 0:
        raise Unprocessable("the offset must be 0 or more")
    await ensure_inactive(bootstrap, group)
    lags = {(p.topic, p.partition): p for p in await lag(bootstrap, group, topics)}
    wanted = [k for k in lags if partition is None or k[1] == partition]
    if not wanted:
        raise Unprocessable(f"topic {topic} has no partition {partition}")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t, p in wanted]
        starts = await consumer.beginning_offsets(tps)
        if from_time is not None:
            found = await consumer.offsets_for_times({tp: int(from_time.timestamp() * 1000) for tp in tps})
    finally:
        await consumer.stop()
    moves = []
    for tp in tps:
        here = lags[(tp.topic, tp.partition)]
        if from_offset is not None:
            target = min(max(from_offset, starts[tp]), here.end)
        else:
            at = found.get(tp)
            target = at.offset if at is not None else here.end  # nothing at or after the time
        moves.append(PartitionMove(tp.topic, tp.partition, here.committed, target, here.end))
    plan = ReprocessPlan(group=group, moves=moves, from_time=from_time)
    async with db.sessions() as session:
        plan.inbox_rows = int((await session.execute(_count(_in_range(inbox, plan)))).scalar_one())
        plan.legacy_rows = int((await session.execute(_count(_legacy(inbox, plan)))).scalar_one())
    if from_time is None and plan.legacy_rows:
        plan.notes.append(
            f"{plan.legacy_rows} inbox row(s) of {group} predate the origin columns and cannot be matched to "
            "an offset: events among them are skipped as duplicates (reprocess --from-time to include them)"
        )
    return plan


def _count(where: sa.ColumnElement[bool]) -> sa.Select[tuple[int]]:
    return sa.select(sa.func.count()).where(where)


def _in_range(inbox: sa.Table, plan: ReprocessPlan) -> sa.ColumnElement[bool]:
    return sa.and_(
        inbox.c.consumer == plan.group,
        sa.or_(
            sa.false(),
            *(
                sa.and_(
                    inbox.c.origin_topic == m.topic,
                    inbox.c.origin_partition == m.partition,
                    inbox.c.origin_offset >= m.target,
                )
                for m in plan.moves
            ),
        ),
    )


def _legacy(inbox: sa.Table, plan: ReprocessPlan) -> sa.ColumnElement[bool]:
    where = sa.and_(inbox.c.consumer == plan.group, inbox.c.origin_topic.is_(None))
    if plan.from_time is not None:
        where = sa.and_(where, inbox.c.processed_at >= plan.from_time)
    return where


async def apply_reprocess(bootstrap: str, db: Database, inbox: sa.Table, plan: ReprocessPlan) -> int:
    """Commit the plan's offsets (the group still inactive), then delete its inbox rows. Returns how many
    inbox rows were deleted."""
    await ensure_inactive(bootstrap, plan.group)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=plan.group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = {TopicPartition(m.topic, m.partition): m.target for m in plan.moves}
        consumer.assign(list(tps))
        await consumer.commit(tps)
    finally:
        await consumer.stop()
    where = _in_range(inbox, plan)
    if plan.from_time is not None:
        where = sa.or_(where, _legacy(inbox, plan))
    async with db.transaction() as session:
        result = await session.execute(sa.delete(inbox).where(where))
    return int(getattr(result, "rowcount", 0) or 0)
