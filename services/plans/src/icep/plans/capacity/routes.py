"""HTTP routes of the Alliance capacity picture: parse, authorize, call one query, shape the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from icep.contracts import NationCode
from icep.plans.capacity import use_cases
from icep.plans.capacity.model import SummaryFilter
from icep.plans.capacity.repository import content_cache
from icep.plans.capacity.schemas import DependenciesOut, DependencyOut, SummaryLineOut, SummaryOut
from icep.platform.app import DatabaseDep, runtime_of
from icep.platform.auth import ActorDep

#: The capacity summary and dependencies share the capacity paths and tag with the targets.
router = APIRouter(prefix="/v1/capacity", tags=["capacity"])


def summary_filter(
    capability_area: Annotated[str | None, Query(max_length=100)] = None,
    product: Annotated[str | None, Query(max_length=200)] = None,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
    nation: Annotated[NationCode | None, Query()] = None,
) -> SummaryFilter:
    return SummaryFilter(capability_area, product, year, nation)


FilterDep = Annotated[SummaryFilter, Depends(summary_filter)]


@router.get(
    "/summary",
    operation_id="capacitySummary",
    summary="Requirement, committed capacity, actuals and gap per product and year",
)
async def capacity_summary(request: Request, db: DatabaseDep, who: ActorDep, f: FilterDep) -> SummaryOut:
    """Per product and year: the Alliance requirement (capability targets), the capacity committed by accepted
    plans (the commitments' planned output in that year), the actuals reported so far (`actual_through` the
    last month reported) and the gap, with the nations and commitments counted. Computed only from the plans
    whose capacity figures the caller's nation may read (the plans' readers plus their wider
    `capacity_releasability`): what a nation may not see is not counted, so two nations may get different
    figures. Filters: capability area, product, year, nation."""
    lines = await use_cases.capacity_summary(db, who, f, content_cache(runtime_of(request)))
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


@router.get(
    "/dependencies",
    operation_id="capacityDependencies",
    summary="Bottleneck inputs of accepted plans, per source country",
)
async def capacity_dependencies(db: DatabaseDep, who: ActorDep, f: FilterDep) -> DependenciesOut:
    """Supply-chain facts across accepted plans: per bottleneck input (energetics, rocket motors,
    microelectronics, ...), how many commitments depend on it, per source country, and whether it is
    single-sourced. Computed from the plans the caller's nation may read whole (not from the wider capacity
    release, which covers figures, not supply chains)."""
    deps = await use_cases.capacity_dependencies(db, who, f)
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
