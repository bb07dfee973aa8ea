"""The transactional outbox: a use case writes its domain rows and its events in ONE transaction
(`UnitOfWork`); `icep.platform.relay` publishes the rows afterwards.

Events a use case raises are written to the service's outbox table when its unit of work commits, with
the trace context of the request, the releasability marking and the aggregate's key; the same commit
wakes the relay (in every replica: `icep.platform.wakeups`). A consumer's handler joins the consumer's
transaction instead (`joined_unit_of_work`), so the events it raises commit with its inbox row.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from icep.platform.db import Database, begin_write
from icep.platform.domain import Aggregate, DomainEvent
from icep.platform.events import OutgoingEvent, utcnow
from icep.platform.telemetry import (
    current_trace_headers,
)


class EventMapper(Protocol):
    """A service's `events.py`: the published events (contract payload, subject, releasability) that one
    domain event of an aggregate stands for; none for a change that is the owner's business alone."""

    def __call__(self, aggregate: Any, event: DomainEvent, /) -> Iterable[OutgoingEvent]: ...


class UnitOfWork:
    """One transaction around a use case: domain rows plus the events it raises.

    Usage: `async with uow() as tx: ...; tx.collect(changed_aggregate)` (a repository's `save` does it),
    or `tx.publish(event)` for an event no aggregate records. On success the transaction commits and the
    relay is woken; on error nothing is written, neither rows nor events.
    """

    def __init__(
        self,
        session: AsyncSession,
        outbox: sa.Table,
        source: str,
        topic: str,
        mapper: EventMapper | None = None,
    ) -> None:
        self.session = session
        self._outbox = outbox
        self._source = source
        self._topic = topic
        self._mapper = mapper
        #: What `collect` published, by identity. The events themselves are kept (not only their ids): an
        #: aggregate saved and dropped in a loop would free its events, and a later event could be given
        #: the same id and be taken for one already published.
        self._collected: dict[int, DomainEvent] = {}
        self.published: list[OutgoingEvent] = []

    def publish(self, event: OutgoingEvent) -> None:
        self.published.append(event)

    def collect(self, aggregate: Aggregate) -> None:
        """Publish, with this commit, the domain events `aggregate` recorded, mapped by the service's
        `events.py`. Collecting the same aggregate again publishes only what it recorded since."""
        for event in aggregate.events:
            if id(event) in self._collected:
                continue
            if self._mapper is None:
                raise RuntimeError(f"{self._source} maps no domain events: give its ServiceSpec `events`")
            self._collected[id(event)] = event
            self.published.extend(self._mapper(aggregate, event))

    async def flush(self) -> None:
        """Write the events raised so far to the outbox (a unit of work joined to another transaction)."""
        await self._flush_events()
        self.published.clear()

    async def _flush_events(self) -> None:
        if not self.published:
            return
        trace_headers = current_trace_headers()
        now = utcnow()
        await self.session.execute(
            sa.insert(self._outbox),
            [
                {
                    "id": e.id,
                    "topic": self._topic,
                    "key": e.subject,
                    "type": e.type,
                    "source": self._source,
                    "time": e.time,
                    "nation": e.releasability.owner,
                    "releasable_to": e.releasability.marking(),
                    "data": e.data_json(),
                    "traceparent": trace_headers.get("traceparent"),
                    "tracestate": trace_headers.get("tracestate"),
                    "created_at": now,
                }
                for e in self.published
            ],
        )


#: Work done inside a write transaction just before it commits.
BeforeCommit = Callable[[AsyncSession], Awaitable[None]]
#: Set for one HTTP request by the `Idempotency-Key` middleware: the key's row is marked `committed` in the
#: same transaction as the use case's rows and events, so "the effect happened" and "the key is spent" are
#: one fact. Only units of work opened with `uow()` run it; a consumer's joined unit of work (no request)
#: does not, and outside a request it is unset.
before_commit: ContextVar[BeforeCommit | None] = ContextVar("icep_before_commit", default=None)


