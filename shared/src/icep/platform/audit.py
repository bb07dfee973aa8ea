"""The audit trail: who changed a record, or read a national record of another nation, when and how.

Every service keeps an append-only `audit_log` table (`icep.platform.tables`). An entry names the caller
(client id, nation, roles), the action (the operation id), the record (type, id, owner nation), the time,
the trace id and the outcome (`success`, `refused` with the problem type, or `failed`).

- **Changes** (any POST, PUT, PATCH or DELETE a verified caller makes): the unit of work writes the entry
  in the change's own transaction (`AuditLog.record_change`), so a committed change always has its entry
  and a rolled-back one has none. A refused change (4xx) or a failed one (5xx) has no transaction left to
  write into: its entry is queued (below). The record is the one the use case named (`subject`), else the
  aggregate of the first event it raised, else the route's path.
- **Reads** of a national record by a caller of another nation: the read use case calls `read(...)` once,
  where it has established that the caller may read the record. The entry is queued in memory and a
  background task writes the queue in one INSERT per batch (`AuditLog.run`). The queue is bounded
  (`ICEP_AUDIT_QUEUE_SIZE`): when the database cannot keep up, entries beyond it are dropped, counted in
  `icep_audit_dropped_total` and logged, never silently.
- **Queries** (`GET /v1/audit`): operators only; a nation's operators see the entries of the records their
  nation owns, NATO's operators all (`visible_to`). Newest first, cursor pagination.

Nothing in the code updates or deletes an entry; on PostgreSQL a trigger refuses both.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from opentelemetry import trace
from prometheus_client import Counter
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from icep.platform.aio import wait_event
from icep.platform.auth import NATO, Principal, PrincipalDep
from icep.platform.errors import Forbidden, Unprocessable
from icep.platform.events import OutgoingEvent, utcnow
from icep.platform.http import next_link
from icep.platform.ids import new_id

if TYPE_CHECKING:
    from icep.platform.app import Runtime
    from icep.platform.db import Database

log = logging.getLogger("icep.audit")

AUDIT_WRITTEN = Counter("icep_audit_written_total", "Audit entries written", ["service", "kind"])
AUDIT_DROPPED = Counter(
    "icep_audit_dropped_total", "Audit entries dropped because the queue was full", ["service"]
)

CHANGE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OPERATOR = "operator"

Outcome = Literal["success", "refused", "failed"]


@dataclass(frozen=True)
class Subject:
    """The record a request acts on."""

    type: str
    id: str | None
    owner: str | None


@dataclass
class RequestAudit:
    """What the audit knows of the request in progress (one per request, in a context variable)."""

    scope: Scope
    subject: Subject | None = None
    #: True once the change's entry is written in its transaction.
    change_recorded: bool = False
    read_recorded: bool = False

    @property
    def method(self) -> str:
        return str(self.scope.get("method", "GET"))

    @property
    def is_change(self) -> bool:
        return self.method in CHANGE_METHODS

    @property
    def principal(self) -> Principal | None:
        # `current_principal` keeps the verified caller in `request.state`, which is the scope's "state".
        state = self.scope.get("state")
        found = state.get("principal") if isinstance(state, dict) else None
        return found if isinstance(found, Principal) else None

    @property
    def action(self) -> str:
        route = self.scope.get("route")
        name = getattr(route, "operation_id", None) or getattr(route, "name", None)
        return str(name or "unknown")

    def fallback_subject(self) -> Subject:
        """The record as the route's path names it: `/v1/initiatives/{initiative_id}/join` is the
        initiative of that id; a collection (`POST /v1/plans`) is a new record of the caller's nation."""
        route = getattr(self.scope.get("route"), "path", None) or str(self.scope.get("path", ""))
        params: dict[str, Any] = self.scope.get("path_params") or {}
        named = [p.split("}")[0] for p in route.split("{")[1:]]
        if named:
            first = named[0]
            kind = first.removesuffix("_id") if first.endswith("_id") else first
            return Subject(kind, str(params.get(first, "")) or None, None)
        literal = [s for s in route.split("/") if s and s != "v1"]
        principal = self.principal
        return Subject(literal[-1] if literal else "unknown", None, principal.nation if principal else None)


