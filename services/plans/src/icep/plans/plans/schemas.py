"""What the plans API takes and answers for national plans (request and response models)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from icep.contracts import ReleasabilityScope
from icep.contracts.base import MoneyAmount
from icep.contracts.releasability import ReleasabilityIn
from icep.plans.plans.codec import content_from_json, content_to_json
from icep.plans.plans.model import MeasureKind, NationalPlan, PlanContent

Country = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 3166-1 alpha-3")]
Count = Annotated[int, Field(ge=0, le=100_000_000)]


class StrictIn(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlanReleasabilityIn(ReleasabilityIn):
    """Who may see a plan, or separately its capacity figures, as a planner gives it: the nation's own
    unless said (the shared rule otherwise: `nations` only with the scopes that name nations)."""

    scope: ReleasabilityScope = ReleasabilityScope.NATIONAL


class PlanReleasabilityOut(BaseModel):
    scope: ReleasabilityScope
    nations: list[str]


class RampStepIn(StrictIn):
    on: date
    output_per_month: Count


class OperatorIn(StrictIn):
    company: str = Field(min_length=1, max_length=200)
    sme: bool = False


class InvestmentIn(StrictIn):
    amount: MoneyAmount = Field(ge=0, le=1e13)
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217")


class BottleneckIn(StrictIn):
    input: str = Field(min_length=1, max_length=200, examples=["nitrocellulose"])
    category: Literal[
        "energetics", "rocket_motors", "microelectronics", "raw_materials", "components", "other"
    ]
    source_countries: list[Country] = Field(min_length=1, max_length=40)
    single_source: bool = False
    stock_cover_days: int | None = Field(default=None, ge=0, le=3650)


class CommitmentIn(StrictIn):
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
    ramp: list[RampStepIn] = Field(default=[], max_length=120)
    surge_per_month: Count | None = None
    surge_days: int | None = Field(default=None, ge=0, le=3650)
    lead_time_days: int | None = Field(default=None, ge=0, le=3650)
    operator: OperatorIn
    investment: InvestmentIn | None = None
    bottlenecks: list[BottleneckIn] = Field(default=[], max_length=30)


class MeasureIn(StrictIn):
    kind: MeasureKind
    description: str = Field(min_length=1, max_length=4000)
    starts: date | None = None
    completes: date | None = None


class ContentIn(StrictIn):
    commitments: list[CommitmentIn] = Field(default=[], max_length=200)
    measures: list[MeasureIn] = Field(default=[], max_length=200)

    def to_domain(self) -> PlanContent:
        return content_from_json(self.model_dump(mode="json"))


class PlanCreate(StrictIn):
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
    capability_areas: list[str] = Field(default=[], max_length=20)
    releasability: PlanReleasabilityIn = Field(
        default_factory=PlanReleasabilityIn,
        json_schema_extra={"default": PlanReleasabilityIn().model_dump(mode="json")},
    )
    capacity_releasability: PlanReleasabilityIn | None = Field(
        default=None, description="Who may see the capacity figures, when wider than the whole plan"
    )
    content: ContentIn = Field(
        default_factory=ContentIn, json_schema_extra={"default": ContentIn().model_dump(mode="json")}
    )


class PlanPatch(StrictIn):
    title: str | None = Field(default=None, min_length=1, max_length=300)
    period_start: date | None = None
    period_end: date | None = None
    capability_areas: list[str] | None = Field(default=None, max_length=20)
    content: ContentIn | None = None


class ReturnIn(StrictIn):
    reasons: list[str] = Field(min_length=1, max_length=50)


class ReleaseIn(StrictIn):
    releasability: PlanReleasabilityIn
    capacity_releasability: PlanReleasabilityIn | None = None


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
            content=content_to_json(plan.content),
        )


class PlanPage(BaseModel):
    items: list[PlanOut]
    next: str | None


class VersionsOut(BaseModel):
    items: list[dict[str, Any]]
