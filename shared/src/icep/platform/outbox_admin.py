"""Operators' tools for a service's outbox: its status, and retrying, parking or unparking one row.

The same use cases serve `icep outbox ...` (against the service's database, from its own settings) and the
operator-role routes `/v1/operations/<service>/outbox...` of each service that keeps an outbox.

- **Status**: the backlog (rows waiting to be published), the age of the oldest, how many rows are parked,
  the rows that failed most (attempts and last error) and the parked ones, and whether a relay holds the
  outbox's work: on PostgreSQL `pg_locks` is asked which relays hold the outbox's shards (advisory locks,
  `icep.platform.shards`); a SQLite database belongs to one process, whose relay is its leader when it runs.
- **Retry** clears a row's error and attempts, unparks it and wakes the relay (in the service; the CLI's
  change is picked up at the relay's next poll).
- **Park** takes a row that cannot be published (the broker refuses it, its topic is gone, ...) out of the
  relay's queue, with a reason. Per key the relay keeps order by letting no row overtake a failing one, so
  parking a row lets that key's later rows go on without it: the operator's explicit decision to give up
  that row's place in the order. Retrying or unparking it queues it again (then it is published after the
  rows that went on meanwhile).

A change made through the API runs in the service's unit of work, so the audit trail records who retried,
parked or unparked which row (`resource_type` `outbox_row`, the event's owner nation), in the change's
transaction. Who may see which rows: a nation's operators the rows of events their nation owns, NATO's
operators all (the rule of the audit trail). The counts of the status say nothing about any record and are
shown to every operator. A row an operator may not see is answered 404, like one that does not exist.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from icep.platform import audit
from icep.platform.auth import NATO, Principal, require_role
from icep.platform.db import Database
from icep.platform.errors import Conflict, NotFound
from icep.platform.events import utcnow
from icep.platform.outbox import UnitOfWorkFactory
from icep.platform.relay import publishable
from icep.platform.shards import holders

OPERATOR = "operator"
#: Opens the write transaction a change runs in: `Database.transaction`, or (a request) the service's unit
#: of work, whose audit log then records who changed the row in the same transaction.
Transaction = Callable[[], AbstractAsyncContextManager[AsyncSession]]
#: How many of the most failing and of the parked rows a status lists.
STATUS_ROWS = 10


def relay_lock_name(service: str) -> str:
    """The name of the relay's leader lock (`OutboxRelay.leadership`)."""
    return f"icep-outbox-{service}"


class OutboxRow(BaseModel):
    """One outbox row as an operator sees it (without the event's data)."""

    id: str = Field(description="The event id (also `ce_id` and the consumers' inbox key)")
    key: str = Field(
        description="The record key: the event's subject (the aggregate id, or `<standard_id>:<nation>` for "
        "an answer to a standard), whose rows are published in order"
    )
    type: str = Field(description="The event type")
    topic: str
    nation: str = Field(description="The owner nation of the event")
    created_at: datetime
    attempts: int = Field(description="Failed or successful publish attempts so far")
    last_error: str | None = Field(description="The error of the last failed attempt")
    sent_at: datetime | None = Field(description="When the broker acknowledged it; null while unsent")
    parked_at: datetime | None = Field(description="When an operator parked it; the relay skips it then")
    parked_reason: str | None


class Leadership(BaseModel):
    mode: Literal["advisory-lock", "single-process"] = Field(
        description="`advisory-lock`: PostgreSQL, the outbox is cut into shards by key and each shard is "
        "published by the one relay holding its advisory lock (replicas share them); `single-process`: "
        "SQLite, the relay of the one process using the file is the leader"
    )
    held: bool | None = Field(
        description="Whether some relay holds shards of the outbox (PostgreSQL); null for SQLite, whose "
        "leader is the process using it"
    )
    holder_pid: int | None = Field(
        description="The database backend pid of a holder's lock session (the one holding most shards)"
    )
    holder_pids: list[int] = Field(
        default_factory=list, description="The lock sessions of every relay holding shards (PostgreSQL)"
    )
    shards_held: int | None = Field(
        default=None, description="How many of the outbox's shards some relay holds (null for SQLite)"
    )
    this_replica_active: bool | None = Field(
        default=None,
        description="Whether the replica that answered publishes (holds shards) (null from the CLI)",
    )
    this_replica_shards: list[int] | None = Field(
        default=None, description="The shards the replica that answered holds (null from the CLI)"
    )