_current: ContextVar[RequestAudit | None] = ContextVar("icep_audit_request", default=None)


def subject(resource_type: str, resource_id: str, owner: str) -> None:
    """Name the record the current request acts on (a use case, once it has loaded it): its change's or
    refusal's entry then carries the record's owner, so its nation sees who tried. Outside a request, a
    no-op."""
    current = _current.get()
    if current is not None:
        current.subject = Subject(resource_type, resource_id, owner)


def read(resource_type: str, resource_id: str, owner: str) -> None:
    """A read use case established that the caller may read this record: when the caller is of another
    nation than the record's owner, the read is queued for the audit log. Once per request."""
    current = _current.get()
    if current is None or current.read_recorded:
        return
    audit = _log_of(current.scope)
    principal = current.principal
    if audit is None or principal is None or principal.nation == owner:
        return
    current.read_recorded = True
    audit.enqueue(
        entry(current, principal, "read", Subject(resource_type, resource_id, owner), "success", 200, None)
    )


def trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def entry(
    request: RequestAudit,
    principal: Principal,
    kind: Literal["read", "change"],
    record: Subject,
    outcome: Outcome,
    status: int | None,
    problem_type: str | None,
) -> dict[str, Any]:
    return {
        "id": new_id(),
        "time": utcnow(),
        "client_id": principal.client_id[:200],
        "client_nation": principal.nation,
        "roles": ",".join(sorted(principal.roles))[:200],
        "action": request.action[:100],
        "kind": kind,
        "resource_type": record.type[:100],
        "resource_id": None if record.id is None else record.id[:200],
        "owner_nation": record.owner,
        "outcome": outcome,
        "status": status,
        "problem_type": None if problem_type is None else problem_type[:200],
        "trace_id": trace_id(),
        "method": request.method,
        "path": str(request.scope.get("path", ""))[:500],
    }


def _event_subject(events: Sequence[OutgoingEvent]) -> Subject | None:
    if not events:
        return None
    first = events[0]
    parts = first.type.split(".")  # icep.<service>.<aggregate>.<verb>.v<N>
    kind = parts[2] if len(parts) > 3 else first.type
    return Subject(kind, first.subject, first.releasability.owner)


