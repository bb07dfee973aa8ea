"""HTTP routes of the plans service: parse, authorize, call one use case, shape the answer."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from icep.contracts import NationCode, ReleasabilityScope
from icep.contracts.base import MoneyAmount
from icep.contracts.releasability import ReleasabilityIn
from icep.plans import service
from icep.plans.domain import (
    MeasureKind,
    NationalPlan,
    PlanContent,
    PlanStatus,
)
from icep.plans.settings import PlansSettings
from icep.platform.app import database, runtime_of, unit_of_work
from icep.platform.auth import ActorDep
from icep.platform.http import IfMatchCondition, etag, if_match_version, next_link, optional_if_match

router = APIRouter(prefix="/v1/plans", tags=["plans"])
capacity_router = APIRouter(prefix="/v1/capacity", tags=["capacity"])

Country = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 3166-1 alpha-3")]
Count = Annotated[int, Field(ge=0, le=100_000_000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlanReleasabilityIn(ReleasabilityIn):
    """Who may see a plan, or separately its capacity figures, as a planner gives it: the nation's own
    unless said (the shared rule otherwise: `nations` only with the scopes that name nations)."""

    scope: ReleasabilityScope = ReleasabilityScope.NATIONAL


class PlanReleasabilityOut(BaseModel):
    scope: ReleasabilityScope
    nations: list[str]


class RampStepIn(_In):
    on: date
    output_per_month: Count


class OperatorIn(_In):
    company: str = Field(min_length=1, max_length=200)
    sme: bool = False


class InvestmentIn(_In):
    amount: MoneyAmount = Field(ge=0, le=1e13)
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217")


class BottleneckIn(_In):
    input: str = Field(min_length=1, max_length=200, examples=["nitrocellulose"])
    category: Literal[
        "energetics", "rocket_motors", "microelectronics", "raw_materials", "components", "other"
    ]
    source_countries: list[Country] = Field(min_length=1, max_length=40)
    single_source: bool = False
    stock_cover_days: int | None = Field(default=None, ge=0, le=3650)


class CommitmentIn(_In):
    key: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]{0,99}$", description="Stable within the plan; progress is reported on it"
    )
    product: str = Field(min_length=1, max_length=200, examples=["155mm artillery round"])
    capability_area: str = Field(min_length=1, max_length=100, examples=["munitions"])
    site: str = Field(min_length=1, max_length=200)
    site_country: Country
    unit: str = Field(min_length=1, max_length=50, examples=["rounds"])
    baseline_per_month: Count
    current_per_month: Count
    target_per_month: Count
    ramp: list[RampStepIn] = Field(default_factory=list, max_length=120)
    surge_per_month: Count | None = None
    surge_days: int | None = Field(default=None, ge=0, le=3650)
    lead_time_days: int | None = Field(default=None, ge=0, le=3650)
    operator: OperatorIn
    investment: InvestmentIn | None = None
    bottlenecks: list[BottleneckIn] = Field(default_factory=list, max_length=30)


class MeasureIn(_In):
    kind: MeasureKind
    description: str = Field(min_length=1, max_length=4000)
    starts: date | None = None
    completes: date | None = None


class ContentIn(_In):
    commitments: list[CommitmentIn] = Field(default_factory=list, max_length=200)
    measures: list[MeasureIn] = Field(default_factory=list, max_length=200)

    def to_domain(self) -> PlanContent:
        return service.content_from_json(self.model_dump(mode="json"))


class PlanCreate(_In):
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
    releasability: PlanReleasabilityIn = Field(default_factory=PlanReleasabilityIn)
    capacity_releasability: PlanReleasabilityIn | None = Field(
        default=None, description="Who may see the capacity figures, when wider than the whole plan"
    )
    content: ContentIn = Field(default_factory=ContentIn)


class PlanPatch(_In):
    title: str | None = Field(default=None, min_length=1, max_length=300)
    period_start: date | None = None
    period_end: date | None = None
    capability_areas: list[str] | None = Field(default=None, max_length=20)
    content: ContentIn | None = None


class ReturnIn(_In):
    reasons: list[str] = Field(min_length=1, max_length=50)


class ReleaseIn(_In):
    releasability: PlanReleasabilityIn
    capacity_releasability: PlanReleasabilityIn | None = None


class ProgressIn(_In):
    month: date = Field(description="Any day of the month reported")
    actual_output: Count


class TargetIn(_In):
    capability_area: str = Field(min_length=1, max_length=100, examples=["munitions"])
    product: str = Field(min_length=1, max_length=200, examples=["155mm artillery round"])
    year: int = Field(ge=2000, le=2100)
    required_quantity: Count
    unit: str = Field(min_length=1, max_length=50, examples=["rounds"])


class PlanOut(BaseModel):
    id: str
    nation: str
    title: str
    period_start: date
    period_end: date
    capability_areas: list[str]
    releasability: PlanReleasabilityOut
    capacity_releasability: PlanReleasabilityOut | None
    status: str
    version: int
    created_by: str
    created_at: datetime
    submitted_at: datetime | None
    returned_reasons: list[str]
    superseded_by: str | None
    content: dict[str, Any]

    @classmethod
    def of(cls, plan: NationalPlan) -> PlanOut:
        cap = plan.capacity_releasability
        return cls(
            id=plan.id,
            nation=plan.nation,
            title=plan.title,
            period_start=plan.period_start,
            period_end=plan.period_end,
            capability_areas=list(plan.capability_areas),
            releasability=PlanReleasabilityOut(
                scope=plan.releasability.scope, nations=list(plan.releasability.nations)
            ),
            capacity_releasability=None
            if cap is None
            else PlanReleasabilityOut(scope=cap.scope, nations=list(cap.nations)),
            status=plan.status.value,
            version=plan.version,
            created_by=plan.created_by,
            created_at=plan.created_at,
            submitted_at=plan.submitted_at,
            returned_reasons=list(plan.returned_reasons),
            superseded_by=plan.superseded_by,
            content=service.content_to_json(plan.content),
        )


class PlanPage(BaseModel):
    items: list[PlanOut]
    next: str | None


class VersionsOut(BaseModel):
    items: list[dict[str, Any]]


class ProgressOut(BaseModel):
    plan_id: str
    commitment_key: str
    month: date
    actual_output: int
    planned_output: int
    shortfall: bool


class TargetOut(BaseModel):
    id: str
    capability_area: str
    product: str
    year: int
    required_quantity: int
    unit: str
    set_by: str
    set_at: datetime
    version: int = Field(description="Bumped on each correction; the ETag a correction names in If-Match")


class TargetList(BaseModel):
    items: list[TargetOut]


class SummaryLineOut(BaseModel):
    capability_area: str
    product: str
    unit: str
    year: int
    requirement: int | None
    committed: int
    actual: int | None
    actual_through: date | None
    gap: int | None = Field(description="requirement - committed; positive means not yet covered")
    nations: list[str]
    commitments: int


class SummaryOut(BaseModel):
    items: list[SummaryLineOut]


class DependencyOut(BaseModel):
    input: str
    category: str
    commitments: int
    single_sourced: int
    by_country: dict[str, int]
    dependents: list[dict[str, str]]


class DependenciesOut(BaseModel):
    items: list[DependencyOut]


IfMatch = Annotated[int | None, Depends(if_match_version)]


def _answer(response: Response, plan: NationalPlan) -> PlanOut:
    response.headers["ETag"] = etag(plan.version)
    return PlanOut.of(plan)


def _release(r: PlanReleasabilityIn | None) -> tuple[ReleasabilityScope, tuple[str, ...]] | None:
    return None if r is None else (r.scope, tuple(r.nations))


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
            content=body.content.to_domain(),
            capacity_release=_release(body.capacity_releasability),
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
    nation: Annotated[NationCode | None, Query()] = None,
    status: Annotated[PlanStatus | None, Query()] = None,
) -> PlanPage:
    plans, after = await service.list_plans(
        database(request),
        who,
        limit=limit,
        after=cursor,
        nation=nation,
        status=status.value if status else None,
    )
    return PlanPage(items=[PlanOut.of(p) for p in plans], next=next_link(request, after))


@router.get("/{plan_id}", operation_id="getPlan", summary="One national plan")
async def get_plan(plan_id: str, request: Request, response: Response, who: ActorDep) -> PlanOut:
    return _answer(response, await service.get_plan(database(request), who, plan_id))


@router.patch(
    "/{plan_id}",
    operation_id="editPlan",
    summary="Edit a draft (If-Match required); a given `content` replaces the whole content",
)
async def edit_plan(
    plan_id: str, body: PlanPatch, request: Request, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    changes = service.PlanChanges(
        title=body.title,
        period_start=body.period_start,
        period_end=body.period_end,
        capability_areas=None if body.capability_areas is None else tuple(body.capability_areas),
        content=None if body.content is None else body.content.to_domain(),
    )
    return _answer(response, await service.edit_plan(unit_of_work(request), who, plan_id, expected, changes))


@router.post("/{plan_id}/submit", operation_id="submitPlan", summary="Submit a draft plan for NATO review")
async def submit_plan(
    plan_id: str, request: Request, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    return _answer(response, await service.submit_plan(unit_of_work(request), who, plan_id, expected))


@router.post("/{plan_id}/start-review", operation_id="startReview", summary="NATO starts reviewing a plan")
async def start_review(
    plan_id: str, request: Request, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    return _answer(response, await service.start_review(unit_of_work(request), who, plan_id, expected))


@router.post("/{plan_id}/accept", operation_id="acceptPlan", summary="NATO accepts a plan under review")
async def accept_plan(
    plan_id: str, request: Request, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    return _answer(response, await service.accept_plan(unit_of_work(request), who, plan_id, expected))


@router.post("/{plan_id}/return", operation_id="returnPlan", summary="NATO returns a plan, with reasons")
async def return_plan(
    plan_id: str, body: ReturnIn, request: Request, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    plan = await service.return_plan(unit_of_work(request), who, plan_id, expected, body.reasons)
    return _answer(response, plan)


@router.post("/{plan_id}/redraft", operation_id="redraftPlan", summary="Take a returned plan back to draft")
async def redraft_plan(
    plan_id: str, request: Request, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    return _answer(response, await service.redraft_plan(unit_of_work(request), who, plan_id, expected))


@router.post("/{plan_id}/withdraw", operation_id="withdrawPlan", summary="Withdraw a draft or submitted plan")
async def withdraw_plan(
    plan_id: str, request: Request, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    return _answer(response, await service.withdraw_plan(unit_of_work(request), who, plan_id, expected))


@router.post(
    "/{plan_id}/release",
    operation_id="releasePlan",
    summary="Set who may see the plan once accepted, and its capacity figures (may be wider)",
)
async def release_plan(
    plan_id: str, body: ReleaseIn, request: Request, response: Response, who: ActorDep, expected: IfMatch
) -> PlanOut:
    whole = _release(body.releasability)
    assert whole is not None
    plan = await service.release_plan(
        unit_of_work(request), who, plan_id, expected, whole, _release(body.capacity_releasability)
    )
    return _answer(response, plan)


@router.get("/{plan_id}/versions", operation_id="listPlanVersions", summary="Every version of a plan")
async def list_versions(plan_id: str, request: Request, who: ActorDep) -> VersionsOut:
    return VersionsOut(items=await service.plan_versions(database(request), who, plan_id))


@router.get("/{plan_id}/versions/{version}", operation_id="getPlanVersion", summary="One version of a plan")
async def get_version(
    plan_id: str, version: Annotated[int, Path(ge=1, le=2**31 - 1)], request: Request, who: ActorDep
) -> dict[str, Any]:
    return await service.plan_version(database(request), who, plan_id, version)


@router.post(
    "/{plan_id}/commitments/{commitment_key}/progress",
    operation_id="reportProgress",
    summary="Report actual output of a month against a commitment of an accepted plan (If-Match: the "
    "plan's ETag, whose commitment the report is measured against)",
)
async def report_progress(
    plan_id: str,
    commitment_key: str,
    body: ProgressIn,
    request: Request,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> ProgressOut:
    threshold = runtime_of(request).settings_as(PlansSettings).shortfall_threshold
    p = await service.record_progress(
        unit_of_work(request),
        who,
        plan_id,
        commitment_key,
        body.month,
        body.actual_output,
        threshold,
        expected,
    )
    # A progress report does not change the plan: its ETag stays the one the next report names.
    response.headers["ETag"] = etag(p.plan.version)
    return ProgressOut(
        plan_id=p.plan.id,
        commitment_key=p.commitment_key,
        month=p.month,
        actual_output=p.actual_output,
        planned_output=p.planned_output,
        shortfall=p.shortfall,
    )


def _target_out(t: service.CapabilityTarget) -> TargetOut:
    return TargetOut(**t.__dict__)


@capacity_router.put(
    "/targets",
    operation_id="setCapabilityTarget",
    summary="NATO records the Alliance requirement for a product in a year (idempotent upsert; correcting "
    "an existing target needs If-Match with its ETag)",
    responses={201: {"model": TargetOut, "description": "The target was new"}},
)
async def set_target(
    body: TargetIn,
    request: Request,
    response: Response,
    who: ActorDep,
    expected: Annotated[IfMatchCondition, Depends(optional_if_match)],
) -> TargetOut:
    target, created = await service.set_capability_target(
        unit_of_work(request), who, **body.model_dump(), expected=expected
    )
    response.status_code = 201 if created else 200
    response.headers["ETag"] = etag(target.version)
    response.headers["Content-Location"] = f"/v1/capacity/targets/{target.id}"
    return _target_out(target)


@capacity_router.get(
    "/targets/{target_id}", operation_id="getCapabilityTarget", summary="One capability target"
)
async def get_target(target_id: str, request: Request, response: Response, who: ActorDep) -> TargetOut:
    target = await service.get_capability_target(database(request), who, target_id)
    response.headers["ETag"] = etag(target.version)
    return _target_out(target)


@capacity_router.get("/targets", operation_id="listCapabilityTargets", summary="Capability targets")
async def list_targets(
    request: Request,
    who: ActorDep,
    capability_area: Annotated[str | None, Query(max_length=100)] = None,
    product: Annotated[str | None, Query(max_length=200)] = None,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
) -> TargetList:
    targets = await service.list_capability_targets(
        database(request), who, capability_area=capability_area, product=product, year=year
    )
    return TargetList(items=[_target_out(t) for t in targets])


def summary_filter(
    capability_area: Annotated[str | None, Query(max_length=100)] = None,
    product: Annotated[str | None, Query(max_length=200)] = None,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
    nation: Annotated[NationCode | None, Query()] = None,
) -> service.SummaryFilter:
    return service.SummaryFilter(capability_area, product, year, nation)


FilterDep = Annotated[service.SummaryFilter, Depends(summary_filter)]


@capacity_router.get(
    "/summary",
    operation_id="capacitySummary",
    summary="Per product and year: requirement, committed capacity, actuals and gap, from what you may see",
)
async def capacity_summary(request: Request, who: ActorDep, f: FilterDep) -> SummaryOut:
    lines = await service.capacity_summary(database(request), who, f)
    return SummaryOut(
        items=[
            SummaryLineOut(
                capability_area=e.capability_area,
                product=e.product,
                unit=e.unit,
                year=e.year,
                requirement=e.requirement,
                committed=e.committed,
                actual=e.actual,
                actual_through=e.actual_through,
                gap=e.gap,
                nations=sorted(e.nations or ()),
                commitments=e.commitments,
            )
            for e in lines
        ]
    )


@capacity_router.get(
    "/dependencies",
    operation_id="capacityDependencies",
    summary="Bottleneck inputs across accepted plans: dependent commitments per source country",
)
async def capacity_dependencies(request: Request, who: ActorDep, f: FilterDep) -> DependenciesOut:
    deps = await service.capacity_dependencies(database(request), who, f)
    return DependenciesOut(
        items=[
            DependencyOut(
                input=d.input,
                category=d.category,
                commitments=d.commitments,
                single_sourced=d.single_sourced,
                by_country=d.by_country or {},
                dependents=d.dependents or [],
            )
            for d in deps
        ]
    )