class OutboxStatus(BaseModel):
    service: str
    backlog: int = Field(description="Rows waiting to be published (unsent, not parked)")
    oldest_unsent_at: datetime | None = Field(description="When the oldest waiting row was written")
    oldest_age_seconds: float = Field(description="Its age; 0 when nothing waits")
    parked: int = Field(description="Unsent rows an operator parked")
    failing: list[OutboxRow] = Field(
        description=f"Waiting rows with a failed attempt, most attempts first (at most {STATUS_ROWS})"
    )
    parked_rows: list[OutboxRow] = Field(description=f"Parked rows, oldest first (at most {STATUS_ROWS})")
    leader: Leadership


class ParkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        min_length=1,
        max_length=500,
        description="Why the row cannot be published (kept with it, shown by the status)",
        examples=["the broker refuses it: message too large"],
    )


# --- use cases -----------------------------------------------------------------------------------------


def _visible(outbox: sa.Table, principal: Principal | None) -> sa.ColumnElement[bool]:
    if principal is None or principal.nation == NATO:
        return sa.true()
    return outbox.c.nation == principal.nation


def _row(mapping: Any) -> OutboxRow:
    return OutboxRow.model_validate({k: mapping[k] for k in OutboxRow.model_fields})


async def leadership(db: Database, service: str) -> Leadership:
    """Which relays hold the outbox's shards, asked from PostgreSQL's `pg_locks`."""
    if not db.is_postgres:
        return Leadership(mode="single-process", held=None, holder_pid=None)
    held = await holders(db, relay_lock_name(service))
    per_pid: dict[int, int] = {}
    for pid in held.values():
        per_pid[pid] = per_pid.get(pid, 0) + 1
    top = max(per_pid, key=lambda pid: (per_pid[pid], -pid)) if per_pid else None
    return Leadership(
        mode="advisory-lock",
        held=bool(held),
        holder_pid=top,
        holder_pids=sorted(per_pid),
        shards_held=len(held),
    )


async def status(
    db: Database, outbox: sa.Table, service: str, principal: Principal | None = None
) -> OutboxStatus:
    """The outbox's numbers, and the failing and parked rows the caller may see."""
    unsent = outbox.c.sent_at.is_(None)
    parked = sa.and_(unsent, outbox.c.parked_at.is_not(None))
    async with db.sessions() as session:
        backlog, oldest = (
            await session.execute(
                sa.select(sa.func.count(), sa.func.min(outbox.c.created_at)).where(publishable(outbox))
            )
        ).one()
        parked_count = (await session.execute(sa.select(sa.func.count()).where(parked))).scalar_one()
        failing = (
            (
                await session.execute(
                    sa.select(outbox)
                    .where(publishable(outbox), outbox.c.last_error.is_not(None), _visible(outbox, principal))
                    .order_by(outbox.c.attempts.desc(), outbox.c.position)
                    .limit(STATUS_ROWS)
                )
            )
            .mappings()
            .all()
        )
        parked_rows = (
            (
                await session.execute(
                    sa.select(outbox)
                    .where(parked, _visible(outbox, principal))
                    .order_by(outbox.c.parked_at, outbox.c.position)
                    .limit(STATUS_ROWS)
                )
            )
            .mappings()
            .all()
        )
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=utcnow().tzinfo)  # SQLite keeps no offset; the platform's are UTC
    return OutboxStatus(
        service=service,
        backlog=int(backlog),
        oldest_unsent_at=oldest,
        oldest_age_seconds=max(0.0, (utcnow() - oldest).total_seconds()) if oldest else 0.0,
        parked=int(parked_count),
        failing=[_row(r) for r in failing],
        parked_rows=[_row(r) for r in parked_rows],
        leader=await leadership(db, service),
    )