class AuditLog:
    """One service's audit log: entries of changes written in their transaction, the rest queued and
    written in batches by `run()`."""

    def __init__(
        self,
        db: Database,
        table: sa.Table,
        service: str,
        *,
        queue_size: int = 10_000,
        flush_seconds: float = 0.5,
        batch_size: int = 500,
    ) -> None:
        self.db = db
        self.table = table
        self.service = service
        self.queue_size = queue_size
        self.flush_seconds = flush_seconds
        self.batch_size = batch_size
        self._queue: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()
        self.dropped = 0

    # --- writing -------------------------------------------------------------------------------------

    async def record_change(self, session: AsyncSession, events: Sequence[OutgoingEvent]) -> None:
        """In a unit of work about to commit: the entry of the request's change, in its transaction."""
        current = _current.get()
        if current is None or not current.is_change or current.change_recorded:
            return
        principal = current.principal
        if principal is None:
            return
        record = current.subject or _event_subject(events) or current.fallback_subject()
        await session.execute(
            sa.insert(self.table), [entry(current, principal, "change", record, "success", None, None)]
        )
        current.change_recorded = True
        AUDIT_WRITTEN.labels(self.service, "change").inc()

    def enqueue(self, row: dict[str, Any]) -> None:
        if len(self._queue) >= self.queue_size:
            self.dropped += 1
            AUDIT_DROPPED.labels(self.service).inc()
            log.warning("audit queue full (%d): dropped an entry of %s", self.queue_size, row["action"])
            return
        self._queue.append(row)
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def flush(self) -> int:
        """Write what is queued, a batch per INSERT; what fails to write stays queued for the next try."""
        written = 0
        while self._queue:
            batch = [self._queue[i] for i in range(min(self.batch_size, len(self._queue)))]
            async with self.db.sessions() as session, session.begin():
                await session.execute(sa.insert(self.table), batch)
            for _ in batch:
                self._queue.popleft()
            written += len(batch)
            AUDIT_WRITTEN.labels(self.service, "queued").inc(len(batch))
        return written

    async def run(self) -> None:
        """Flush the queue every `flush_seconds` (sooner when a batch is full), and once more at the end."""
        try:
            while True:
                await wait_event(self._wake, self.flush_seconds)
                self._wake.clear()
                try:
                    await self.flush()
                except Exception:
                    log.exception("writing %d audit entries failed; retrying", len(self._queue))
        finally:
            if self._queue:
                try:
                    await asyncio.shield(self.flush())
                except Exception:
                    log.exception("%d audit entries could not be written at shutdown", len(self._queue))

    # --- reading -------------------------------------------------------------------------------------

    async def query(self, principal: Principal, query: AuditQuery) -> tuple[list[dict[str, Any]], str | None]:
        t = self.table
        stmt = sa.select(t).where(visible_to(t, principal))
        for column, value in (
            ("owner_nation", query.nation),
            ("resource_type", query.resource_type),
            ("resource_id", query.resource_id),
            ("client_id", query.client_id),
            ("action", query.action),
            ("outcome", query.outcome),
        ):
            if value is not None:
                stmt = stmt.where(t.c[column] == value)
        if query.since is not None:
            stmt = stmt.where(t.c.time >= query.since)
        if query.until is not None:
            stmt = stmt.where(t.c.time < query.until)
        if query.cursor:
            stmt = stmt.where(t.c.id < query.cursor)
        stmt = stmt.order_by(t.c.id.desc()).limit(query.limit + 1)
        async with self.db.sessions() as session:
            rows = [dict(r._mapping) for r in (await session.execute(stmt)).all()]
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        return rows, (rows[-1]["id"] if more and rows else None)


def visible_to(table: sa.Table, principal: Principal) -> sa.ColumnElement[bool]:
    """Which entries a caller may read: a nation's operators those of records their nation owns, NATO's
    operators all. (Non-operators are refused before this.)"""
    if principal.nation == NATO:
        return sa.true()
    return table.c.owner_nation == principal.nation


def may_query(principal: Principal) -> None:
    if OPERATOR not in principal.roles:
        raise Forbidden("the audit trail is for operators", required_roles=[OPERATOR])


def _log_of(scope: Scope) -> AuditLog | None:
    app = scope.get("app")
    runtime = getattr(getattr(app, "state", None), "runtime", None)
    found = getattr(runtime, "parts", {}).get(AuditLog) if runtime is not None else None
    return found if isinstance(found, AuditLog) else None


# --- wiring --------------------------------------------------------------------------------------------


class AuditMiddleware:
    """Opens the request's audit context; after a change that was refused or failed (or that committed
    without a unit of work), queues its entry."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _log_of(scope) is None:
            await self.app(scope, receive, send)
            return
        current = RequestAudit(scope)
        token = _current.set(current)
        status = 500
        problem_type: str | None = None
        body = b""

        async def note(message: Message) -> None:
            nonlocal status, body
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status >= 400 and len(body) < 4096:
                body += message.get("body", b"")
            await send(message)

        try:
            await self.app(scope, receive, note)
        finally:
            _current.reset(token)
            if current.is_change and not (status < 400 and current.change_recorded):
                principal = current.principal
                audit = _log_of(scope)
                if principal is not None and audit is not None:
                    if status >= 400:
                        problem_type = _problem_type(body)
                    outcome: Outcome = "success" if status < 400 else "refused" if status < 500 else "failed"
                    record = current.subject or current.fallback_subject()
                    audit.enqueue(entry(current, principal, "change", record, outcome, status, problem_type))


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "roles": [r for r in row["roles"].split(",") if r]}


def _problem_type(body: bytes) -> str | None:
    import json

    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    value = parsed.get("type") if isinstance(parsed, dict) else None
    return value if isinstance(value, str) else None


def attach(runtime: Runtime) -> None:
    """In a service's lifespan, once its database and unit of work exist: the audit log, its writer task,
    and the unit of work's recorder of changes."""
    settings = runtime.settings
    tables = runtime.spec.tables
    if not settings.audit_enabled or runtime.db is None or tables is None:
        return
    audit = AuditLog(
        runtime.db,
        tables.audit,
        settings.service_name,
        queue_size=settings.audit_queue_size,
        flush_seconds=settings.audit_flush_seconds,
    )
    runtime.provide(audit)
    if runtime.uow is not None:
        runtime.uow.audit = audit
    runtime.start("audit-writer", lambda _: audit.run())


