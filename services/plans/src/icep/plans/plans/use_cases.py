"""Use cases of national plans: each is one unit of work (plan rows and events in one transaction)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select, text
from sqlmodel import col

from icep.contracts import EventPayload, Releasability, ReleasabilityScope
from icep.contracts.plans import (
    PlanAccepted,
    PlanCreated,
    PlanReleased,
    PlanReturned,
    PlanReviewStarted,
    PlanSubmitted,
    PlanSuperseded,
    PlanWithdrawn,
)
from icep.plans.events import committed, event_fields, publish
from icep.plans.plans.model import Actor, NationalPlan, PlanContent, PlanStatus
from icep.plans.plans.repository import insert_new, keep_version, load_for_update, store, to_domain
from icep.plans.plans.rows import PlanRow
from icep.platform.db import advisory_key
from icep.platform.domain import check_version
from icep.platform.errors import Conflict, PreconditionRequired
from icep.platform.events import utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger("icep.plans")


@dataclass(frozen=True)
class DraftPlan:
    title: str
    period_start: date
    period_end: date
    capability_areas: tuple[str, ...]
    release_scope: ReleasabilityScope
    release_nations: tuple[str, ...]
    content: PlanContent | None = None
    capacity_release: tuple[ReleasabilityScope, tuple[str, ...]] | None = None


@dataclass(frozen=True)
class PlanChanges:
    title: str | None = None
    period_start: date | None = None
    period_end: date | None = None
    capability_areas: tuple[str, ...] | None = None
    content: PlanContent | None = None


# --- commands ----------------------------------------------------------------------------------------------


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
        content=draft.content,
        capacity_releasability=draft.capacity_release,
    )
    async with uow() as tx:
        await insert_new(tx.session, plan)
        await keep_version(tx.session, plan, now)
        publish(tx, plan, PlanCreated(**event_fields(plan), created_by=actor.id, created_at=now))
    return plan


Change = Callable[[NationalPlan, datetime], NationalPlan]
Announce = Callable[[NationalPlan, datetime], EventPayload]


async def _change(
    uow: UnitOfWorkFactory,
    actor: Actor,
    plan_id: str,
    expected_version: int | None,
    change: Change,
    announce: Announce | None,
    after: Callable[[UnitOfWork, NationalPlan, datetime], Any] | None = None,
) -> NationalPlan:
    async with uow() as tx:
        row = await load_for_update(tx.session, actor, plan_id)
        plan = to_domain(row)
        check_version("plan", plan.version, expected_version)
        now = utcnow()
        changed = change(plan, now)
        store(row, changed)
        await keep_version(tx.session, changed, now)
        if announce is not None:  # editing and redrafting a draft are the owner's business alone
            publish(tx, changed, announce(changed, now))
        if after is not None:
            await after(tx, changed, now)
    log.info(
        "plan %s of %s is %s (version %d) after %s",
        changed.id,
        changed.nation,
        changed.status.value,
        changed.version,
        actor.id,
    )
    return changed


async def edit_plan(
    uow: UnitOfWorkFactory, actor: Actor, plan_id: str, expected_version: int | None, changes: PlanChanges
) -> NationalPlan:
    if expected_version is None:
        raise PreconditionRequired("editing a draft needs If-Match with the ETag of the version you read")

    return await _change(
        uow,
        actor,
        plan_id,
        expected_version,
        lambda p, _now: p.edit(
            actor,
            title=changes.title,
            period_start=changes.period_start,
            period_end=changes.period_end,
            capability_areas=changes.capability_areas,
            content=changes.content,
        ),
        None,
    )


async def submit_plan(
    uow: UnitOfWorkFactory, actor: Actor, plan_id: str, expected_version: int | None
) -> NationalPlan:
    return await _change(
        uow,
        actor,
        plan_id,
        expected_version,
        lambda p, now: p.submit(actor, now),
        lambda p, now: PlanSubmitted(**event_fields(p), submitted_by=actor.id, submitted_at=now),
    )


async def start_review(
    uow: UnitOfWorkFactory, actor: Actor, plan_id: str, expected_version: int | None
) -> NationalPlan:
    return await _change(
        uow,
        actor,
        plan_id,
        expected_version,
        lambda p, now: p.start_review(actor, now),
        lambda p, now: PlanReviewStarted(**event_fields(p), reviewer=actor.id, started_at=now),
    )


async def return_plan(
    uow: UnitOfWorkFactory, actor: Actor, plan_id: str, expected_version: int | None, reasons: Sequence[str]
) -> NationalPlan:
    return await _change(
        uow,
        actor,
        plan_id,
        expected_version,
        lambda p, now: p.return_(actor, tuple(reasons), now),
        lambda p, now: PlanReturned(
            **event_fields(p), returned_by=actor.id, returned_at=now, reasons=list(p.returned_reasons)
        ),
    )


async def redraft_plan(
    uow: UnitOfWorkFactory, actor: Actor, plan_id: str, expected_version: int | None
) -> NationalPlan:
    """A returned plan goes back to draft to be edited; the redraft is the owner's business alone."""
    return await _change(uow, actor, plan_id, expected_version, lambda p, now: p.redraft(actor, now), None)


