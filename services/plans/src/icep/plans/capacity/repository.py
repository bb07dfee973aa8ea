"""What the capacity read side reads: the accepted plans the caller may see, and their capacity figures
(parsed content cached per plan version)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from icep.plans.plans.codec import content_from_json
from icep.plans.plans.model import Actor, NationalPlan, PlanContent, PlanStatus, caller_tokens
from icep.plans.plans.repository import to_domain
from icep.plans.plans.rows import PlanRow
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
