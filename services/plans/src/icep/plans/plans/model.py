"""National Plans: the rules, in plain Python (no web, database or Kafka here).

A plan's life: draft -> submitted -> under_review -> accepted, or returned -> draft; draft or
submitted -> withdrawn; accepted -> superseded when a newer plan of the same nation for the same period is
accepted. Only drafts are edited. Visibility is one rule (`readers`) used for reads, lists, aggregates and
events; the capacity figures can be released more widely than the whole plan. Each change records a domain
event (`PlanSubmitted`, ...); `icep.plans.events` says what, if anything, is published for it.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum

from icep.contracts import Releasability, ReleasabilityScope
from icep.contracts.nations import NATO
from icep.contracts.plans import planned_in_year
from icep.contracts.releasability import encode_tokens as encode_tokens
from icep.contracts.releasability import nation_tokens
from icep.contracts.releasability import reader_tokens as release_tokens
from icep.platform import visibility
from icep.platform.domain import Actor as Actor  # re-exported: the domain speaks of actors
from icep.platform.domain import Aggregate, DomainEvent, invalid, transition
from icep.platform.errors import Forbidden, IllegalTransition, Unprocessable


class PlanStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    UNDER_REVIEW = "under_review"
    ACCEPTED = "accepted"
    RETURNED = "returned"
    WITHDRAWN = "withdrawn"
    SUPERSEDED = "superseded"


#: (action, from) -> to
TRANSITIONS: dict[tuple[str, PlanStatus], PlanStatus] = {
    ("submit", PlanStatus.DRAFT): PlanStatus.SUBMITTED,
    ("start_review", PlanStatus.SUBMITTED): PlanStatus.UNDER_REVIEW,
    ("accept", PlanStatus.UNDER_REVIEW): PlanStatus.ACCEPTED,
    ("return", PlanStatus.SUBMITTED): PlanStatus.RETURNED,
    ("return", PlanStatus.UNDER_REVIEW): PlanStatus.RETURNED,
    ("redraft", PlanStatus.RETURNED): PlanStatus.DRAFT,
    ("withdraw", PlanStatus.DRAFT): PlanStatus.WITHDRAWN,
    ("withdraw", PlanStatus.SUBMITTED): PlanStatus.WITHDRAWN,
    ("supersede", PlanStatus.ACCEPTED): PlanStatus.SUPERSEDED,
}


def next_status(action: str, current: PlanStatus) -> PlanStatus:
    return transition("plan", TRANSITIONS, action, current)


# --- content -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RampStep:
    on: date
    output_per_month: int


@dataclass(frozen=True)
class Operator:
    company: str
    sme: bool = False


@dataclass(frozen=True)
class Investment:
    amount: float
    currency: str


@dataclass(frozen=True)
class BottleneckInput:
    input: str
    category: str
    source_countries: tuple[str, ...]
    single_source: bool
    stock_cover_days: int | None = None


@dataclass(frozen=True)
class CapacityCommitment:
    """An output rate of a product at a site, and how it grows (the ramp) and surges."""

    key: str
    product: str
    capability_area: str
    site: str
    site_country: str
    unit: str
    baseline_per_month: int
    current_per_month: int
    target_per_month: int
    ramp: tuple[RampStep, ...]
    surge_per_month: int | None
    surge_days: int | None
    lead_time_days: int | None
    operator: Operator
    investment: Investment | None = None
    bottlenecks: tuple[BottleneckInput, ...] = ()

    def planned_rate(self, month: date) -> int:
        """Planned output in the month starting `month`: the latest ramp step dated on or before its last
        day, or the current rate before the first step."""
        last_day = date(month.year, month.month, calendar.monthrange(month.year, month.month)[1])
        rate = self.current_per_month
        for step in self.ramp:
            if step.on <= last_day:
                rate = step.output_per_month
        return rate

    def planned_in_year(self, year: int, period_start: date, period_end: date) -> int:
        """Planned output over the months of `year` that fall within the plan's period.

        Summed per ramp segment rather than month by month: the Alliance summary adds this up for every
        commitment of every visible plan and year on each request.
        """
        return planned_in_year(
            self.current_per_month,
            [(s.on, s.output_per_month) for s in self.ramp],
            period_start,
            period_end,
            year,
        )


class MeasureKind(StrEnum):
    LEGISLATION = "legislation"
    PROCUREMENT_REFORM = "procurement_reform"
    LONG_TERM_CONTRACT = "long_term_contract"
    NEW_PRODUCTION_LINE = "new_production_line"
    OTHER = "other"


@dataclass(frozen=True)
class Measure:
    kind: MeasureKind
    description: str
    starts: date | None = None
    completes: date | None = None


@dataclass(frozen=True)
class PlanContent:
    commitments: tuple[CapacityCommitment, ...] = ()
    measures: tuple[Measure, ...] = ()

    def commitment(self, key: str) -> CapacityCommitment | None:
        return next((c for c in self.commitments if c.key == key), None)

    def check(self, period_start: date, period_end: date) -> None:
        """Rules across fields (single fields are checked where they are parsed); 422 names the field."""
        seen: set[str] = set()
        for i, c in enumerate(self.commitments):
            at = f"body.content.commitments.{i}"
            if c.key in seen:
                raise invalid(f"{at}.key", f"commitment key {c.key!r} is used twice")
            seen.add(c.key)
            if c.target_per_month < c.baseline_per_month:
                raise invalid(f"{at}.target_per_month", "the target is below the baseline")
            if c.surge_per_month is not None and c.surge_per_month < c.target_per_month:
                raise invalid(f"{at}.surge_per_month", "the surge output is below the target output")
            if (c.surge_per_month is None) != (c.surge_days is None):
                raise invalid(f"{at}.surge_days", "a surge output needs the days to reach it, and back")
            previous: date | None = None
            for j, step in enumerate(c.ramp):
                if previous is not None and step.on <= previous:
                    raise invalid(f"{at}.ramp.{j}.on", "ramp steps must be in date order, one per date")
                if not period_start <= step.on <= period_end:
                    raise invalid(f"{at}.ramp.{j}.on", "a ramp step lies outside the plan's period")
                previous = step.on
            for j, b in enumerate(c.bottlenecks):
                if b.single_source and len(b.source_countries) != 1:
                    raise invalid(
                        f"{at}.bottlenecks.{j}.source_countries",
                        "a single-sourced input has exactly one source country",
                    )
        for i, m in enumerate(self.measures):
            if m.starts and m.completes and m.completes < m.starts:
                raise invalid(
                    f"body.content.measures.{i}.completes", "a measure cannot complete before it starts"
                )


#: National plans cover years of industrial ramp-up; a bounded period also bounds the yearly figures.
PERIOD_YEARS = (2000, 2100)
MAX_PERIOD_YEARS = 30


def check_period(start: date, end: date) -> None:
    if end < start:
        raise invalid("body.period_end", "the period ends before it starts")
    if not (PERIOD_YEARS[0] <= start.year and end.year <= PERIOD_YEARS[1]):
        raise invalid("body.period_start", f"a plan's period lies within {PERIOD_YEARS[0]}-{PERIOD_YEARS[1]}")
    if end.year - start.year >= MAX_PERIOD_YEARS:
        raise invalid("body.period_end", f"a plan's period spans at most {MAX_PERIOD_YEARS} years")


def lineage_of(nation: str, period_start: date, period_end: date) -> str:
    """The key of a plan lineage (see `NationalPlan.lineage`): stable, readable, and the same rule
    `accept` uses to find the plan a newer version supersedes."""
    return f"{nation}/{period_start.isoformat()}/{period_end.isoformat()}"


# --- visibility -----------------------------------------------------------------------------------------


def caller_tokens(nation: str) -> frozenset[str]:
    """The reader tokens a caller holds (see `icep.platform.visibility`). Reading a plan needs no role:
    every principal of a nation reads what is released to that nation, so that the nations reading a plan
    are exactly the nations its events are marked for (NATO staff read what was submitted to NATO; only
    its reviewers act on it)."""
    return nation_tokens(nation)


# --- what happens to a plan ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PlanDrafted(DomainEvent):
    by: str


@dataclass(frozen=True, kw_only=True)
class PlanEdited(DomainEvent):
    by: str


@dataclass(frozen=True, kw_only=True)
class PlanSubmitted(DomainEvent):
    by: str


@dataclass(frozen=True, kw_only=True)
class ReviewStarted(DomainEvent):
    by: str


@dataclass(frozen=True, kw_only=True)
class PlanReturned(DomainEvent):
    by: str


@dataclass(frozen=True, kw_only=True)
class PlanRedrafted(DomainEvent):
    by: str


@dataclass(frozen=True, kw_only=True)
class PlanWithdrawn(DomainEvent):
    by: str


@dataclass(frozen=True, kw_only=True)
class PlanAccepted(DomainEvent):
    by: str


@dataclass(frozen=True, kw_only=True)
class PlanSuperseded(DomainEvent):
    by_plan: str
    #: Whether everyone who may read the old plan may also read its successor (then it is named).
    successor_named: bool


@dataclass(frozen=True, kw_only=True)
class PlanReleased(DomainEvent):
    by: str


def _now(now: datetime | None) -> datetime:
    """When a change happens: a use case says so; a caller that does not (a rule checked alone) means now."""
    return now if now is not None else datetime.now(UTC)


# --- the plan ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NationalPlan(Aggregate):
    id: str
    nation: str
    title: str
    period_start: date
    period_end: date
    capability_areas: tuple[str, ...]
    releasability: Releasability
    status: PlanStatus
    version: int
    created_by: str
    created_at: datetime
    submitted_at: datetime | None = None
    history: tuple[tuple[str, str, datetime], ...] = field(default=())
    content: PlanContent = field(default_factory=PlanContent)
    #: Who may see the capacity figures (commitments, actuals); None: the same as the whole plan.
    capacity_releasability: Releasability | None = None
    returned_reasons: tuple[str, ...] = ()
    superseded_by: str | None = None

    @classmethod
    def draft(
        cls,
        *,
        id: str,
        actor: Actor,
        title: str,
        period_start: date,
        period_end: date,
        capability_areas: tuple[str, ...],
        release_scope: ReleasabilityScope,
        release_nations: tuple[str, ...],
        now: datetime,
        content: PlanContent | None = None,
        capacity_releasability: tuple[ReleasabilityScope, tuple[str, ...]] | None = None,
    ) -> NationalPlan:
        if "planner" not in actor.roles or actor.nation == NATO:
            raise Forbidden("only a nation's planners create national plans")
        check_period(period_start, period_end)
        if not title.strip():
            raise invalid("body.title", "a plan needs a title")
        content = content or PlanContent()
        content.check(period_start, period_end)
        return cls(
            id=id,
            nation=actor.nation,
            title=title.strip(),
            period_start=period_start,
            period_end=period_end,
            capability_areas=capability_areas,
            releasability=Releasability(owner=actor.nation, scope=release_scope, nations=release_nations),
            status=PlanStatus.DRAFT,
            version=1,
            created_by=actor.id,
            created_at=now,
            history=(("draft", actor.id, now),),
            content=content,
            events=(PlanDrafted(by=actor.id, at=now),),
            capacity_releasability=(
                None
                if capacity_releasability is None
                else Releasability(
                    owner=actor.nation, scope=capacity_releasability[0], nations=capacity_releasability[1]
                )
            ),
        )

    # -- who may do what

    def _check_owner_planner(self, actor: Actor, action: str) -> None:
        if actor.nation != self.nation or "planner" not in actor.roles:
            raise Forbidden(f"only {self.nation}'s planners may {action} this plan")

    @staticmethod
    def _check_reviewer(actor: Actor, action: str) -> None:
        if actor.nation != NATO or "reviewer" not in actor.roles:
            raise Forbidden(f"only NATO reviewers may {action} a plan")

    def _move(
        self, action: str, actor: Actor, now: datetime, event: DomainEvent | None, **changes: object
    ) -> NationalPlan:
        status = next_status(action, self.status)
        return self.recorded(
            *(() if event is None else (event,)),
            status=status,
            version=self.version + 1,
            history=(*self.history, (status.value, actor.id, now)),
            **changes,
        )

    # -- transitions

    def submit(self, actor: Actor, now: datetime) -> NationalPlan:
        self._check_owner_planner(actor, "submit")
        return self._move("submit", actor, now, PlanSubmitted(by=actor.id, at=now), submitted_at=now)

    def start_review(self, actor: Actor, now: datetime) -> NationalPlan:
        self._check_reviewer(actor, "review")
        return self._move("start_review", actor, now, ReviewStarted(by=actor.id, at=now))

    def accept(self, actor: Actor, now: datetime) -> NationalPlan:
        self._check_reviewer(actor, "accept")
        return self._move("accept", actor, now, PlanAccepted(by=actor.id, at=now), returned_reasons=())

    def return_(self, actor: Actor, reasons: tuple[str, ...], now: datetime) -> NationalPlan:
        self._check_reviewer(actor, "return")
        reasons = tuple(r.strip() for r in reasons if r.strip())
        if not reasons:
            raise invalid("body.reasons", "a returned plan needs at least one reason")
        return self._move("return", actor, now, PlanReturned(by=actor.id, at=now), returned_reasons=reasons)

    def redraft(self, actor: Actor, now: datetime) -> NationalPlan:
        self._check_owner_planner(actor, "redraft")
        return self._move("redraft", actor, now, PlanRedrafted(by=actor.id, at=now))

    def withdraw(self, actor: Actor, now: datetime) -> NationalPlan:
        self._check_owner_planner(actor, "withdraw")
        return self._move("withdraw", actor, now, PlanWithdrawn(by=actor.id, at=now))

    def supersede(self, by: NationalPlan, now: datetime) -> NationalPlan:
        """Replaced by `by`, a newer plan of the same nation for the same period, just accepted."""
        if by.nation != self.nation or (by.period_start, by.period_end) != (
            self.period_start,
            self.period_end,
        ):
            raise Unprocessable("only a plan of the same nation for the same period supersedes another")
        superseded = self._move("supersede", Actor(by.id, NATO, frozenset()), now, None, superseded_by=by.id)
        # The successor is named only when everyone told of the old plan may also see the new one.
        named = superseded.readers() <= by.readers()
        return superseded.recorded(PlanSuperseded(by_plan=by.id, successor_named=named, at=now))

    @property
    def lineage(self) -> str:
        """The lineage this plan is a version of: `DEU/2025-01-01/2026-12-31`. The plans of one nation for
        one period replace one another (`supersede`), so nation and period name the line of versions; the
        actuals reported against any of them belong to it and outlive each version."""
        return lineage_of(self.nation, self.period_start, self.period_end)

    def supersedes(self, other: NationalPlan) -> bool:
        return (
            other.id != self.id
            and other.status is PlanStatus.ACCEPTED
            and other.nation == self.nation
            and (other.period_start, other.period_end) == (self.period_start, self.period_end)
        )

    # -- editing (drafts only)

    def edit(
        self,
        actor: Actor,
        *,
        title: str | None = None,
        period_start: date | None = None,
        period_end: date | None = None,
        capability_areas: tuple[str, ...] | None = None,
        content: PlanContent | None = None,
        now: datetime | None = None,
    ) -> NationalPlan:
        self._check_owner_planner(actor, "edit")
        if self.status is not PlanStatus.DRAFT:
            raise IllegalTransition("plan", "edit", self.status.value)
        start = period_start or self.period_start
        end = period_end or self.period_end
        check_period(start, end)
        if title is not None and not title.strip():
            raise invalid("body.title", "a plan needs a title")
        new_content = content if content is not None else self.content
        new_content.check(start, end)
        return self.recorded(
            PlanEdited(by=actor.id, at=_now(now)),
            title=title.strip() if title is not None else self.title,
            period_start=start,
            period_end=end,
            capability_areas=capability_areas if capability_areas is not None else self.capability_areas,
            content=new_content,
            version=self.version + 1,
        )

    def release(
        self,
        actor: Actor,
        releasability: Releasability,
        capacity: Releasability | None,
        now: datetime | None = None,
    ) -> NationalPlan:
        """The owner changes who may see the plan (once accepted) and its capacity figures."""
        self._check_owner_planner(actor, "release")
        if self.status in (PlanStatus.WITHDRAWN, PlanStatus.SUPERSEDED):
            raise IllegalTransition("plan", "release", self.status.value)
        if releasability.owner != self.nation or (capacity is not None and capacity.owner != self.nation):
            raise Forbidden("only the owner nation releases its plan")
        return self.recorded(
            PlanReleased(by=actor.id, at=_now(now)),
            releasability=releasability,
            capacity_releasability=capacity,
            version=self.version + 1,
        )

    # -- visibility: one rule for reads, lists, aggregates and the marking of events

    def _nato_saw_it(self) -> bool:
        if self.status is PlanStatus.DRAFT:
            return False
        if self.status is PlanStatus.WITHDRAWN:
            # Withdrawn straight from draft: NATO never saw it, and does not now.
            before = self.history[-2][0] if len(self.history) >= 2 else PlanStatus.DRAFT.value
            return before != PlanStatus.DRAFT.value
        return True

    def readers(self) -> frozenset[str]:
        """Who may read the whole plan now: the owner always; NATO staff once it was submitted to NATO
        (also after acceptance, whatever the release says: NATO reviewed it); once accepted, whoever the
        owner released it to."""
        tokens = {self.nation}
        if self._nato_saw_it():
            tokens.add(NATO)
        if self.status in (PlanStatus.ACCEPTED, PlanStatus.SUPERSEDED):
            tokens |= release_tokens(self.releasability)
        return frozenset(tokens)

    def capacity_readers(self) -> frozenset[str]:
        """Who may read the capacity figures: the plan's readers, plus the wider capacity release."""
        tokens = set(self.readers())
        if self.capacity_releasability is not None and self.status in (
            PlanStatus.ACCEPTED,
            PlanStatus.SUPERSEDED,
        ):
            tokens |= release_tokens(self.capacity_releasability)
        return frozenset(tokens)

    def version_visible_to(self, status: str, nation: str) -> bool:
        """An earlier version, for a caller who may see the plan now: the owner reads them all, NATO
        staff every version but drafts, everyone else only accepted or superseded ones."""
        if nation == self.nation:
            return True
        if status == PlanStatus.DRAFT.value:
            return False
        if nation == NATO:
            return True
        return status in (PlanStatus.ACCEPTED.value, PlanStatus.SUPERSEDED.value)

    def visible_to(self, nation: str) -> bool:
        """The owner always; NATO staff once submitted; others once accepted and released to them."""
        return visibility.may_read(self.readers(), nation)

    def capacity_visible_to(self, nation: str) -> bool:
        return visibility.may_read(self.capacity_readers(), nation)

    def event_releasability(self) -> Releasability:
        """The marking of the plan's events: exactly its readers (`readers`), after the change."""
        return visibility.releasability_of(self.nation, self.readers())

    def capacity_event_releasability(self) -> Releasability:
        """The marking of its capacity events (committed, progress, shortfalls): `capacity_readers`."""
        return visibility.releasability_of(self.nation, self.capacity_readers())
