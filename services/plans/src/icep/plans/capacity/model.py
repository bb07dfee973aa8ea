"""The Alliance capacity picture: summary lines and supply-chain dependencies, in plain Python."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class SummaryFilter:
    capability_area: str | None = None
    product: str | None = None
    year: int | None = None
    nation: str | None = None


@dataclass
class SummaryLine:
    capability_area: str
    product: str
    unit: str
    year: int
    requirement: int | None = None
    committed: int = 0
    actual: int | None = None
    actual_through: date | None = None
    nations: set[str] | None = None
    commitments: int = 0

    @property
    def gap(self) -> int | None:
        """Requirement not covered by committed capacity (negative: more committed than required)."""
        return None if self.requirement is None else self.requirement - self.committed


@dataclass
class Dependency:
    input: str
    category: str
    commitments: int = 0
    single_sourced: int = 0
    by_country: dict[str, int] | None = None
    dependents: list[dict[str, str]] | None = None


# --- the timeline: month by month ---------------------------------------------------------------------------

#: The longest timeline one request may ask for: ten years of months.
MAX_TIMELINE_MONTHS = 120


def month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def month_of(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


def months_between(first: date, last: date) -> list[date]:
    """The first days of the months from `first`'s to `last`'s, both included."""
    return [month_of(i) for i in range(month_index(first), month_index(last) + 1)]


def monthly_requirement(required_quantity: int) -> float:
    """A capability target is a yearly quantity; the timeline draws it as the average monthly rate that
    meets it (the year's quantity / 12), on the same scale as the committed ramp and the actuals, which are
    outputs per month. The yearly figures themselves travel alongside (`TimelineSeries.requirements`)."""
    return round(required_quantity / 12, 2)


@dataclass
class TimelinePoint:
    month: date
    #: The Alliance requirement as a monthly rate (yearly target / 12); None: no target for the year, or a
    #: nation's series (targets are Alliance-wide).
    requirement: float | None = None
    #: Planned output of the month by the lineages' accepted plans; None: no accepted plan covers it.
    committed: int | None = None
    #: Reported output of the month (each month's latest corrected figure); None: nothing reported.
    actual: int | None = None
    #: How many commitments' reports the actual sums.
    reports: int = 0


@dataclass
class TimelineSeries:
    capability_area: str
    product: str
    unit: str
    #: None: every nation whose figures the caller may see; else that nation alone.
    nation: str | None
    points: list[TimelinePoint]
    #: The capability targets (year, required quantity) the requirement line is drawn from.
    requirements: list[tuple[int, int]]


@dataclass(frozen=True)
class PlannedCommitment:
    """A commitment of a lineage's accepted plan, with the plan's nation and period."""

    nation: str
    period_start: date
    period_end: date
    capability_area: str
    product: str
    unit: str
    rate: Callable[[date], int]


@dataclass(frozen=True)
class ReportedMonth:
    """The standing actuals of a nation's commitments for a product in one month (summed), and how many."""

    nation: str
    capability_area: str
    product: str
    unit: str
    month: date
    actual: int
    reports: int


@dataclass(frozen=True)
class YearTarget:
    capability_area: str
    product: str
    unit: str
    year: int
    required_quantity: int


def build_timeline(
    months: list[date],
    commitments: list[PlannedCommitment],
    targets: list[YearTarget],
    reported: list[ReportedMonth],
) -> list[TimelineSeries]:
    """Per product: a series over every nation the caller may see (with the requirement), then one per
    nation. Everything given is already what the caller may see and what the filters select."""
    first, last = months[0], months[-1]
    series: dict[tuple[str, str | None], TimelineSeries] = {}

    def of(area: str, product: str, unit: str, nation: str | None) -> TimelineSeries:
        found = series.get((product, nation))
        if found is None:
            found = series[(product, nation)] = TimelineSeries(
                area, product, unit, nation, [TimelinePoint(m) for m in months], []
            )
        return found

    at = {m: i for i, m in enumerate(months)}
    for c in commitments:
        total, own = (
            of(c.capability_area, c.product, c.unit, None),
            of(c.capability_area, c.product, c.unit, c.nation),
        )
        start = max(month_index(c.period_start), month_index(first))
        end = min(month_index(c.period_end), month_index(last))
        for index in range(start, end + 1):
            month = month_of(index)
            rate = c.rate(month)
            for s in (total, own):
                point = s.points[at[month]]
                point.committed = (point.committed or 0) + rate
    for r in reported:
        if r.month not in at:
            continue
        for s in (
            of(r.capability_area, r.product, r.unit, None),
            of(r.capability_area, r.product, r.unit, r.nation),
        ):
            point = s.points[at[r.month]]
            point.actual = (point.actual or 0) + r.actual
            point.reports += r.reports
    yearly: dict[tuple[str, int], int] = {}
    for t in targets:
        if first.year <= t.year <= last.year:
            of(t.capability_area, t.product, t.unit, None)
            yearly[(t.product, t.year)] = yearly.get((t.product, t.year), 0) + t.required_quantity
    for (product, year), quantity in sorted(yearly.items()):
        total = series[(product, None)]
        total.requirements.append((year, quantity))
        for point in total.points:
            if point.month.year == year:
                point.requirement = monthly_requirement(quantity)
    return sorted(
        series.values(), key=lambda s: (s.capability_area, s.product, s.nation is not None, s.nation or "")
    )
