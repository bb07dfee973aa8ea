"""HTTP routes of national plans: parse, authorize, call one use case, shape the answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from icep.contracts import NationCode, ReleasabilityScope
from icep.plans.plans import repository, use_cases
from icep.plans.plans.model import NationalPlan, PlanStatus
from icep.plans.plans.schemas import (
    PlanCreate,
    PlanOut,
    PlanPage,
    PlanPatch,
    PlanReleasabilityIn,
    ReleaseIn,
    ReturnIn,
    VersionsOut,
)
from icep.platform.app import DatabaseDep, UnitOfWorkDep
from icep.platform.auth import ActorDep
from icep.platform.http import IfMatch, etag, next_link

router = APIRouter(prefix="/v1/plans", tags=["plans"])


def _answer(response: Response, plan: NationalPlan) -> PlanOut:
    response.headers["ETag"] = etag(plan.version)
    return PlanOut.of(plan)


def _release(r: PlanReleasabilityIn | None) -> tuple[ReleasabilityScope, tuple[str, ...]] | None:
    return None if r is None else (r.scope, tuple(r.nations))


@router.post("", status_code=201, operation_id="createPlan", summary="Create a draft national plan")
async def create_plan(body: PlanCreate, uow: UnitOfWorkDep, response: Response, who: ActorDep) -> PlanOut:
    plan = await use_cases.create_plan(
        uow,
        who,
        use_cases.DraftPlan(
            title=body.title,
            period_start=body.period_start,
            period_end=body.period_end,
            capability_areas=tuple(body.capability_areas),
            release_scope=body.releasability.scope,
            release_nations=tuple(body.releasability.nations),
            content=body.content.to_domain(),
            capacity_release=_release(body.capacity_releasability),
        ),
    )
    response.headers["Location"] = f"/v1/plans/{plan.id}"
    return _answer(response, plan)


@router.get("", operation_id="listPlans", summary="National plans the caller may see")
async def list_plans(
    request: Request,
    db: DatabaseDep,
    who: ActorDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    nation: Annotated[NationCode | None, Query()] = None,
    status: Annotated[PlanStatus | None, Query()] = None,
) -> PlanPage:
    plans, after = await repository.list_plans(
        db,
        who,
        limit=limit,
        after=cursor,
        nation=nation,
        status=status.value if status else None,
    )
    return PlanPage(items=[PlanOut.of(p) for p in plans], next=next_link(request, after))


@router.get("/{plan_id}", operation_id="getPlan", summary="One national plan")
async def get_plan(plan_id: str, db: DatabaseDep, response: Response, who: ActorDep) -> PlanOut:
    return _answer(response, await repository.get_plan(db, who, plan_id))


@router.patch(
    "/{plan_id}",
    operation_id="editPlan",
    summary="Edit a draft (If-Match required); a given `content` replaces the whole content",
)
async def edit_plan(
    plan_id: str, body: PlanPatch, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    changes = use_cases.PlanChanges(
        title=body.title,
        period_start=body.period_start,
        period_end=body.period_end,
        capability_areas=None if body.capability_areas is None else tuple(body.capability_areas),
        content=None if body.content is None else body.content.to_domain(),
    )
    return _answer(response, await use_cases.edit_plan(uow, who, plan_id, expected, changes))


@router.post("/{plan_id}/submit", operation_id="submitPlan", summary="Submit a draft plan for NATO review")
async def submit_plan(
    plan_id: str, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    return _answer(response, await use_cases.submit_plan(uow, who, plan_id, expected))


@router.post("/{plan_id}/start-review", operation_id="startReview", summary="NATO starts reviewing a plan")
async def start_review(
    plan_id: str, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    return _answer(response, await use_cases.start_review(uow, who, plan_id, expected))


@router.post("/{plan_id}/accept", operation_id="acceptPlan", summary="NATO accepts a plan under review")
async def accept_plan(
    plan_id: str, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    return _answer(response, await use_cases.accept_plan(uow, who, plan_id, expected))


@router.post("/{plan_id}/return", operation_id="returnPlan", summary="NATO returns a plan, with reasons")
async def return_plan(
    plan_id: str, body: ReturnIn, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    plan = await use_cases.return_plan(uow, who, plan_id, expected, body.reasons)
    return _answer(response, plan)


@router.post("/{plan_id}/redraft", operation_id="redraftPlan", summary="Take a returned plan back to draft")
async def redraft_plan(
    plan_id: str, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    return _answer(response, await use_cases.redraft_plan(uow, who, plan_id, expected))


@router.post("/{plan_id}/withdraw", operation_id="withdrawPlan", summary="Withdraw a draft or submitted plan")
async def withdraw_plan(
    plan_id: str, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    return _answer(response, await use_cases.withdraw_plan(uow, who, plan_id, expected))


@router.post(
    "/{plan_id}/release",
    operation_id="releasePlan",
    summary="Set who may see the plan once accepted, and its capacity figures (may be wider)",
)
async def release_plan(
    plan_id: str, body: ReleaseIn, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    whole = _release(body.releasability)
    assert whole is not None
    plan = await use_cases.release_plan(
        uow, who, plan_id, expected, whole, _release(body.capacity_releasability)
    )
    return _answer(response, plan)


@router.get("/{plan_id}/versions", operation_id="listPlanVersions", summary="Every version of a plan")
async def list_versions(plan_id: str, db: DatabaseDep, who: ActorDep) -> VersionsOut:
    return VersionsOut(items=await repository.plan_versions(db, who, plan_id))


@router.get("/{plan_id}/versions/{version}", operation_id="getPlanVersion", summary="One version of a plan")
async def get_version(
    plan_id: str, version: Annotated[int, Path(ge=1, le=2**31 - 1)], db: DatabaseDep, who: ActorDep
) -> dict[str, Any]:
    return await repository.plan_version(db, who, plan_id, version)
