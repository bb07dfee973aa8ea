"""HTTP routes of the plans service: parse, authorize, call one use case, shape the answer."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from icep.contracts import NationCode, ReleasabilityScope
from icep.plans import service
from icep.plans.domain import Actor, NationalPlan
from icep.platform.app import database, unit_of_work
from icep.platform.auth import PrincipalDep
from icep.platform.http import etag, if_match_version, next_link

router = APIRouter(prefix="/v1/plans", tags=["plans"])


class ReleasabilityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: ReleasabilityScope = ReleasabilityScope.NATIONAL
    nations: list[NationCode] = Field(
        default_factory=list, max_length=40, description="Selected nations, or the named partners"
    )


class PlanCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "title": "German munitions ramp-up 2025-2029",
                    "period_start": "2025-01-01",
                    "period_end": "2029-12-31",
                    "capability_areas": ["munitions"],
                    "releasability": {"scope": "allies"},
                }
            ]
        },
    )

    title: str = Field(min_length=1, max_length=300)
    period_start: date
    period_end: date
    capability_areas: list[str] = Field(default_factory=list, max_length=20)
    releasability: ReleasabilityIn = Field(default_factory=ReleasabilityIn)


class PlanOut(BaseModel):
    id: str
    nation: str
    title: str
    period_start: date
    period_end: date
    capability_areas: list[str]
    releasability: ReleasabilityIn
    status: str
    version: int
    created_by: str
    created_at: datetime
    submitted_at: datetime | None

    @classmethod
    def of(cls, plan: NationalPlan) -> PlanOut:
        return cls(
            id=plan.id,
            nation=plan.nation,
            title=plan.title,
            period_start=plan.period_start,
            period_end=plan.period_end,
            capability_areas=list(plan.capability_areas),
            releasability=ReleasabilityIn(
                scope=plan.releasability.scope, nations=list(plan.releasability.nations)
            ),
            status=plan.status.value,
            version=plan.version,
            created_by=plan.created_by,
            created_at=plan.created_at,
            submitted_at=plan.submitted_at,
        )


class PlanPage(BaseModel):
    items: list[PlanOut]
    next: str | None


def actor(principal: PrincipalDep) -> Actor:
    return Actor(id=principal.client_id, nation=principal.nation, roles=principal.roles)


ActorDep = Annotated[Actor, Depends(actor)]
IfMatch = Annotated[int | None, Depends(if_match_version)]


def _answer(response: Response, plan: NationalPlan) -> PlanOut:
    response.headers["ETag"] = etag(plan.version)
    return PlanOut.of(plan)


@router.post("", status_code=201, operation_id="createPlan", summary="Create a draft national plan")
async def create_plan(body: PlanCreate, request: Request, response: Response, who: ActorDep) -> PlanOut:
    plan = await service.create_plan(
        unit_of_work(request),
        who,
        service.DraftPlan(
            title=body.title,
            period_start=body.period_start,
            period_end=body.period_end,
            capability_areas=tuple(body.capability_areas),
            release_scope=body.releasability.scope,
            release_nations=tuple(body.releasability.nations),
        ),
    )
    response.headers["Location"] = f"/v1/plans/{plan.id}"
    return _answer(response, plan)


@router.get("", operation_id="listPlans", summary="National plans the caller may see")
async def list_plans(
    request: Request,
    who: ActorDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> PlanPage:
    plans, after = await service.list_plans(database(request), who, limit=limit, after=cursor)
    return PlanPage(items=[PlanOut.of(p) for p in plans], next=next_link(request, after))


@router.get("/{plan_id}", operation_id="getPlan", summary="One national plan")
async def get_plan(plan_id: str, request: Request, response: Response, who: ActorDep) -> PlanOut:
    return _answer(response, await service.get_plan(database(request), who, plan_id))


@router.post("/{plan_id}/submit", operation_id="submitPlan", summary="Submit a draft plan for NATO review")
async def submit_plan(
    plan_id: str, request: Request, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    return _answer(response, await service.submit_plan(unit_of_work(request), who, plan_id, expected))
