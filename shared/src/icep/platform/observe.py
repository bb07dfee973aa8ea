"""What operators alert on, observed apart from the work it describes.

The loops here run beside the relay and the consumer in every service process (see `icep.platform.app`):
they keep their gauges moving while the work itself is stuck. A relay blocked on a broker outage, or a
consumer that is stopped or disabled, cannot report how far behind it is; a separate observer can.

- `observe_dependencies`: `icep_dependency_up{dependency=database|kafka}`, one log line per change;
- `OutboxObserver`: `icep_outbox_backlog` and `icep_outbox_oldest_age_seconds` from the outbox table;
- `observe_consumer_lag`: `icep_consumer_lag{group,topic,partition}` from the group's committed offsets and
  the partitions' end offsets (an admin client, not the group's own consumer);
- `build_info`: `icep_build_info{service,version,revision}`.

Labels never carry ids: services, groups, topics, partitions and fixed words only.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import sqlalchemy as sa
from prometheus_client import Gauge

from icep.platform.aio import wait_event, within
from icep.platform.kafka import kafka_reachable
from icep.platform.logs import kafka_client

log = logging.getLogger("icep.observe")

BUILD_INFO = Gauge("icep_build_info", "Always 1: the running build", ["service", "version", "revision"])
DEPENDENCY_UP = Gauge(
    "icep_dependency_up", "1 when the dependency answers, else 0", ["service", "dependency"]
)
LEADER = Gauge("icep_leader", "1 while this process leads the role, 0 on standby", ["service", "role"])
CONSUMER_LAG = Gauge(
    "icep_consumer_lag", "Records behind the partition's end offset", ["group", "topic", "partition"]
)
OUTBOX_BACKLOG = Gauge("icep_outbox_backlog", "Outbox rows not yet acknowledged by Kafka", ["service"])
OUTBOX_AGE = Gauge("icep_outbox_oldest_age_seconds", "Age of the oldest unsent outbox row", ["service"])
OUTBOX_PARKED = Gauge(
    "icep_outbox_parked", "Outbox rows parked by an operator (not published until retried)", ["service"]
)

#: Where a deployment names the source revision it was built from (a commit id); "unknown" without it.
REVISION_VARIABLE = "ICEP_BUILD_REVISION"


def build_version(service: str) -> str:
    """The installed version of the service's distribution (`icep-<service>`), else of the platform."""
    for distribution in (f"icep-{service}", "icep-platform"):
        with suppress(metadata.PackageNotFoundError):
            return metadata.version(distribution)
    return "unknown"


def build_info(service: str, environ: Mapping[str, str] = os.environ) -> tuple[str, str]:
    """Set `icep_build_info` for this process; returns (version, revision)."""
    version = build_version(service)
    revision = environ.get(REVISION_VARIABLE, "").strip() or "unknown"
    BUILD_INFO.labels(service, version, revision).set(1)
    return version, revision


def set_leader(service: str, role: str, leading: bool) -> None:
    LEADER.labels(service, role).set(1 if leading else 0)


def age_seconds(oldest: datetime | None, now: datetime) -> float:
    """Seconds since `oldest` (naive times are UTC, as the platform stores them); 0 without one."""
    if oldest is None:
        return 0.0
    if oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    return max(0.0, (now - oldest).total_seconds())


def partition_lag(
    ends: Mapping[Any, int], committed: Mapping[Any, int | None], beginnings: Mapping[Any, int]
) -> dict[Any, int]:
    """Records behind per partition: the end offset minus the committed one. A partition the group has
    never committed is read from its beginning (the consumers' `auto_offset_reset=earliest`)."""
    lag: dict[Any, int] = {}
    for tp, end in ends.items():
        position = committed.get(tp)
        if position is None or position < 0:
            position = beginnings.get(tp, 0)
        lag[tp] = max(0, end - position)
    return lag