async def _change_unsent(
    db: Database,
    outbox: sa.Table,
    row_id: str,
    principal: Principal | None,
    action: str,
    values: dict[str, Any],
    transaction: Transaction | None,
) -> OutboxRow:
    """Change one unsent row the caller may see: 404 when there is none, 409 when it was sent already."""
    async with (transaction or db.transaction)() as session:
        found = (
            (
                await session.execute(
                    sa.select(outbox).where(outbox.c.id == row_id, _visible(outbox, principal))
                )
            )
            .mappings()
            .one_or_none()
        )
        if found is None:
            raise NotFound(f"no outbox row {row_id}")
        audit.subject("outbox_row", row_id, found["nation"])
        if found["sent_at"] is not None:
            raise Conflict(
                f"cannot {action} outbox row {row_id}: it was published already",
                current_state="sent",
                action=action,
            )
        # `sent_at IS NULL` again: the relay may have published it since it was read (PostgreSQL).
        await session.execute(
            sa.update(outbox).where(outbox.c.id == row_id, outbox.c.sent_at.is_(None)).values(**values)
        )
        changed = (await session.execute(sa.select(outbox).where(outbox.c.id == row_id))).mappings().one()
    return _row(changed)


async def retry(
    db: Database,
    outbox: sa.Table,
    row_id: str,
    principal: Principal | None = None,
    transaction: Transaction | None = None,
) -> OutboxRow:
    """Queue a row again from scratch: no error, no attempts, not parked. (The caller wakes the relay.)"""
    return await _change_unsent(
        db,
        outbox,
        row_id,
        principal,
        "retry",
        {"attempts": 0, "last_error": None, "parked_at": None, "parked_reason": None},
        transaction,
    )


async def park(
    db: Database,
    outbox: sa.Table,
    row_id: str,
    reason: str,
    principal: Principal | None = None,
    transaction: Transaction | None = None,
) -> OutboxRow:
    """Take a row out of the relay's queue; its key's later rows go on without it. Parking a parked row
    again keeps its time and replaces the reason."""
    return await _change_unsent(
        db,
        outbox,
        row_id,
        principal,
        "park",
        {
            "parked_at": sa.func.coalesce(outbox.c.parked_at, utcnow()),
            "parked_reason": reason[:500],
        },
        transaction,
    )


async def unpark(
    db: Database,
    outbox: sa.Table,
    row_id: str,
    principal: Principal | None = None,
    transaction: Transaction | None = None,
) -> OutboxRow:
    """Queue a parked row again, keeping its attempts and last error (`retry` clears them too)."""
    return await _change_unsent(
        db, outbox, row_id, principal, "unpark", {"parked_at": None, "parked_reason": None}, transaction
    )


# --- the API -------------------------------------------------------------------------------------------

OperatorDep = Annotated[Principal, Depends(require_role(OPERATOR))]
RowId = Annotated[str, Path(min_length=1, max_length=36, description="The outbox row's (event's) id")]

_ROW_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such outbox row (or one of another nation's events)"},
    409: {"description": "The row was published already"},
}


def _runtime_parts(request: Request) -> tuple[Database, sa.Table, Any]:
    runtime = request.app.state.runtime
    tables = runtime.spec.tables
    if runtime.db is None or tables is None:
        raise RuntimeError("this service keeps no outbox")
    return runtime.db, tables.outbox, runtime