class ChangeRecorder(Protocol):
    async def record_change(self, session: AsyncSession, events: Sequence[OutgoingEvent]) -> None: ...


class OpenTransaction:
    """A unit of work whose rows are written but not yet committed: the request's answer is written into it
    first (`DeferredCommit`), then it commits. Whoever holds it ends it: `commit()` or `rollback()`."""

    def __init__(
        self, session: AsyncSession, transaction: Any, after_commit: list[Callable[[], None]]
    ) -> None:
        self.session = session
        self._transaction = transaction
        self._after_commit = after_commit

    async def commit(self) -> None:
        try:
            await self._transaction.commit()
        finally:
            await self.session.close()
        for hook in self._after_commit:  # wake the relay (and what else waits for a commit)
            hook()

    async def rollback(self) -> None:
        try:
            await self._transaction.rollback()
        finally:
            await self.session.close()


class DeferredCommit:
    """Set for one HTTP request by the `Idempotency-Key` middleware: the request's unit of work does not
    commit when its block ends but is handed over here (`pending`), so the middleware writes the answer the
    route built into the same transaction and then commits. The answer then exists if and only if the
    effect does: a retry after a crash between commit and answer gets the original answer.

    A second unit of work in the same request commits the first one before it begins (on SQLite the first
    holds the one write lock); only the last one carries the answer then."""

    def __init__(self) -> None:
        self.pending: OpenTransaction | None = None
        self.active = True

    async def settle(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            await pending.commit()

    async def abandon(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            await pending.rollback()


deferred_commit: ContextVar[DeferredCommit | None] = ContextVar("icep_deferred_commit", default=None)


class UnitOfWorkFactory:
    def __init__(
        self, db: Database, outbox: sa.Table, service: str, topic: str, mapper: EventMapper | None = None
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.source = f"/icep/{service}"
        self.topic = topic
        #: The service's `events.py`: domain events of collected aggregates -> published events.
        self.mapper = mapper
        self.after_commit: list[Callable[[], None]] = []
        #: Writes the request's change to the audit log in the change's transaction (`icep.platform.audit`).
        self.audit: ChangeRecorder | None = None

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[UnitOfWork]:
        deferral = deferred_commit.get()
        if deferral is not None and not deferral.active:
            deferral = None  # a task that outlived its request commits as usual
        if deferral is not None:
            await deferral.settle()
        session = self.db.sessions()
        handed_over = False
        try:
            transaction = await session.begin()
            try:
                await begin_write(session)
                uow = UnitOfWork(session, self.outbox, self.source, self.topic, self.mapper)
                yield uow
                await uow._flush_events()
                if self.audit is not None:
                    await self.audit.record_change(session, uow.published)
                pre_commit = before_commit.get()
                if pre_commit is not None:
                    await pre_commit(session)
            except BaseException:
                await transaction.rollback()
                raise
            if deferral is not None:
                # The request's middleware writes the answer into this transaction and commits it.
                # Its commit wakes the relay only when there is something to publish.
                hooks = self.after_commit if uow.published else []
                deferral.pending = OpenTransaction(session, transaction, hooks)
                handed_over = True
                return
            await transaction.commit()
        finally:
            if not handed_over:
                await session.close()
        if uow.published:
            for hook in self.after_commit:
                hook()

    def joined(self, session: AsyncSession) -> UnitOfWork:
        """A unit of work inside a transaction someone else owns and commits (a consumer's batch): events
        a handler raises go to the outbox in that transaction; call `flush()` before returning."""
        return UnitOfWork(session, self.outbox, self.source, self.topic, self.mapper)


SESSION_KEY = "icep.unit_of_work"


def joined_unit_of_work(session: AsyncSession) -> UnitOfWork:
    """In a consumer's handler: a unit of work in the handler's transaction, so the events it raises are
    written with the inbox row and whatever else it changes, or not at all."""
    factory = session.info.get(SESSION_KEY)
    if not isinstance(factory, UnitOfWorkFactory):
        raise RuntimeError("this session has no outbox: only a consumer's handler may raise events here")
    return factory.joined(session)
