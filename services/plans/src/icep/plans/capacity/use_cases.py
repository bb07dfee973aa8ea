"""The Alliance capacity summary and dependencies, computed only from what the caller may see."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select
from sqlmodel import col

from icep.plans.capacity.model import Dependency, SummaryFilter, SummaryLine
from icep.plans.capacity.repository import CapacityView, ContentCache, accepted_plans, visible_capacity
from icep.plans.plans.model import Actor, CapacityCommitment
from icep.plans.plans.rows import PlanRow
from icep.plans.progress.rows import ProgressRow
from icep.plans.targets.repository import list_capability_targets
from icep.platform.db import Database


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

    keys: dict[str, tuple[CapacityView, CapacityCommitment]] = {}
    for plan in plans:
        years = range(plan.period_start.year, plan.period_end.year + 1)
        for c in plan.content.commitments:
            if (f.capability_area and c.capability_area != f.capability_area) or (
                f.product and c.product != f.product
            ):
                continue
            keys[f"{plan.id}/{c.key}"] = (plan, c)
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
    if keys:
        # Summed in the database per commitment and year: one row each, however many months reported.
        year_of = func.extract("year", col(ProgressRow.month))
        query = (
            select(
                col(ProgressRow.plan_id),
                col(ProgressRow.commitment_key),
                year_of,
                func.sum(col(ProgressRow.actual_output)),
                func.max(col(ProgressRow.month)),
            )
            .where(col(ProgressRow.plan_id).in_({p.id for p, _ in keys.values()}))
            .group_by(col(ProgressRow.plan_id), col(ProgressRow.commitment_key), year_of)
        )
        async with db.sessions() as session:
            sums = (await session.execute(query)).all()
        for plan_id, commitment_key, year, actual, reported_through in sums:
            found = keys.get(f"{plan_id}/{commitment_key}")
            hit = lines.get((found[1].product, int(year))) if found is not None else None
            if hit is None:
                continue
            hit.actual = (hit.actual or 0) + int(actual)
            # SQLite hands back MAX() of a date as text
            through = (
                date.fromisoformat(reported_through)
                if isinstance(reported_through, str)
                else reported_through
            )
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