class Transitions:
    """One log line when a condition changes (down, up again), not one per look."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.state: bool | None = None

    def note(self, up: bool, detail: str = "") -> bool:
        """Record the state; True when it changed (the first look counts as a change only when down)."""
        before, self.state = self.state, up
        if before == up or (before is None and up):
            return False
        if up:
            log.info("%s is reachable again", self.what)
        else:
            log.warning("%s is unreachable%s", self.what, f" ({detail})" if detail else "")
        return True


async def observe_dependencies(
    service: str,
    checks: Mapping[str, Callable[[], Awaitable[bool]]],
    interval: float,
    into: dict[str, bool],
) -> None:
    """Refresh `icep_dependency_up` (and `into`, which readiness reports) every `interval` seconds."""
    transitions = {name: Transitions(f"{service}: {name}") for name in checks}
    while True:
        for name, check in checks.items():
            try:
                up = bool(await within(2.0, check()))
            except Exception:
                up = False
            into[name] = up
            DEPENDENCY_UP.labels(service, name).set(1 if up else 0)
            transitions[name].note(up)
        await asyncio.sleep(interval)


def kafka_check(bootstrap: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await kafka_reachable(bootstrap)

    return check


class OutboxObserver:
    """Counts the unsent outbox rows and the age of the oldest every `interval` seconds, and soon after a
    wake-up (a commit, a publish round that sent rows), at most once per `min_gap` seconds."""

    def __init__(self, sessions: Any, outbox: sa.Table, service: str, interval: float) -> None:
        self.sessions = sessions
        self.outbox = outbox
        self.service = service
        self.interval = interval
        self.min_gap = min(interval, 1.0)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def observe(self) -> tuple[int, float]:
        async with self.sessions() as session:
            # Parked rows wait for an operator, not for the relay: counted apart, not as backlog.
            parked_now = self.outbox.c.parked_at.is_not(None)
            count, parked, oldest = (
                await session.execute(
                    sa.select(
                        sa.func.count().filter(~parked_now),
                        sa.func.count().filter(parked_now),
                        sa.func.min(sa.case((~parked_now, self.outbox.c.created_at))),
                    ).where(self.outbox.c.sent_at.is_(None))
                )
            ).one()
        age = age_seconds(oldest, datetime.now(UTC))
        OUTBOX_BACKLOG.labels(self.service).set(count)
        OUTBOX_PARKED.labels(self.service).set(parked)
        OUTBOX_AGE.labels(self.service).set(age)
        return int(count), age

    async def run(self) -> None:
        failing = Transitions(f"{self.service}: outbox observation (database)")
        while True:
            try:
                await self.observe()
                failing.note(True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failing.note(False, type(exc).__name__)
            await asyncio.sleep(self.min_gap)
            await wait_event(self._wake, self.interval - self.min_gap)
            self._wake.clear()


class LagObserver:
    """`icep_consumer_lag` for one group: committed offsets (admin client) against end offsets (a
    group-less consumer that only asks for offsets). Works while the group's consumer is stopped,
    stuck or disabled, as long as the broker answers."""

    def __init__(self, bootstrap: str, group: str, topics: list[str]) -> None:
        self.bootstrap = bootstrap
        self.group = group
        self.topics = topics
        self._admin: Any = None
        self._offsets: Any = None

    async def _clients(self) -> tuple[Any, Any]:
        # Named for the outage log (`icep.platform.logs`): the tasks these clients start carry the name.
        token = kafka_client.set(f"lag observer {self.group}")
        try:
            return await self._start_clients()
        finally:
            kafka_client.reset(token)

    async def _start_clients(self) -> tuple[Any, Any]:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        if self._admin is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.bootstrap, client_id=f"{self.group}-lag", request_timeout_ms=5000
            )
            try:
                await admin.start()
            except BaseException:
                with suppress(Exception):
                    await admin.close()
                raise
            self._admin = admin
        if self._offsets is None:
            offsets = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id=f"{self.group}-lag",
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=5000,
            )
            try:
                await offsets.start()
            except BaseException:
                with suppress(Exception):
                    await offsets.stop()
                raise
            self._offsets = offsets
        return self._admin, self._offsets

    async def close(self) -> None:
        admin, self._admin = self._admin, None
        offsets, self._offsets = self._offsets, None
        if admin is not None:
            with suppress(Exception):
                await admin.close()
        if offsets is not None:
            with suppress(Exception):
                await offsets.stop()

    async def observe(self) -> dict[tuple[str, int], int]:
        from aiokafka import TopicPartition
        from aiokafka.errors import GroupCoordinatorNotAvailableError

        admin, offsets = await self._clients()
        tps = []
        for described in await admin.describe_topics(self.topics):
            if described.get("error_code", 0):
                continue  # not created yet
            tps += [TopicPartition(described["topic"], p["partition"]) for p in described["partitions"]]
        if not tps:
            return {}
        try:
            offsets_of_group = await admin.list_consumer_group_offsets(self.group)
        except GroupCoordinatorNotAvailableError:
            return {}  # a new cluster still making its offsets topic: nothing to say yet (and nothing wrong)
        committed = {tp: meta.offset for tp, meta in offsets_of_group.items()}
        ends = await offsets.end_offsets(tps)
        beginnings = await offsets.beginning_offsets(tps)
        lag = partition_lag(ends, committed, beginnings)
        for tp, behind in lag.items():
            CONSUMER_LAG.labels(self.group, tp.topic, str(tp.partition)).set(behind)
        return {(tp.topic, tp.partition): behind for tp, behind in lag.items()}

    async def run(self, interval: float) -> None:
        failing = Transitions(f"{self.group}: consumer lag observation (kafka)")
        try:
            while True:
                try:
                    await within(max(10.0, interval), self.observe())
                    failing.note(True)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failing.note(False, type(exc).__name__)
                    await self.close()  # made anew next time: a client of a failed broker may be stuck
                await asyncio.sleep(interval)
        finally:
            await self.close()
