"""Use cases of the plans service: each is one unit of work (domain rows and events in one transaction)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.contracts import Releasability, ReleasabilityScope
from icep.contracts.plans import PlanCreated, PlanSubmitted
from icep.plans.domain import Actor, NationalPlan, PlanStatus
from icep.plans.models import PlanRow
from icep.platform.db import Database
from icep.platform.errors import NotFound, PreconditionFailed
from icep.platform.events import OutgoingEvent, utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWorkFactory

log = logging.getLogger("icep.plans")


@dataclass(frozen=True)
class DraftPlan:
    title: str
    period_start: date
    period_end: date
    capability_areas: tuple[str, ...]
    release_scope: ReleasabilityScope
    release_nations: tuple[str, ...]


def _to_domain(row: PlanRow) -> NationalPlan:
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
    )


def _store(row: PlanRow, plan: NationalPlan) -> None:
    row.status = plan.status.value
    row.version = plan.version
    row.submitted_at = plan.submitted_at
    row.history = [[s, who, at.isoformat()] for s, who, at in plan.history]


def _new_row(plan: NationalPlan) -> PlanRow:
    row = PlanRow(
        id=plan.id,
        nation=plan.nation,
        title=plan.title,
        period_start=plan.period_start,
        period_end=plan.period_end,
        capability_areas=list(plan.capability_areas),
        release_scope=plan.releasability.scope.value,
        release_nations=list(plan.releasability.nations),
        status=plan.status.value,
        version=plan.version,
        created_by=plan.created_by,
        created_at=plan.created_at,
    )
    _store(row, plan)
    return row


def _event_fields(plan: NationalPlan) -> dict[str, Any]:
    return {
        "plan_id": plan.id,
        "nation": plan.nation,
        "title": plan.title,
        "period_start": plan.period_start,
        "period_end": plan.period_end,
        "version": plan.version,
    }


async def create_plan(uow: UnitOfWorkFactory, actor: Actor, draft: DraftPlan) -> NationalPlan:
    now = utcnow()
    plan = NationalPlan.draft(
        id=new_id(),
        actor=actor,
        title=draft.title,
        period_start=draft.period_start,
        period_end=draft.period_end,
        capability_areas=draft.capability_areas,
        release_scope=draft.release_scope,
        release_nations=draft.release_nations,
        now=now,
    )
    async with uow() as tx:
        tx.session.add(_new_row(plan))
        tx.publish(
            OutgoingEvent(
                payload=PlanCreated(**_event_fields(plan), created_by=actor.id, created_at=now),
                subject=plan.id,
                releasability=plan.event_releasability(),
            )
        )
    return plan


async def _load_for_update(session: AsyncSession, actor: Actor, plan_id: str) -> PlanRow:
    row = (
        await session.execute(select(PlanRow).where(col(PlanRow.id) == plan_id).with_for_update())
    ).scalar_one_or_none()
    if row is None or not _to_domain(row).visible_to(actor.nation, actor.roles):
        raise NotFound(f"no plan {plan_id}")
    return row


def _check_version(plan: NationalPlan, expected_version: int | None) -> None:
    if expected_version is not None and expected_version != plan.version:
        raise PreconditionFailed(
            f"the plan is at version {plan.version}, not {expected_version}", current_version=plan.version
        )


async def submit_plan(
    uow: UnitOfWorkFactory, actor: Actor, plan_id: str, expected_version: int | None
) -> NationalPlan:
    async with uow() as tx:
        row = await _load_for_update(tx.session, actor, plan_id)
        plan = _to_domain(row)
        _check_version(plan, expected_version)
        now = utcnow()
        submitted = plan.submit(actor, now)
        _store(row, submitted)
        tx.publish(
            OutgoingEvent(
                payload=PlanSubmitted(**_event_fields(submitted), submitted_by=actor.id, submitted_at=now),
                subject=submitted.id,
                releasability=submitted.event_releasability(),
            )
        )
    log.info(
        "plan %s of %s submitted by %s (version %d)",
        submitted.id,
        submitted.nation,
        actor.id,
        submitted.version,
    )
    return submitted


async def get_plan(db: Database, actor: Actor, plan_id: str) -> NationalPlan:
    async with db.sessions() as session:
        row = await session.get(PlanRow, plan_id)
    if row is None:
        raise NotFound(f"no plan {plan_id}")
    plan = _to_domain(row)
    if not plan.visible_to(actor.nation, actor.roles):
        raise NotFound(f"no plan {plan_id}")
    return plan


async def list_plans(
    db: Database, actor: Actor, *, limit: int, after: str | None
) -> tuple[list[NationalPlan], str | None]:
    """Plans the caller may see, oldest first (ids are UUIDv7, so id order is creation order)."""
    found: list[NationalPlan] = []
    cursor = after
    async with db.sessions() as session:
        while len(found) < limit:
            query = select(PlanRow).order_by(col(PlanRow.id)).limit(limit * 2)
            if cursor:
                query = query.where(col(PlanRow.id) > cursor)
            rows = (await session.execute(query)).scalars().all()
            if not rows:
                return found, None
            for row in rows:
                cursor = row.id
                plan = _to_domain(row)
                if plan.visible_to(actor.nation, actor.roles):
                    found.append(plan)
                    if len(found) == limit:
                        return found, cursor
    return found, cursor
