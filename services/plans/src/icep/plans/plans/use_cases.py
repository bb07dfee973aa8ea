"""Use cases of national plans: each is one unit of work (plan rows and events in one transaction)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from icep.contracts import Releasability, ReleasabilityScope
from icep.plans.plans.model import Actor, NationalPlan, PlanContent
from icep.plans.plans.repository import PlanRepository
from icep.platform.errors import Conflict, PreconditionRequired
from icep.platform.events import utcnow
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
    content: PlanContent | None = None
    capacity_release: tuple[ReleasabilityScope, tuple[str, ...]] | None = None


@dataclass(frozen=True)
class PlanChanges:
    title: str | None = None
    period_start: date | None = None
    period_end: date | None = None
    capability_areas: tuple[str, ...] | None = None
    content: PlanContent | None = None


def _changed(plan: NationalPlan, actor: Actor) -> NationalPlan:
    log.info(
        "plan %s of %s is %s (version %d) after %s",
        plan.id,
        plan.nation,
        plan.status.value,
        plan.version,
        actor.id,
    )
    return plan


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
        await PlanRepository(tx).add(plan)
    return plan


async def edit_plan(
    uow: UnitOfWorkFactory, actor: Actor, plan_id: str, expected_version: int | None, changes: PlanChanges
) -> NationalPlan:
    if expected_version is None:
        raise PreconditionRequired("editing a draft needs If-Match with the ETag of the version you read")
    async with uow() as tx:
        plans = PlanRepository(tx)
        plan = await plans.get_for_update(actor, plan_id, expected_version)
        plan = plan.edit(
            actor,
            title=changes.title,
            period_start=changes.period_start,
            period_end=changes.period_end,
            capability_areas=changes.capability_areas,
            content=changes.content,
            now=utcnow(),
        )
        await plans.save(plan)
    return _changed(plan, actor)


async def submit_plan(
    uow: UnitOfWorkFactory, actor: Actor, plan_id: str, expected_version: int | None
) -> NationalPlan:
    async with uow() as tx:
        plans = PlanRepository(tx)
        plan = await plans.get_for_update(actor, plan_id, expected_version)
        plan = plan.submit(actor, utcnow())
        await plans.save(plan)
    return _changed(plan, actor)


async def start_review(
    uow: UnitOfWorkFactory, actor: Actor, plan_id: str, expected_version: int | None
) -> NationalPlan:
    async with uow() as tx:
        plans = PlanRepository(tx)
        plan = await plans.get_for_update(actor, plan_id, expected_version)
        plan = plan.start_review(actor, utcnow())
        await plans.save(plan)
    return _changed(plan, actor)


async def return_plan(
    uow: UnitOfWorkFactory, actor: Actor, plan_id: str, expected_version: int | None, reasons: Sequence[str]
) -> NationalPlan:
    async with uow() as tx:
        plans = PlanRepository(tx)
        plan = await plans.get_for_update(actor, plan_id, expected_version)
        plan = plan.return_(actor, tuple(reasons), utcnow())
        await plans.save(plan)
    return _changed(plan, actor)


async def redraft_plan(
    uow: UnitOfWorkFactory, actor: Actor, plan_id: str, expected_version: int | None
) -> NationalPlan:
    """A returned plan goes back to draft to be edited; the redraft is the owner's business alone."""
    async with uow() as tx:
        plans = PlanRepository(tx)
        plan = await plans.get_for_update(actor, plan_id, expected_version)
        plan = plan.redraft(actor, utcnow())
        await plans.save(plan)
    return _changed(plan, actor)


async def withdraw_plan(
    uow: UnitOfWorkFactory, actor: Actor, plan_id: str, expected_version: int | None
) -> NationalPlan:
    async with uow() as tx:
        plans = PlanRepository(tx)
        plan = await plans.get_for_update(actor, plan_id, expected_version)
        plan = plan.withdraw(actor, utcnow())
        await plans.save(plan)
    return _changed(plan, actor)


async def accept_plan(
    uow: UnitOfWorkFactory, actor: Actor, plan_id: str, expected_version: int | None
) -> NationalPlan:
    """Accepting publishes the plan's acceptance and its capacity commitments, then supersedes the plan it
    replaces: the older accepted plan of the same nation and period."""
    async with uow() as tx:
        plans = PlanRepository(tx)
        plan = await plans.get_for_update(actor, plan_id, expected_version)
        now = utcnow()
        plan = plan.accept(actor, now)
        await plans.save(plan)
        for previous in await plans.accepted_of_lineage(plan):
            if previous.created_at > plan.created_at:
                raise Conflict(
                    f"a newer version of {plan.nation}'s plan for this period ({previous.id}) is accepted;"
                    " accept or supersede from the newest version",
                    newer_plan_id=previous.id,
                )
            if plan.supersedes(previous):
                await plans.save(previous.supersede(plan, now))
    return _changed(plan, actor)


async def release_plan(
    uow: UnitOfWorkFactory,
    actor: Actor,
    plan_id: str,
    expected_version: int | None,
    releasability: tuple[ReleasabilityScope, tuple[str, ...]],
    capacity: tuple[ReleasabilityScope, tuple[str, ...]] | None,
) -> NationalPlan:
    async with uow() as tx:
        plans = PlanRepository(tx)
        plan = await plans.get_for_update(actor, plan_id, expected_version)
        whole = Releasability(owner=plan.nation, scope=releasability[0], nations=releasability[1])
        part = (
            None
            if capacity is None
            else Releasability(owner=plan.nation, scope=capacity[0], nations=capacity[1])
        )
        plan = plan.release(actor, whole, part, utcnow())
        await plans.save(plan)
    return _changed(plan, actor)
