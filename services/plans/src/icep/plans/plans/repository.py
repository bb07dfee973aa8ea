"""National plans in the database: rows <-> plans, the versions kept, and the plan queries."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Table, insert, select, text
from sqlmodel import col

from icep.contracts import Releasability, ReleasabilityScope
from icep.plans.plans.codec import content_from_json, content_to_json, plan_document
from icep.plans.plans.model import Actor, NationalPlan, PlanStatus, encode_tokens
from icep.plans.plans.rows import PlanRow, PlanVersionRow
from icep.platform import audit, visibility
from icep.platform.db import Database, advisory_key
from icep.platform.domain import check_version
from icep.platform.errors import NotFound
from icep.platform.events import utcnow
from icep.platform.outbox import UnitOfWork

#: The plans table, for reads that need no ORM objects (`get_plan`).
_PLANS: Table = PlanRow.__table__  # type: ignore[attr-defined]


def to_domain(row: PlanRow | Row[Any]) -> NationalPlan:
    """The domain plan of a stored row: an ORM `PlanRow` or a Core row of the plans table."""
    return NationalPlan(
        id=row.id,
        nation=row.nation,
        title=row.title,
        period_start=row.period_start,
        period_end=row.period_end,
        capability_areas=tuple(row.capability_areas),
        releasability=Releasability(
            owner=row.nation, scope=ReleasabilityScope(row.release_scope), nations=tuple(row.release_nations)
        ),
        status=PlanStatus(row.status),
        version=row.version,
        created_by=row.created_by,
        created_at=row.created_at,
        submitted_at=row.submitted_at,
        history=tuple((h[0], h[1], datetime.fromisoformat(h[2])) for h in row.history),
        content=content_from_json(row.content or {}),
        capacity_releasability=(
            None
            if row.capacity_scope is None
            else Releasability(
                owner=row.nation,
                scope=ReleasabilityScope(row.capacity_scope),
                nations=tuple(row.capacity_nations),
            )
        ),
        returned_reasons=tuple(row.returned_reasons or ()),
        superseded_by=row.superseded_by,
    )


def _stored_columns(plan: NationalPlan) -> dict[str, Any]:
    """The plan row's columns a change may touch, from the domain plan."""
    cap = plan.capacity_releasability
    return {
        "title": plan.title,
        "period_start": plan.period_start,
        "period_end": plan.period_end,
        "capability_areas": list(plan.capability_areas),
        "release_scope": plan.releasability.scope.value,
        "release_nations": list(plan.releasability.nations),
        "status": plan.status.value,
        "version": plan.version,
        "submitted_at": plan.submitted_at,
        "history": [[s, who, at.isoformat()] for s, who, at in plan.history],
        "content": content_to_json(plan.content),
        "capacity_scope": None if cap is None else cap.scope.value,
        "capacity_nations": [] if cap is None else list(cap.nations),
        "returned_reasons": list(plan.returned_reasons),
        "superseded_by": plan.superseded_by,
        "readers": encode_tokens(plan.readers()),
        "capacity_readers": encode_tokens(plan.capacity_readers()),
    }


class PlanRepository:
    """The plans of one unit of work: what `get_for_update` locked, `save` stores (with the version it
    keeps) and hands to the unit of work, which publishes what the plan recorded with the same commit."""

    def __init__(self, tx: UnitOfWork) -> None:
        self._tx = tx
        self._rows: dict[str, PlanRow] = {}

    async def get_for_update(self, actor: Actor, plan_id: str, expected_version: int | None) -> NationalPlan:
        """The plan, locked for this transaction; 404 when the caller may not see it, 412 when it is no
        longer at `expected_version` (the caller's `If-Match`)."""
        row = (
            await self._tx.session.execute(
                select(PlanRow).where(col(PlanRow.id) == plan_id).with_for_update()
            )
        ).scalar_one_or_none()
        if row is not None:
            audit.subject("plan", row.id, row.nation)  # a refused attempt is the owner's to see too
        if row is None or not to_domain(row).visible_to(actor.nation):
            raise NotFound(f"no plan {plan_id}")
        plan = to_domain(row)
        check_version("plan", plan.version, expected_version)
        self._rows[plan.id] = row
        return plan

    async def accepted_of_lineage(self, plan: NationalPlan) -> list[NationalPlan]:
        """The other accepted plans of the plan's nation for the same period, locked for this transaction.

        On PostgreSQL, two accepts for one nation and period must see each other: they take one lock in
        turn first."""
        session = self._tx.session
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            lineage = f"icep-plans-{plan.nation}-{plan.period_start}-{plan.period_end}"
            await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": advisory_key(lineage)})
        rows = (
            (
                await session.execute(
                    select(PlanRow)
                    .where(
                        col(PlanRow.nation) == plan.nation,
                        col(PlanRow.status) == PlanStatus.ACCEPTED.value,
                        col(PlanRow.period_start) == plan.period_start,
                        col(PlanRow.period_end) == plan.period_end,
                        col(PlanRow.id) != plan.id,
                    )
                    .with_for_update()
                )
            )
            .scalars()
            .all()
        )
        for row in rows:
            self._rows[row.id] = row
        return [to_domain(row) for row in rows]

    async def add(self, plan: NationalPlan) -> None:
        """A new plan: its row by SQLAlchemy Core (no SQLModel object is built for a row written once
        here), its first version, and what it recorded."""
        await self._tx.session.execute(
            insert(PlanRow.__table__),  # type: ignore[attr-defined]
            [
                {
                    "id": plan.id,
                    "nation": plan.nation,
                    "created_by": plan.created_by,
                    "created_at": plan.created_at,
                    **_stored_columns(plan),
                }
            ],
        )
        await self._keep_version(plan)
        self._tx.collect(plan)

    async def save(self, plan: NationalPlan) -> None:
        """A changed plan (loaded here for update): its row, the version it is now, and what it recorded."""
        row = self._rows[plan.id]
        for name, value in _stored_columns(plan).items():
            setattr(row, name, value)
        await self._keep_version(plan)
        self._tx.collect(plan)

    async def _keep_version(self, plan: NationalPlan) -> None:
        # A version is recorded at the time of the change that made it (the event it recorded last).
        recorded_at = plan.events[-1].at if plan.events else utcnow()
        await self._tx.session.execute(
            insert(PlanVersionRow.__table__),  # type: ignore[attr-defined]
            [
                {
                    "plan_id": plan.id,
                    "version": plan.version,
                    "snapshot": plan_document(plan),
                    "recorded_at": recorded_at,
                }
            ],
        )


