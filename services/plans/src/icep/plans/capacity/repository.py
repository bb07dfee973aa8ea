"""What the capacity read side reads: the accepted plans the caller may see, their capacity figures
(parsed content cached per plan version), and the actuals of their lineages."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from icep.plans.capacity.model import ReportedMonth
from icep.plans.plans.codec import content_from_json
from icep.plans.plans.model import Actor, NationalPlan, PlanContent, PlanStatus, caller_tokens, lineage_of
from icep.plans.plans.repository import to_domain
from icep.plans.plans.rows import PlanRow
from icep.plans.progress.rows import ProgressActualRow
from icep.platform import visibility
from icep.platform.app import Runtime
from icep.platform.db import Database


async def accepted_plans(db: Database, actor: Actor, readers: Any, nation: str | None) -> list[NationalPlan]:
    query = select(PlanRow).where(
        col(PlanRow.status) == PlanStatus.ACCEPTED.value, visibility.readable_by(readers, actor.nation)
    )
    if nation:
        query = query.where(col(PlanRow.nation) == nation)
    async with db.sessions() as session:
        return [to_domain(r) for r in (await session.execute(query)).scalars()]


@dataclass(frozen=True)
class CapacityView:
    """What the summary needs of an accepted plan: no history, no releasability objects to build."""

    id: str
    nation: str
    period_start: date
    period_end: date
    content: PlanContent


class ContentCache(OrderedDict[tuple[str, int], PlanContent]):
    """Parsed content per (plan id, version): a version never changes, so an entry can never be stale.
    Bounded: the least recently used entries go first."""

    def __init__(self, size: int = 4096) -> None:
        super().__init__()
        self.size = size


def content_cache(runtime: Runtime) -> ContentCache:
    """The running service's content cache (it lives and goes with the runtime), made on first use."""
    cache = runtime.part(ContentCache)
    if cache is None:
        cache = ContentCache()
        runtime.provide(cache)
    return cache


async def visible_capacity(
    db: Database, actor: Actor, nation: str | None, cache: ContentCache
) -> list[CapacityView]:
    query = select(
        col(PlanRow.id),
        col(PlanRow.version),
        col(PlanRow.nation),
        col(PlanRow.period_start),
        col(PlanRow.period_end),
        col(PlanRow.capacity_readers),
    ).where(
        col(PlanRow.status) == PlanStatus.ACCEPTED.value,
        visibility.readable_by(col(PlanRow.capacity_readers), actor.nation),
    )
    if nation:
        query = query.where(col(PlanRow.nation) == nation)
    mine = caller_tokens(actor.nation)
    async with db.sessions() as session:
        rows = [
            r
            for r in (await session.execute(query)).all()
            # The SQL filter and the domain's tokens are one rule; the check keeps them honest.
            if not mine.isdisjoint(t for t in r[5].split(",") if t)
        ]
        missing = [r[0] for r in rows if (r[0], r[1]) not in cache]
        if missing:
            loaded = await session.execute(
                select(col(PlanRow.id), col(PlanRow.version), col(PlanRow.content)).where(
                    col(PlanRow.id).in_(missing)
                )
            )
            for plan_id, version, content in loaded.all():
                cache[(plan_id, version)] = content_from_json(content or {})
    views = []
    for plan_id, version, owner, start, end, _ in rows:
        content = cache.get((plan_id, version))
        if content is None:  # changed between the two reads: the next request sees the new version
            continue
        cache.move_to_end((plan_id, version))
        views.append(CapacityView(plan_id, owner, start, end, content))
    while len(cache) > cache.size:
        cache.popitem(last=False)
    return views


# --- the lineages' actuals ----------------------------------------------------------------------------------


def lineages_of(plans: list[CapacityView]) -> dict[str, CapacityView]:
    """The lineage of each accepted plan the caller may see: its actuals are shown under that plan's
    capacity release (the owner's latest word on who sees them)."""
    return {lineage_of(p.nation, p.period_start, p.period_end): p for p in plans}


def _actuals_where(lineages: Iterable[str], capability_area: str | None, product: str | None) -> list[Any]:
    conditions: list[Any] = [col(ProgressActualRow.lineage).in_(sorted(set(lineages)))]
    if capability_area:
        conditions.append(col(ProgressActualRow.capability_area) == capability_area)
    if product:
        conditions.append(col(ProgressActualRow.product) == product)
    return conditions


def _as_date(value: date | str) -> date:
    # SQLite hands back MIN()/MAX() of a date as text
    return date.fromisoformat(value) if isinstance(value, str) else value


async def yearly_actuals(
    db: Database, lineages: Iterable[str], capability_area: str | None, product: str | None
) -> list[tuple[str, str, str, int, int, date]]:
    """Per product and year of the given lineages: (area, product, unit, year, actual, reported through),
    summed in the database from each month's standing figure."""
    year_of = func.extract("year", col(ProgressActualRow.month))
    query = (
        select(
            col(ProgressActualRow.capability_area),
            col(ProgressActualRow.product),
            func.min(col(ProgressActualRow.unit)),
            year_of,
            func.sum(col(ProgressActualRow.actual_output)),
            func.max(col(ProgressActualRow.month)),
        )
        .where(*_actuals_where(lineages, capability_area, product))
        .group_by(col(ProgressActualRow.capability_area), col(ProgressActualRow.product), year_of)
    )
    async with db.sessions() as session:
        rows = (await session.execute(query)).all()
    return [(a, p, u, int(y), int(s), _as_date(t)) for a, p, u, y, s, t in rows]


async def monthly_actuals(
    db: Database,
    lineages: Iterable[str],
    capability_area: str | None,
    product: str | None,
    first: date,
    last: date,
) -> list[ReportedMonth]:
    """Per nation, product and month between `first` and `last`: the standing figures summed, and how many."""
    query = (
        select(
            col(ProgressActualRow.nation),
            col(ProgressActualRow.capability_area),
            col(ProgressActualRow.product),
            func.min(col(ProgressActualRow.unit)),
            col(ProgressActualRow.month),
            func.sum(col(ProgressActualRow.actual_output)),
            func.count(),
        )
        .where(
            *_actuals_where(lineages, capability_area, product),
            col(ProgressActualRow.month) >= first,
            col(ProgressActualRow.month) <= last,
        )
        .group_by(
            col(ProgressActualRow.nation),
            col(ProgressActualRow.capability_area),
            col(ProgressActualRow.product),
            col(ProgressActualRow.month),
        )
    )
    async with db.sessions() as session:
        rows = (await session.execute(query)).all()
    return [
        ReportedMonth(nation, area, product_, unit, _as_date(month), int(actual), int(count))
        for nation, area, product_, unit, month, actual, count in rows
    ]