async def withdraw_plan(
    uow: UnitOfWorkFactory, actor: Actor, plan_id: str, expected_version: int | None
) -> NationalPlan:
    return await _change(
        uow,
        actor,
        plan_id,
        expected_version,
        lambda p, now: p.withdraw(actor, now),
        lambda p, now: PlanWithdrawn(**event_fields(p), withdrawn_by=actor.id, withdrawn_at=now),
    )


async def accept_plan(
    uow: UnitOfWorkFactory, actor: Actor, plan_id: str, expected_version: int | None
) -> NationalPlan:
    async def commit_and_supersede(tx: UnitOfWork, plan: NationalPlan, now: datetime) -> None:
        if tx.session.bind is not None and tx.session.bind.dialect.name == "postgresql":
            # Two accepts for one nation and period must see each other: one at a time.
            lineage = f"icep-plans-{plan.nation}-{plan.period_start}-{plan.period_end}"
            await tx.session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": advisory_key(lineage)})
        for commitment in plan.content.commitments:
            publish(tx, plan, committed(plan, commitment), capacity=True)
        older = (
            (
                await tx.session.execute(
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
        for row in older:
            previous = to_domain(row)
            if previous.created_at > plan.created_at:
                raise Conflict(
                    f"a newer version of {plan.nation}'s plan for this period ({previous.id}) is accepted;"
                    " accept or supersede from the newest version",
                    newer_plan_id=previous.id,
                )
            if not plan.supersedes(previous):
                continue
            superseded = previous.supersede(plan, now)
            store(row, superseded)
            await keep_version(tx.session, superseded, now)
            publish(
                tx,
                superseded,
                PlanSuperseded(
                    **event_fields(superseded),
                    # Named only when everyone told of the old plan may also see the new one.
                    superseded_by=plan.id if superseded.readers() <= plan.readers() else None,
                    superseded_at=now,
                ),
            )

    return await _change(
        uow,
        actor,
        plan_id,
        expected_version,
        lambda p, now: p.accept(actor, now),
        lambda p, now: PlanAccepted(
            **event_fields(p), accepted_by=actor.id, accepted_at=now, commitments=len(p.content.commitments)
        ),
        commit_and_supersede,
    )


async def release_plan(
    uow: UnitOfWorkFactory,
    actor: Actor,
    plan_id: str,
    expected_version: int | None,
    releasability: tuple[ReleasabilityScope, tuple[str, ...]],
    capacity: tuple[ReleasabilityScope, tuple[str, ...]] | None,
) -> NationalPlan:
    def change(p: NationalPlan, now: datetime) -> NationalPlan:
        whole = Releasability(owner=p.nation, scope=releasability[0], nations=releasability[1])
        part = (
            None
            if capacity is None
            else Releasability(owner=p.nation, scope=capacity[0], nations=capacity[1])
        )
        return p.release(actor, whole, part)

    def announce(p: NationalPlan, now: datetime) -> PlanReleased:
        return PlanReleased(
            **event_fields(p),
            released_by=actor.id,
            released_at=now,
            # Who may read the plan and its figures now: the marking of its events from here on.
            releasable_to=p.event_releasability().marking(),
            capacity_releasable_to=p.capacity_event_releasability().marking(),
        )

    return await _change(uow, actor, plan_id, expected_version, change, announce)
