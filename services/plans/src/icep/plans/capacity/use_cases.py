"""The Alliance capacity summary and dependencies, computed only from what the caller may see."""

from __future__ import annotations

from datetime import date

from sqlmodel import col

from icep.plans.capacity.model import (
    MAX_TIMELINE_MONTHS,
    Dependency,
    PlannedCommitment,
    SummaryFilter,
    SummaryLine,
    TimelineSeries,
    YearTarget,
    build_timeline,
    month_index,
    month_of,
    months_between,
)
from icep.plans.capacity.repository import (
    ContentCache,
    accepted_plans,
    lineages_of,
    monthly_actuals,
    visible_capacity,
    yearly_actuals,
)
from icep.plans.plans.model import Actor
from icep.plans.plans.rows import PlanRow
from icep.plans.targets.repository import list_capability_targets
from icep.platform.db import Database
from icep.platform.domain import invalid


async def capacity_summary(
    db: Database, actor: Actor, f: SummaryFilter, cache: ContentCache
) -> list[SummaryLine]:
    """Per product and year: requirement, committed capacity of accepted plans, actuals, and the gap,
    computed only from what the caller may see."""
    plans = await visible_capacity(db, actor, f.nation, cache)
    lines: dict[tuple[str, int], SummaryLine] = {}

    def line(area: str, product: str, unit: str, year: int) -> SummaryLine:
        if (product, year) not in lines:
            lines[(product, year)] = SummaryLine(area, product, unit, year, nations=set())
        return lines[(product, year)]

    for plan in plans:
        years = range(plan.period_start.year, plan.period_end.year + 1)
        for c in plan.content.commitments:
            if (f.capability_area and c.capability_area != f.capability_area) or (
                f.product and c.product != f.product
            ):
                continue
            for year in years:
                if f.year and year != f.year:
                    continue
                entry = line(c.capability_area, c.product, c.unit, year)
                entry.committed += c.planned_in_year(year, plan.period_start, plan.period_end)
                entry.commitments += 1
                assert entry.nations is not None
                entry.nations.add(plan.nation)
    for target in await list_capability_targets(
        db, actor, capability_area=f.capability_area, product=f.product, year=f.year
    ):
        entry = line(target.capability_area, target.product, target.unit, target.year)
        entry.requirement = (entry.requirement or 0) + target.required_quantity
    lineages = lineages_of(plans)
    if lineages:
        # The actuals of the lineages, not of the accepted versions alone: what was reported under an
        # earlier version stays. Summed in the database per product and year.
        for area, product, unit, year, actual, through in await yearly_actuals(
            db, lineages, f.capability_area, f.product
        ):
            if f.year and year != f.year:
                continue
            hit = line(area, product, unit, year)
            hit.actual = (hit.actual or 0) + actual
            if hit.actual_through is None or through > hit.actual_through:
                hit.actual_through = through
    return sorted(lines.values(), key=lambda e: (e.capability_area, e.product, e.year))


async def capacity_dependencies(db: Database, actor: Actor, f: SummaryFilter) -> list[Dependency]:
    """Bottleneck inputs across the accepted plans the caller may see (supply-chain facts follow the
    whole plan's releasability, not the wider release of capacity figures)."""
    plans = [
        p
        for p in await accepted_plans(db, actor, col(PlanRow.readers), f.nation)
        if p.visible_to(actor.nation)
    ]
    found: dict[str, Dependency] = {}
    for plan in sorted(plans, key=lambda p: p.id):
        for c in plan.content.commitments:
            if (f.capability_area and c.capability_area != f.capability_area) or (
                f.product and c.product != f.product
            ):
                continue
            for b in c.bottlenecks:
                dep = found.setdefault(b.input, Dependency(b.input, b.category, by_country={}, dependents=[]))
                assert dep.by_country is not None and dep.dependents is not None
                dep.commitments += 1
                dep.single_sourced += int(b.single_source)
                for country in b.source_countries:
                    dep.by_country[country] = dep.by_country.get(country, 0) + 1
                dep.dependents.append(
                    {"plan_id": plan.id, "nation": plan.nation, "commitment_key": c.key, "product": c.product}
                )
    return sorted(found.values(), key=lambda d: (-d.commitments, d.input))


async def capacity_timeline(
    db: Database,
    actor: Actor,
    f: SummaryFilter,
    cache: ContentCache,
    first: date | None,
    last: date | None,
    today: date,
) -> tuple[list[date], list[TimelineSeries]]:
    """Month by month per product (and per nation the caller may see): the requirement, the committed ramp
    of the lineages' accepted plans and the reported actuals (each month's latest corrected figure), from
    what the caller may see exactly as the summary. Without `first`/`last`, the span of the plans and
    targets selected, at most ten years."""
    plans = await visible_capacity(db, actor, f.nation, cache)
    commitments = [
        PlannedCommitment(
            plan.nation,
            plan.period_start,
            plan.period_end,
            c.capability_area,
            c.product,
            c.unit,
            c.planned_rate,
        )
        for plan in plans
        for c in plan.content.commitments
        if not (f.capability_area and c.capability_area != f.capability_area)
        and not (f.product and c.product != f.product)
    ]
    targets = [
        YearTarget(t.capability_area, t.product, t.unit, t.year, t.required_quantity)
        for t in await list_capability_targets(
            db, actor, capability_area=f.capability_area, product=f.product
        )
    ]
    first, last = timeline_span(first, last, commitments, targets, today)
    months = months_between(first, last)
    lineages = lineages_of(plans)
    reported = (
        await monthly_actuals(db, lineages, f.capability_area, f.product, first, last) if lineages else []
    )
    return months, build_timeline(months, commitments, targets, reported)


def timeline_span(
    first: date | None,
    last: date | None,
    commitments: list[PlannedCommitment],
    targets: list[YearTarget],
    today: date,
) -> tuple[date, date]:
    """The months asked for, or what the selected plans and targets span (this year when nothing is);
    a span asked for must run forwards and be at most ten years long (422 otherwise)."""
    starts = [month_index(c.period_start) for c in commitments] + [t.year * 12 for t in targets]
    ends = [month_index(c.period_end) for c in commitments] + [t.year * 12 + 11 for t in targets]
    seen_first = min(starts, default=today.year * 12)
    seen_last = max(ends, default=today.year * 12 + 11)
    if first is not None and last is not None:
        if last < first:
            raise invalid("query.to", "the timeline ends before it starts")
        if month_index(last) - month_index(first) + 1 > MAX_TIMELINE_MONTHS:
            raise invalid("query.to", f"a timeline spans at most {MAX_TIMELINE_MONTHS} months (ten years)")
        return first, last
    if first is not None:
        start = month_index(first)
        end = seen_last if seen_last >= start else start + 11
    elif last is not None:
        end = month_index(last)
        start = seen_first if seen_first <= end else end - 11
        start = max(start, end - MAX_TIMELINE_MONTHS + 1)
    else:
        start, end = seen_first, seen_last
    return month_of(start), month_of(min(end, start + MAX_TIMELINE_MONTHS - 1))
