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
from icep.platform.openapi import CREATED_ID, from_body, from_path, links, merge_links

router = APIRouter(prefix="/v1/plans", tags=["plans"])


def _answer(response: Response, plan: NationalPlan) -> PlanOut:
    response.headers["ETag"] = etag(plan.version)
    return PlanOut.of(plan)


def _release(r: PlanReleasabilityIn | None) -> tuple[ReleasabilityScope, tuple[str, ...]] | None:
    return None if r is None else (r.scope, tuple(r.nations))


@router.post(
    "",
    status_code=201,
    operation_id="createPlan",
    openapi_extra=links(
        "getPlan",
        "editPlan",
        "submitPlan",
        "withdrawPlan",
        "releasePlan",
        "listPlanVersions",
        status=201,
        if_match=True,
        plan_id=CREATED_ID,
    ),
    summary="Create a draft national plan",
)
async def create_plan(body: PlanCreate, uow: UnitOfWorkDep, response: Response, who: ActorDep) -> PlanOut:
    """A planner of a nation (role `planner`, not NATO staff) creates a plan of its own nation, as a draft at
    version 1. A draft is read by the owner nation alone, whatever `releasability` says: `releasability`
    (default: the owner nation only) and `capacity_releasability` take effect when the plan is accepted.
    Raises `icep.plans.plan.created.v1`, marked for the owner nation only.

    Errors: 403 without the `planner` role or for NATO staff; 422 for a period that ends before it starts or
    content that does not fit it (ramp steps or measures outside the period)."""
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
    """The plans the caller's nation may read (see the table in this tag), in pages of `limit` (the `next`
    link carries the cursor); `nation` and `status` narrow the list. Other nations' drafts never appear, nor
    count. Any role may read."""
    plans, after = await repository.list_plans(
        db,
        who,
        limit=limit,
        after=cursor,
        nation=nation,
        status=status.value if status else None,
    )
    return PlanPage(items=[PlanOut.of(p) for p in plans], next=next_link(request, after))


@router.get(
    "/{plan_id}",
    operation_id="getPlan",
    openapi_extra=links(
        "editPlan",
        "submitPlan",
        "withdrawPlan",
        "releasePlan",
        "listPlanVersions",
        if_match=True,
        plan_id=from_path("plan_id"),
    ),
    summary="One national plan",
)
async def get_plan(plan_id: str, db: DatabaseDep, response: Response, who: ActorDep) -> PlanOut:
    """The plan as it stands, with its `ETag` (the version to send back as `If-Match` with a change). 404 when
    the caller's nation may not read it (a draft of another nation, a plan not released to it), exactly as for
    a plan that does not exist."""
    return _answer(response, await repository.get_plan(db, who, plan_id))