# --- the API -------------------------------------------------------------------------------------------

router = APIRouter(tags=["audit"])


class AuditQuery(BaseModel):
    limit: int = 50
    cursor: str | None = None
    nation: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    client_id: str | None = None
    action: str | None = None
    outcome: Outcome | None = None
    since: datetime | None = None
    until: datetime | None = None


class AuditEntryOut(BaseModel):
    id: str = Field(description="UUIDv7: entries sort by it, newest first")
    time: datetime
    service: str = Field(description="The service that keeps the record")
    client_id: str
    client_nation: str
    roles: list[str]
    action: str = Field(description="The operation id, e.g. `submitPlan` or `getPlan`")
    kind: Literal["read", "change"]
    resource_type: str
    resource_id: str | None
    owner_nation: str | None = Field(description="The record's owner nation; null when not known")
    outcome: Outcome
    status: int | None = Field(description="The HTTP status of a refused or failed change")
    problem_type: str | None = Field(description="The problem type of a refusal")
    trace_id: str | None
    method: str
    path: str


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next: str | None


Text = Annotated[str | None, Query(min_length=1, max_length=200)]


def audit_query(
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    nation: Annotated[str | None, Query(min_length=2, max_length=8, description="The owner nation")] = None,
    resource_type: Text = None,
    resource_id: Text = None,
    client_id: Text = None,
    action: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    outcome: Outcome | None = None,
    since: Annotated[AwareDatetime | None, Query(description="Entries at or after this time")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Entries before this time")] = None,
) -> AuditQuery:
    """The query parameters of `GET /v1/audit` (the gateway validates them too, then fans out)."""
    return AuditQuery(
        limit=limit,
        cursor=cursor,
        nation=nation,
        resource_type=resource_type,
        resource_id=resource_id,
        client_id=client_id,
        action=action,
        outcome=outcome,
        since=_utc(since, "since"),
        until=_utc(until, "until"),
    )


def _utc(value: datetime | None, name: str) -> datetime | None:
    try:
        return None if value is None else value.astimezone(UTC)
    except OverflowError:
        raise Unprocessable(f"{name} is out of range", parameter=name) from None


AuditQueryDep = Annotated[AuditQuery, Depends(audit_query)]
LIST_AUDIT_SUMMARY = "Who touched the records: changes and other nations' reads (operators)"
LIST_AUDIT_DESCRIPTION = (
    "Operators only (others 403). A nation's operators see the entries of the records their nation owns; "
    "NATO's operators see all. Through the gateway, one query covers every service: their entries merged, "
    "newest first, one cursor for all."
)


@router.get(
    "/v1/audit",
    operation_id="listAudit",
    summary=LIST_AUDIT_SUMMARY,
    description=LIST_AUDIT_DESCRIPTION,
    response_model=AuditPage,
)
async def list_audit(request: Request, principal: PrincipalDep, query: AuditQueryDep) -> AuditPage:
    may_query(principal)
    audit = _log_of(request.scope)
    if audit is None:
        return AuditPage(items=[], next=None)
    rows, after = await audit.query(principal, query)
    return AuditPage(
        items=[AuditEntryOut(**_shown(row), service=audit.service) for row in rows],
        next=next_link(request, after),
    )
