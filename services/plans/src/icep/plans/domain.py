"""National Plans: the rules, in plain Python (no web, database or Kafka here).

A plan's life: draft -> submitted -> under_review -> accepted, or returned -> draft; draft or
submitted -> withdrawn; accepted -> superseded. This walking skeleton implements creating a draft and
submitting it; the transition table already holds the whole life so later actions only add methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum

from icep.contracts import Releasability, ReleasabilityScope
from icep.contracts.nations import NATO
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
    try:
        return TRANSITIONS[(action, current)]
    except KeyError:
        raise IllegalTransition("plan", action, current.value) from None


@dataclass(frozen=True)
class Actor:
    """Who acts: the domain needs the nation and roles, not the token."""

    id: str
    nation: str
    roles: frozenset[str]


@dataclass(frozen=True)
class NationalPlan:
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
    ) -> NationalPlan:
        if "planner" not in actor.roles:
            raise Forbidden("only a nation's planners create national plans")
        if actor.nation == NATO:
            raise Forbidden("national plans belong to nations; NATO staff review them")
        if period_end < period_start:
            raise Unprocessable("the plan's period ends before it starts", field="period_end")
        if not title.strip():
            raise Unprocessable("a plan needs a title", field="title")
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
        )

    def _check_owner_planner(self, actor: Actor, action: str) -> None:
        if actor.nation != self.nation or "planner" not in actor.roles:
            raise Forbidden(f"only {self.nation}'s planners may {action} this plan")

    def submit(self, actor: Actor, now: datetime) -> NationalPlan:
        self._check_owner_planner(actor, "submit")
        status = next_status("submit", self.status)
        return replace(
            self,
            status=status,
            version=self.version + 1,
            submitted_at=now,
            history=(*self.history, (status.value, actor.id, now)),
        )

    def visible_to(self, nation: str, roles: frozenset[str]) -> bool:
        """The owner always; NATO reviewers once submitted; others once accepted and released to them."""
        if nation == self.nation:
            return True
        if nation == NATO and "reviewer" in roles and self.status is not PlanStatus.DRAFT:
            return True
        return self.status is PlanStatus.ACCEPTED and self.releasability.allows(nation)

    def event_releasability(self) -> Releasability:
        """Who may learn of the plan now: the same rule as `visible_to`, for events.

        A draft is the owner's alone; once submitted NATO (its reviewers) may know of it too; once
        accepted, whoever the owner released it to.
        """
        if self.status in (PlanStatus.ACCEPTED, PlanStatus.SUPERSEDED):
            return self.releasability
        if self.status is PlanStatus.DRAFT:
            return Releasability(owner=self.nation)
        return Releasability(owner=self.nation, scope=ReleasabilityScope.NATIONS, nations=(NATO,))