@router.patch(
    "/{plan_id}",
    operation_id="editPlan",
    openapi_extra=links("getPlan", "submitPlan", "withdrawPlan", if_match=True, plan_id=from_path("plan_id")),
    summary="Edit a draft plan",
)
async def edit_plan(
    plan_id: str, body: PlanPatch, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    """The owner's planners edit a draft: the fields given replace what was there, and a given `content`
    replaces the whole content (commitments and measures). Requires `If-Match` with the plan's `ETag` (428
    without, 412 when stale). Publishes no event: a draft is the owner's business alone.

    Errors: 403 for another nation or without `planner`; 409 when the plan is not a draft; 422 when the period
    or content do not fit."""
    changes = use_cases.PlanChanges(
        title=body.title,
        period_start=body.period_start,
        period_end=body.period_end,
        capability_areas=None if body.capability_areas is None else tuple(body.capability_areas),
        content=None if body.content is None else body.content.to_domain(),
    )
    return _answer(response, await use_cases.edit_plan(uow, who, plan_id, expected, changes))


@router.post(
    "/{plan_id}/submit",
    operation_id="submitPlan",
    openapi_extra=links(
        "getPlan", "startReview", "returnPlan", "withdrawPlan", if_match=True, plan_id=from_path("plan_id")
    ),
    summary="Submit a draft plan for NATO review",
)
async def submit_plan(
    plan_id: str, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    """The owner's planners submit a draft to NATO: `draft` -> `submitted`. From now on NATO staff read the
    plan too (other nations still do not). Requires `If-Match` with the plan's `ETag` (428 without, 412 when
    stale). Raises `icep.plans.plan.submitted.v1`, marked for the owner and NATO.

    Errors: 403 for another nation or without `planner`; 409 when the plan is not a draft."""
    return _answer(response, await use_cases.submit_plan(uow, who, plan_id, expected))


@router.post(
    "/{plan_id}/start-review",
    operation_id="startReview",
    openapi_extra=links("getPlan", "acceptPlan", "returnPlan", if_match=True, plan_id=from_path("plan_id")),
    summary="NATO starts reviewing a plan",
)
async def start_review(
    plan_id: str, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    """A NATO reviewer (nation `NATO`, role `reviewer`) starts the review: `submitted` -> `under_review`.
    Requires `If-Match` with the plan's `ETag` (428 without, 412 when stale). Raises
    `icep.plans.plan.review_started.v1` (owner and NATO).

    Errors: 403 for anyone but NATO reviewers; 409 when the plan is not submitted."""
    return _answer(response, await use_cases.start_review(uow, who, plan_id, expected))


@router.post(
    "/{plan_id}/accept",
    operation_id="acceptPlan",
    openapi_extra=merge_links(
        links("getPlan", "releasePlan", "listPlanVersions", if_match=True, plan_id=from_path("plan_id")),
        links(
            "reportProgress",
            if_match=True,
            plan_id=from_path("plan_id"),
            commitment_key=from_body("content/commitments/0/key"),
        ),
    ),
    summary="NATO accepts a plan under review",
)
async def accept_plan(
    plan_id: str, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    """A NATO reviewer accepts a plan under review: `under_review` -> `accepted`. Now the plan is read by
    whoever its `releasability` names (besides the owner and NATO), and its capacity figures also by its
    `capacity_releasability`. An accepted plan of the same nation for the same period is superseded. Requires
    `If-Match` with the plan's `ETag` (428 without, 412 when stale). Raises `icep.plans.plan.accepted.v1`,
    then one `icep.plans.capacity.committed.v1` per commitment (marked for the capacity figures' readers) and
    `icep.plans.plan.superseded.v1` for the plan it replaces.

    Errors: 403 for anyone but NATO reviewers; 409 when the plan is not under review."""
    return _answer(response, await use_cases.accept_plan(uow, who, plan_id, expected))


@router.post(
    "/{plan_id}/return",
    operation_id="returnPlan",
    openapi_extra=links("getPlan", "redraftPlan", if_match=True, plan_id=from_path("plan_id")),
    summary="NATO returns a plan, with reasons",
)
async def return_plan(
    plan_id: str, body: ReturnIn, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    """A NATO reviewer returns a submitted plan, or one under review, to its nation with at least one reason:
    -> `returned` (the owner may take it back to draft with `redraft`). Requires `If-Match` with the plan's
    `ETag` (428 without, 412 when stale). Raises `icep.plans.plan.returned.v1` with the reasons (owner and
    NATO).

    Errors: 403 for anyone but NATO reviewers; 409 in another state; 422 without a reason."""
    plan = await use_cases.return_plan(uow, who, plan_id, expected, body.reasons)
    return _answer(response, plan)


@router.post(
    "/{plan_id}/redraft",
    operation_id="redraftPlan",
    openapi_extra=links("getPlan", "editPlan", "submitPlan", if_match=True, plan_id=from_path("plan_id")),
    summary="Take a returned plan back to draft",
)
async def redraft_plan(
    plan_id: str, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    """The owner's planners take a returned plan back to draft to rework it: `returned` -> `draft`. NATO staff
    no longer read it until it is submitted again. Requires `If-Match` with the plan's `ETag` (428 without,
    412 when stale). Publishes no event (the owner's business).

    Errors: 403 for another nation or without `planner`; 409 when the plan is not returned."""
    return _answer(response, await use_cases.redraft_plan(uow, who, plan_id, expected))


@router.post(
    "/{plan_id}/withdraw",
    operation_id="withdrawPlan",
    openapi_extra=links("getPlan", "listPlanVersions", plan_id=from_path("plan_id")),
    summary="Withdraw a draft or submitted plan",
)
async def withdraw_plan(
    plan_id: str, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    """The owner's planners withdraw a draft or a submitted plan: -> `withdrawn` (final). NATO staff keep
    reading it only if it had been submitted. Requires `If-Match` with the plan's `ETag` (428 without, 412
    when stale). Raises `icep.plans.plan.withdrawn.v1`.

    Errors: 403 for another nation or without `planner`; 409 in any other state (a plan under review cannot be
    withdrawn)."""
    return _answer(response, await use_cases.withdraw_plan(uow, who, plan_id, expected))


@router.post(
    "/{plan_id}/release",
    operation_id="releasePlan",
    openapi_extra=links("getPlan", if_match=True, plan_id=from_path("plan_id")),
    summary="Set who may read the plan once accepted, and its capacity figures",
)
async def release_plan(
    plan_id: str, body: ReleaseIn, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    """The owner's planners set who may read the plan once it is accepted (`releasability`) and, separately
    and possibly wider, who may read its capacity figures (`capacity_releasability`: commitments, progress
    actuals, the capacity summary; null: the plan's readers). Allowed in every state but `withdrawn` and
    `superseded`; before acceptance it changes nobody's view yet (drafts stay the owner's, submitted plans the
    owner's and NATO's). Requires `If-Match` with the plan's `ETag` (428 without, 412 when stale). Raises
    `icep.plans.plan.released.v1`, marked for the readers after the change.

    Errors: 403 for another nation or without `planner`; 409 when withdrawn or superseded."""
    whole = _release(body.releasability)
    assert whole is not None
    plan = await use_cases.release_plan(
        uow, who, plan_id, expected, whole, _release(body.capacity_releasability)
    )
    return _answer(response, plan)


@router.get(
    "/{plan_id}/versions",
    operation_id="listPlanVersions",
    openapi_extra=links("getPlanVersion", plan_id=from_path("plan_id"), version=from_body("items/0/version")),
    summary="Every version of a plan",
)
async def list_versions(plan_id: str, db: DatabaseDep, who: ActorDep) -> VersionsOut:
    """Every version of the plan the caller may read: the owner reads all of them, NATO staff every version
    but drafts, other readers only accepted and superseded versions. 404 when the caller may not read the plan
    now."""
    return VersionsOut(items=await repository.plan_versions(db, who, plan_id))


@router.get("/{plan_id}/versions/{version}", operation_id="getPlanVersion", summary="One version of a plan")
async def get_version(
    plan_id: str, version: Annotated[int, Path(ge=1, le=2**31 - 1)], db: DatabaseDep, who: ActorDep
) -> dict[str, Any]:
    """One earlier version of the plan as it was then (its content and status), under the same rule as the
    list of versions: 404 when the caller may not read that version or the plan."""
    return await repository.plan_version(db, who, plan_id, version)
