"""The Alliance picture with history, on a real database (SQLite, or PostgreSQL when configured) without
Kafka: actuals belong to the plan's lineage, so a second accepted version keeps them; corrections are kept;
the timeline's arithmetic is checked against figures worked out by hand; and the migration that moved
version-keyed reports into their lineages.

Every nation, product and figure here is synthetic.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from xml.etree import ElementTree as ET

import pytest
import sqlalchemy as sa

from icep.contracts import ReleasabilityScope
from icep.plans.app import MIGRATIONS
from icep.plans.capacity import use_cases as capacity
from icep.plans.capacity.chart import timeline_svg
from icep.plans.capacity.model import SummaryFilter, TimelineSeries
from icep.plans.capacity.repository import ContentCache
from icep.plans.events import plans_events
from icep.plans.models import metadata, tables
from icep.plans.plans import use_cases as plans
from icep.plans.plans.codec import content_to_json
from icep.plans.plans.model import CapacityCommitment, Operator, PlanContent, RampStep
from icep.plans.progress import use_cases as progress
from icep.plans.targets.use_cases import set_capability_target
from icep.platform import migrations
from icep.platform.db import Database
from icep.platform.domain import Actor
from icep.platform.errors import NotFound, Unprocessable
from icep.platform.outbox import UnitOfWorkFactory

PLANNER = frozenset({"planner"})
DEU = Actor("deu-planner", "DEU", PLANNER)
POL = Actor("pol-planner", "POL", PLANNER)
FRA = Actor("fra-planner", "FRA", PLANNER)
NATO = Actor("nato-reviewer", "NATO", frozenset({"reviewer"}))
PRODUCT = '155mm <round> & "shell" (synthetic)'
START, END = date(2025, 1, 1), date(2026, 12, 31)
TODAY = date(2025, 6, 15)


@dataclass
class Store:
    db: Database
    uow: UnitOfWorkFactory

    async def published(self, event_type: str) -> list[dict[str, Any]]:
        async with self.db.sessions() as session:
            rows = (
                await session.execute(
                    sa.select(tables.outbox)
                    .where(tables.outbox.c.type == event_type)
                    .order_by(tables.outbox.c.created_at)
                )
            ).all()
        return [json.loads(r.data) for r in rows]


@pytest.fixture
async def store(make_database_url: Callable[[str], str]) -> AsyncIterator[Store]:
    db = Database(make_database_url("plans_timeline"))
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        yield Store(db, UnitOfWorkFactory(db, tables.outbox, "plans", "icep.plans.events", plans_events))
    finally:
        await db.dispose()


def commitment(key: str, current: int, ramp: tuple[tuple[date, int], ...] = ()) -> CapacityCommitment:
    return CapacityCommitment(
        key=key,
        product=PRODUCT,
        capability_area="munitions",
        site=f"{key} site (synthetic)",
        site_country="DEU",
        unit="rounds",
        baseline_per_month=current,
        current_per_month=current,
        target_per_month=max([current, *(o for _, o in ramp)]),
        ramp=tuple(RampStep(on, o) for on, o in ramp),
        surge_per_month=None,
        surge_days=None,
        lead_time_days=None,
        operator=Operator("Synthetic Munitions"),
    )


async def accepted(store: Store, owner: Actor, c: CapacityCommitment, scope: ReleasabilityScope) -> str:
    draft = plans.DraftPlan(
        title=f"{owner.nation} capacity (synthetic)",
        period_start=START,
        period_end=END,
        capability_areas=("munitions",),
        release_scope=scope,
        release_nations=(),
        content=PlanContent(commitments=(c,)),
    )
    plan = await plans.create_plan(store.uow, owner, draft)
    plan = await plans.submit_plan(store.uow, owner, plan.id, plan.version)
    plan = await plans.start_review(store.uow, NATO, plan.id, plan.version)
    plan = await plans.accept_plan(store.uow, NATO, plan.id, plan.version)
    return plan.id


async def report(store: Store, who: Actor, plan_id: str, key: str, month: date, actual: int) -> Any:
    return await progress.record_progress(store.uow, who, plan_id, key, month, actual, 0.1)


async def timeline(
    store: Store, who: Actor, first: date | None = None, last: date | None = None, **f: Any
) -> dict[str | None, TimelineSeries]:
    _, series = await capacity.capacity_timeline(
        store.db, who, SummaryFilter(product=PRODUCT, **f), ContentCache(), first, last, TODAY
    )
    return {s.nation: s for s in series}


def column(s: TimelineSeries, name: str) -> list[Any]:
    return [getattr(p, name) for p in s.points]


async def test_a_second_version_keeps_the_actuals_and_corrections_are_kept(store: Store) -> None:
    for year, quantity in ((2025, 300_000), (2026, 600_000)):
        await set_capability_target(
            store.uow,
            NATO,
            capability_area="munitions",
            product=PRODUCT,
            year=year,
            required_quantity=quantity,
            unit="rounds",
        )
    # DEU v1: 10,000/month, 15,000 from July 2025. Released to Allies.
    v1 = await accepted(
        store, DEU, commitment("deu-a", 10_000, ((date(2025, 7, 1), 15_000),)), ReleasabilityScope.ALLIES
    )
    await report(store, DEU, v1, "deu-a", date(2025, 5, 3), 9_500)
    await report(store, DEU, v1, "deu-a", date(2025, 6, 1), 10_200)
    await report(store, DEU, v1, "deu-a", date(2025, 7, 1), 14_000)
    fixed = await report(store, DEU, v1, "deu-a", date(2025, 6, 20), 10_400)  # corrects June
    assert (fixed.revision, fixed.previous_output, fixed.lineage) == (2, 10_200, "DEU/2025-01-01/2026-12-31")
    # DEU v2, same nation and period: the same ramp, then 20,000 from January 2026. v1 is superseded.
    v2 = await accepted(
        store,
        DEU,
        commitment("deu-a", 10_000, ((date(2025, 7, 1), 15_000), (date(2026, 1, 1), 20_000))),
        ReleasabilityScope.ALLIES,
    )
    await report(store, DEU, v2, "deu-a", date(2025, 8, 1), 15_500)
    await report(store, DEU, v2, "deu-a", date(2025, 7, 1), 14_800)  # corrects July, first reported on v1
    with pytest.raises(Exception, match="superseded"):
        await report(store, DEU, v1, "deu-a", date(2025, 9, 1), 1)
    # POL: 5,000/month flat, Allies. FRA: 7,000/month flat, national only (DEU may not see it).
    pol = await accepted(store, POL, commitment("pol-a", 5_000), ReleasabilityScope.ALLIES)
    await report(store, POL, pol, "pol-a", date(2025, 7, 1), 4_000)
    fra = await accepted(store, FRA, commitment("fra-a", 7_000), ReleasabilityScope.NATIONAL)
    await report(store, FRA, fra, "fra-a", date(2025, 7, 1), 6_000)

    # Worked out by hand, May 2025 - January 2026 (9 months), as DEU sees it (DEU v2 and POL; not FRA):
    #   requirement: 300,000 / 12 = 25,000 per month in 2025; 600,000 / 12 = 50,000 in January 2026
    #   committed:   DEU 10,000 (May, Jun), 15,000 (Jul-Dec), 20,000 (Jan) + POL 5,000 every month
    #                = 15,000, 15,000, 20,000 x 6, 25,000
    #   actual:      May 9,500; Jun 10,400 (corrected from 10,200); Jul DEU 14,800 (corrected from 14,000,
    #                on v2) + POL 4,000 = 18,800; Aug 15,500 (reported on v2); Sep-Jan not reported
    seen = await timeline(store, DEU, date(2025, 5, 1), date(2026, 1, 1))
    assert list(seen) == [None, "DEU", "POL"]  # the total first, then each nation
    total = seen[None]
    assert [p.month for p in total.points][:2] == [date(2025, 5, 1), date(2025, 6, 1)]
    assert column(total, "requirement") == [25_000.0] * 8 + [50_000.0]
    assert total.requirements == [(2025, 300_000), (2026, 600_000)]
    assert column(total, "committed") == [15_000, 15_000] + [20_000] * 6 + [25_000]
    assert column(total, "actual") == [9_500, 10_400, 18_800, 15_500, None, None, None, None, None]
    assert column(total, "reports") == [1, 1, 2, 1, 0, 0, 0, 0, 0]
    deu = seen["DEU"]
    assert column(deu, "requirement") == [None] * 9  # targets are Alliance-wide
    assert column(deu, "committed") == [10_000, 10_000] + [15_000] * 6 + [20_000]
    assert column(deu, "actual") == [9_500, 10_400, 14_800, 15_500] + [None] * 5
    assert column(seen["POL"], "actual") == [None, None, 4_000] + [None] * 6
    # FRA also sees its own national plan: July 14,800 + 4,000 + 6,000 = 24,800, committed 27,000.
    as_fra = await timeline(store, FRA, date(2025, 7, 1), date(2025, 7, 1))
    assert (column(as_fra[None], "actual"), column(as_fra[None], "committed")) == ([24_800], [27_000])
    assert list(as_fra) == [None, "DEU", "FRA", "POL"]
    # Only POL's: a nation filter narrows to what that nation released.
    only_pol = await timeline(store, DEU, date(2025, 7, 1), date(2025, 8, 1), nation="POL")
    assert column(only_pol[None], "actual") == [4_000, None]
    # Without a span: the plans' and targets' span (all of 2025 and 2026).
    whole = await timeline(store, DEU)
    assert (whole[None].points[0].month, whole[None].points[-1].month) == (
        date(2025, 1, 1),
        date(2026, 12, 1),
    )

    # The summary keeps the actuals of v1 after v2 was accepted. 2025 by hand: committed DEU 6 x 10,000 +
    # 6 x 15,000 = 150,000, POL 12 x 5,000 = 60,000 -> 210,000; actual 9,500 + 10,400 + 14,800 + 15,500
    # + 4,000 = 54,200 through August; gap 300,000 - 210,000 = 90,000.
    [line] = await capacity.capacity_summary(
        store.db, DEU, SummaryFilter(product=PRODUCT, year=2025), ContentCache()
    )
    assert (line.requirement, line.committed, line.actual, line.actual_through, line.gap) == (
        300_000,
        210_000,
        54_200,
        date(2025, 8, 1),
        90_000,
    )

    # The history, named by the superseded version: every month of the lineage, with its corrections.
    lineage, months = await progress.progress_history(store.db, POL, v1, "deu-a")
    assert lineage == "DEU/2025-01-01/2026-12-31"
    assert [(m.month.month, m.actual_output, m.plan_id) for m in months] == [
        (5, 9_500, v1),
        (6, 10_400, v1),
        (7, 14_800, v2),
        (8, 15_500, v2),
    ]
    june, july = months[1], months[2]
    assert [(c.revision, c.previous_output, c.actual_output, c.reported_by) for c in june.corrections] == [
        (2, 10_200, 10_400, "deu-planner")
    ]
    assert [(c.previous_output, c.actual_output, c.plan_id) for c in july.corrections] == [
        (14_000, 14_800, v2)
    ]
    assert july.first_reported_by == "deu-planner" and july.first_reported_at < july.reported_at
    assert months[0].corrections == ()
    with pytest.raises(NotFound):  # FRA's national plan: DEU may not see its figures
        await progress.progress_history(store.db, DEU, fra, "fra-a")
    with pytest.raises(NotFound):
        await progress.progress_history(store.db, DEU, v2, "no-such-commitment")

    # The published reports say which figure a correction replaced.
    reported = [
        (e["month"], e["actual_output"], e["revision"], e["previous_output"])
        for e in await store.published("icep.plans.progress.reported.v1")
        if e["plan_id"] in (v1, v2)
    ]
    assert reported == [
        ("2025-05-01", 9_500, 1, None),
        ("2025-06-01", 10_200, 1, None),
        ("2025-07-01", 14_000, 1, None),
        ("2025-06-01", 10_400, 2, 10_200),
        ("2025-08-01", 15_500, 1, None),
        ("2025-07-01", 14_800, 2, 14_000),
    ]

    # The chart of the same figures: well-formed, nothing external, the product name escaped.
    months_, series = await capacity.capacity_timeline(
        store.db,
        DEU,
        SummaryFilter(product=PRODUCT),
        ContentCache(),
        date(2025, 5, 1),
        date(2026, 1, 1),
        TODAY,
    )
    svg = timeline_svg(months_, series)
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "<round>" not in svg and '&lt;round&gt; &amp; "shell"' in svg
    texts = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert f"{PRODUCT} (rounds)" in texts and "May 2025" in texts


async def test_the_span_is_bounded(store: Store) -> None:
    with pytest.raises(Unprocessable):
        await timeline(store, DEU, date(2025, 1, 1), date(2035, 1, 1))  # 121 months
    with pytest.raises(Unprocessable):
        await timeline(store, DEU, date(2025, 5, 1), date(2025, 4, 1))
    ten_years = await timeline(store, DEU, date(2025, 1, 1), date(2034, 12, 1))
    assert ten_years == {}  # nothing to see, and no error: 120 months is allowed
    months, series = await capacity.capacity_timeline(
        store.db, DEU, SummaryFilter(product=PRODUCT), ContentCache(), None, None, TODAY
    )
    assert (months[0], months[-1], series) == (date(2025, 1, 1), date(2025, 12, 1), [])


def test_text_that_xml_cannot_carry_is_replaced() -> None:
    series = TimelineSeries("munitions\x00", "bad\x01name ]]> <script>", "r\x1f", None, [], [])
    svg = timeline_svg([date(2025, 1, 1)], [series])
    root = ET.fromstring(svg)  # well-formed despite control characters
    assert not list(root.iter("{http://www.w3.org/2000/svg}script")) and "<script>" not in svg
    for element in root.iter():
        assert not {k for k in element.attrib if k.endswith("href")}, element.tag


async def test_the_migration_moves_reports_into_their_lineages(
    make_database_url: Callable[[str], str],
) -> None:
    """Reports keyed by plan version (before 0009) move to their lineage: two versions' reports of one
    month become its revisions in the order reported, the latest standing."""
    url = make_database_url("plans_lineage_migration")
    await asyncio.to_thread(migrations.upgrade, MIGRATIONS, url, "0008")
    db = Database(url)
    content = content_to_json(PlanContent(commitments=(commitment("k", 100),)))
    try:
        async with db.engine.begin() as conn:
            for pid in ("v1", "v2"):
                await conn.execute(
                    sa.text(
                        "INSERT INTO plans (id, nation, title, period_start, period_end, capability_areas,"
                        " release_scope, release_nations, status, version, created_by, created_at, history,"
                        " content) VALUES (:id, 'DEU', 't', :s, :e, '[]', 'allies', '[]', 'accepted', 4,"
                        " 'deu-planner', :at, '[]', :content)"
                    ),
                    {
                        "id": pid,
                        "s": START,
                        "e": END,
                        "at": datetime(2025, 1, 1, tzinfo=UTC),
                        "content": json.dumps(content),
                    },
                )
            for pid, month, actual, day in (("v1", 3, 100, 1), ("v2", 3, 120, 2), ("v1", 4, 90, 3)):
                await conn.execute(
                    sa.text(
                        "INSERT INTO progress_reports VALUES"
                        " (:p, 'k', :m, :a, 100, false, 'deu-planner', :at)"
                    ),
                    {
                        "p": pid,
                        "m": date(2025, month, 1),
                        "a": actual,
                        "at": datetime(2025, 5, day, tzinfo=UTC),
                    },
                )
        await asyncio.to_thread(migrations.upgrade, MIGRATIONS, url)
        lineage, months = await progress.progress_history(db, DEU, "v1", "k")
        assert lineage == "DEU/2025-01-01/2026-12-31"
        assert [(m.month, m.actual_output, m.plan_id) for m in months] == [
            (date(2025, 3, 1), 120, "v2"),
            (date(2025, 4, 1), 90, "v1"),
        ]
        [march] = [m.corrections for m in months if m.month.month == 3]
        assert [(c.revision, c.previous_output, c.actual_output, c.plan_id) for c in march] == [
            (2, 100, 120, "v2")
        ]
        async with db.sessions() as session:
            product = (await session.execute(sa.text("SELECT DISTINCT product FROM progress_actuals"))).all()
        assert [tuple(r) for r in product] == [(PRODUCT,)]
        # Back down: each month's standing figure under the version it was last reported against.
        await asyncio.to_thread(migrations.downgrade, MIGRATIONS, url, "0008")
        async with db.sessions() as session:
            rows = (
                await session.execute(
                    sa.text("SELECT plan_id, month, actual_output FROM progress_reports ORDER BY month")
                )
            ).all()
        assert [(r[0], str(r[1]), r[2]) for r in rows] == [
            ("v2", "2025-03-01", 120),
            ("v1", "2025-04-01", 90),
        ]
    finally:
        await db.dispose()