# --- queries ------------------------------------------------------------------------------------------------


async def get_plan(db: Database, actor: Actor, plan_id: str) -> NationalPlan:
    # A Core read on a connection: the same columns and types as `PlanRow`, without a session, its identity
    # map or the ORM object (a read changes nothing, so it needs none of them).
    async with db.reading() as conn:
        row = (await conn.execute(select(_PLANS).where(_PLANS.c.id == plan_id))).one_or_none()
    if row is None:
        raise NotFound(f"no plan {plan_id}")
    plan = to_domain(row)
    if not plan.visible_to(actor.nation):
        raise NotFound(f"no plan {plan_id}")
    audit.read("plan", plan.id, plan.nation)
    [shown] = await _hide_unseen_successors(db, actor, [plan])
    return shown


async def _hide_unseen_successors(
    db: Database, actor: Actor, plans: list[NationalPlan]
) -> list[NationalPlan]:
    """A superseded plan names its successor only to callers who may see the successor."""
    ids = {p.superseded_by for p in plans if p.superseded_by}
    if not ids:
        return plans
    async with db.sessions() as session:
        rows = (await session.execute(select(PlanRow).where(col(PlanRow.id).in_(ids)))).scalars().all()
    seen = {r.id for r in rows if to_domain(r).visible_to(actor.nation)}
    return [
        p if not p.superseded_by or p.superseded_by in seen else replace(p, superseded_by=None) for p in plans
    ]


async def list_plans(
    db: Database,
    actor: Actor,
    *,
    limit: int,
    after: str | None,
    nation: str | None = None,
    status: str | None = None,
) -> tuple[list[NationalPlan], str | None]:
    """Plans the caller may see, oldest first (ids are UUIDv7, so id order is creation order)."""
    query = select(PlanRow).where(visibility.readable_by(col(PlanRow.readers), actor.nation))
    if after:
        query = query.where(col(PlanRow.id) > after)
    if nation:
        query = query.where(col(PlanRow.nation) == nation)
    if status:
        query = query.where(col(PlanRow.status) == status)
    async with db.sessions() as session:
        rows = (await session.execute(query.order_by(col(PlanRow.id)).limit(limit + 1))).scalars().all()
    plans = [to_domain(r) for r in rows[:limit]]
    # The SQL filter and the domain rule are one rule; the check keeps them honest.
    plans = [p for p in plans if p.visible_to(actor.nation)]
    return await _hide_unseen_successors(db, actor, plans), (
        rows[limit - 1].id if len(rows) > limit else None
    )


async def plan_versions(db: Database, actor: Actor, plan_id: str) -> list[dict[str, Any]]:
    """The versions the caller may read (drafts stay the owner's even after acceptance)."""
    plan = await get_plan(db, actor, plan_id)
    async with db.sessions() as session:
        rows = (
            await session.execute(
                select(PlanVersionRow)
                .where(col(PlanVersionRow.plan_id) == plan_id)
                .order_by(col(PlanVersionRow.version))
            )
        ).scalars()
        return [
            _version_answer(r, plan)
            for r in rows
            if plan.version_visible_to(str(r.snapshot.get("status")), actor.nation)
        ]


async def plan_version(db: Database, actor: Actor, plan_id: str, version: int) -> dict[str, Any]:
    plan = await get_plan(db, actor, plan_id)
    async with db.sessions() as session:
        row = await session.get(PlanVersionRow, (plan_id, version))
    if row is None or not plan.version_visible_to(str(row.snapshot.get("status")), actor.nation):
        raise NotFound(f"plan {plan_id} has no version {version}")
    return _version_answer(row, plan)


def _version_answer(row: PlanVersionRow, plan: NationalPlan) -> dict[str, Any]:
    answer = {**row.snapshot, "recorded_at": row.recorded_at.isoformat()}
    if answer.get("superseded_by") and answer["superseded_by"] != plan.superseded_by:
        answer["superseded_by"] = None  # the caller may not see the successor
    return answer
