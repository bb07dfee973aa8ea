"""HTTP routes of the Alliance capacity picture: parse, authorize, call one query, shape the answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from icep.contracts import NationCode
from icep.plans.capacity import use_cases
from icep.plans.capacity.chart import timeline_svg
from icep.plans.capacity.model import SummaryFilter, TimelineSeries
from icep.plans.capacity.repository import content_cache
from icep.plans.capacity.schemas import (
    DependenciesOut,
    DependencyOut,
    SummaryLineOut,
    SummaryOut,
    TimelineOut,
    TimelinePointOut,
    TimelineSeriesOut,
    YearRequirementOut,
)
from icep.platform.app import DatabaseDep, runtime_of
from icep.platform.auth import ActorDep
from icep.platform.events import utcnow

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


# --- the timeline -------------------------------------------------------------------------------------------

MONTH = r"^(20\d\d|2100)-(0[1-9]|1[0-2])$"


def _month(value: str | None) -> date | None:
    return None if value is None else date(int(value[:4]), int(value[5:7]), 1)


def _ym(month: date) -> str:
    return f"{month.year:04d}-{month.month:02d}"


def timeline_filter(
    capability_area: Annotated[str | None, Query(max_length=100)] = None,
    product: Annotated[str | None, Query(max_length=200)] = None,
    nation: Annotated[NationCode | None, Query()] = None,
) -> SummaryFilter:
    return SummaryFilter(capability_area, product, None, nation)


@dataclass(frozen=True)
class Span:
    first: date | None
    last: date | None


def timeline_span(
    from_: Annotated[
        str | None,
        Query(
            alias="from",
            pattern=MONTH,
            description="First month, `YYYY-MM` (default: the start of the plans and targets selected)",
            examples=["2025-01"],
        ),
    ] = None,
    to: Annotated[
        str | None,
        Query(
            pattern=MONTH,
            description="Last month, `YYYY-MM` (default: the end of the plans and targets selected); at most "
            "120 months after `from`",
            examples=["2026-12"],
        ),
    ] = None,
) -> Span:
    return Span(_month(from_), _month(to))


TimelineFilterDep = Annotated[SummaryFilter, Depends(timeline_filter)]
SpanDep = Annotated[Span, Depends(timeline_span)]

TIMELINE = (
    "Month by month per product, from what you may see exactly as the summary (the capacity figures of "
    "accepted plans released to your nation; capability targets for Allies): `requirement` is the year's "
    "capability target as a monthly rate (target / 12; the yearly targets are listed in `requirements`), "
    "`committed` the ramp of each lineage's accepted plan, `actual` the reported output (each month's "
    "latest corrected figure, including what was reported under earlier versions of a plan). One series "
    "per product over every nation you may see, then one per nation. A span longer than ten years is 422."
)


async def _timeline(
    request: Request, db: DatabaseDep, who: ActorDep, f: SummaryFilter, span: Span
) -> tuple[list[date], list[TimelineSeries]]:
    cache = content_cache(runtime_of(request))
    return await use_cases.capacity_timeline(db, who, f, cache, span.first, span.last, utcnow().date())


@router.get(
    "/timeline",
    operation_id="capacityTimeline",
    summary="Month by month per product (and nation): requirement, committed ramp and actuals",
    description=TIMELINE,
)
async def capacity_timeline(
    request: Request, db: DatabaseDep, who: ActorDep, f: TimelineFilterDep, span: SpanDep
) -> TimelineOut:
    months, series = await _timeline(request, db, who, f, span)
    return TimelineOut(
        from_=_ym(months[0]),
        to=_ym(months[-1]),
        series=[
            TimelineSeriesOut(
                capability_area=s.capability_area,
                product=s.product,
                unit=s.unit,
                nation=s.nation,
                requirements=[YearRequirementOut(year=y, required_quantity=q) for y, q in s.requirements],
                points=[
                    TimelinePointOut(
                        month=_ym(p.month),
                        requirement=p.requirement,
                        committed=p.committed,
                        actual=p.actual,
                        reports=p.reports,
                    )
                    for p in s.points
                ],
            )
            for s in series
        ],
    )


@router.get(
    "/timeline.svg",
    operation_id="capacityTimelineChart",
    summary="The capacity timeline as an SVG chart, one panel per product, for reviews",
    description="The same figures, query parameters and visibility as `GET /v1/capacity/timeline`, drawn "
    "per product: the requirement (dashed, the capability target / 12), the committed ramp (line) and the "
    "actual output (bars) per month, with a month axis and a legend. A standalone `image/svg+xml` "
    "document with no script, style sheet or external reference.",
    response_class=Response,
    responses={
        200: {
            "description": "The chart",
            "content": {"image/svg+xml": {"schema": {"type": "string"}}},
        }
    },
)
async def capacity_timeline_chart(
    request: Request, db: DatabaseDep, who: ActorDep, f: TimelineFilterDep, span: SpanDep
) -> Response:
    months, series = await _timeline(request, db, who, f, span)
    return Response(
        timeline_svg(months, series),
        media_type="image/svg+xml",
        # The figures depend on who asks: no shared cache may keep them.
        headers={"Cache-Control": "private, no-store"},
    )