def _audited(runtime: Any) -> Transaction | None:
    """The service's unit of work as the change's transaction (its audit log records the change)."""
    uow = getattr(runtime, "uow", None)
    if not isinstance(uow, UnitOfWorkFactory):
        return None

    @asynccontextmanager
    async def begin() -> AsyncIterator[AsyncSession]:
        async with uow() as tx:
            yield tx.session

    return begin


def _pascal(service: str) -> str:
    return "".join(part.capitalize() for part in service.replace("_", "-").split("-"))


def operations_router(service: str) -> APIRouter:
    """The operator-role outbox routes of one service, under `/v1/operations/<service>/outbox`."""
    name = _pascal(service)
    router = APIRouter(prefix=f"/v1/operations/{service}/outbox", tags=[f"{service} operations"])

    @router.get(
        "",
        operation_id=f"get{name}OutboxStatus",
        summary=f"The {service} outbox: backlog, failing and parked rows, leader",
        description="The backlog, the oldest unsent row, the parked and failing rows, and which relay "
        "publishes. Operators only (role `operator`; others 403). A nation's operators see the failing and "
        "parked rows of their nation's events; NATO's operators all. The counts cover every row.",
        response_model=OutboxStatus,
    )
    async def get_status(request: Request, principal: OperatorDep) -> OutboxStatus:
        db, outbox, runtime = _runtime_parts(request)
        answer = await status(db, outbox, service, principal)
        relay = getattr(runtime, "relay", None)
        answer.leader.this_replica_active = bool(relay.active) if relay is not None else False
        answer.leader.this_replica_shards = sorted(relay.leadership.held) if relay is not None else []
        return answer

    @router.post(
        "/{row_id}/retry",
        operation_id=f"retry{name}OutboxRow",
        summary="Publish an outbox row again from scratch",
        description="Clears the row's error and attempts and unparks it; the relay publishes it next, in "
        "order with its key's rows. Operators only (others 403); a nation's operators only rows of their "
        "nation's events (404 otherwise); NATO's any. 409 when the row was sent already. Audited.",
        response_model=OutboxRow,
        responses=_ROW_RESPONSES,
    )
    async def retry_row(request: Request, row_id: RowId, principal: OperatorDep) -> OutboxRow:
        db, outbox, runtime = _runtime_parts(request)
        row = await retry(db, outbox, row_id, principal, _audited(runtime))
        runtime.committed()  # wake the relay
        return row

    @router.post(
        "/{row_id}/park",
        operation_id=f"park{name}OutboxRow",
        summary="Park an outbox row that cannot be published",
        description="The relay skips a parked row, and its key's later rows go on without it; the reason "
        "is kept with it. Operators only (others 403); a nation's operators only rows of their nation's "
        "events (404 otherwise); NATO's any. 409 when the row was sent already. Audited.",
        response_model=OutboxRow,
        responses=_ROW_RESPONSES,
    )
    async def park_row(
        request: Request, row_id: RowId, body: ParkRequest, principal: OperatorDep
    ) -> OutboxRow:
        db, outbox, runtime = _runtime_parts(request)
        row = await park(db, outbox, row_id, body.reason, principal, _audited(runtime))
        runtime.committed()  # the key's later rows may go now
        return row

    @router.post(
        "/{row_id}/unpark",
        operation_id=f"unpark{name}OutboxRow",
        summary="Queue a parked outbox row again",
        description="The row keeps its attempts and last error (`retry` clears them). Operators only "
        "(others 403); a nation's operators only rows of their nation's events (404 otherwise); NATO's "
        "any. 409 when the row was sent already. Audited.",
        response_model=OutboxRow,
        responses=_ROW_RESPONSES,
    )
    async def unpark_row(request: Request, row_id: RowId, principal: OperatorDep) -> OutboxRow:
        db, outbox, runtime = _runtime_parts(request)
        row = await unpark(db, outbox, row_id, principal, _audited(runtime))
        runtime.committed()
        return row

    return router
