"""A NATO standard edition and its life: study -> ratification_draft -> promulgated -> superseded (by a
newer edition of the same number), or cancelled from any live state; and the catalogue search.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from icep.contracts import Releasability, ReleasabilityScope
from icep.contracts.nations import NATO, PARTNERS
from icep.platform.domain import Actor, Aggregate, DomainEvent, invalid, transition
from icep.platform.errors import Forbidden
from icep.standards.records import (
    STANDARDS_ROLE,
    Change,
)

#: NATO standards are released to every Ally unless drafted otherwise (e.g. to Allies and named partners).
ALLIES_RELEASE = Releasability(owner=NATO, scope=ReleasabilityScope.ALLIES)


def _check_nato_standards(actor: Actor, action: str) -> None:
    if actor.nation != NATO or STANDARDS_ROLE not in actor.roles:
        raise Forbidden(f"only NATO standardization staff may {action} a standard")


@dataclass(frozen=True, kw_only=True)
class StandardDrafted(DomainEvent):
    by: str


@dataclass(frozen=True, kw_only=True)
class StandardCirculated(DomainEvent):
    by: str


@dataclass(frozen=True, kw_only=True)
class StandardPromulgated(DomainEvent):
    by: str


@dataclass(frozen=True, kw_only=True)
class StandardSuperseded(DomainEvent):
    """Replaced by a newer edition as that one was promulgated (no person acts on this edition)."""

    superseded_by: str


@dataclass(frozen=True, kw_only=True)
class StandardCancelled(DomainEvent):
    by: str
    reason: str


class StandardKind(StrEnum):
    STANAG = "STANAG"
    STANREC = "STANREC"
    AP = "AP"  # Allied publication, e.g. AEP-55


class StandardStatus(StrEnum):
    STUDY = "study"
    RATIFICATION_DRAFT = "ratification_draft"
    PROMULGATED = "promulgated"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"


#: (action, from) -> to
STANDARD_TRANSITIONS: dict[tuple[str, StandardStatus], StandardStatus] = {
    ("circulate", StandardStatus.STUDY): StandardStatus.RATIFICATION_DRAFT,
    ("promulgate", StandardStatus.RATIFICATION_DRAFT): StandardStatus.PROMULGATED,
    ("supersede", StandardStatus.PROMULGATED): StandardStatus.SUPERSEDED,
    ("cancel", StandardStatus.STUDY): StandardStatus.CANCELLED,
    ("cancel", StandardStatus.RATIFICATION_DRAFT): StandardStatus.CANCELLED,
    ("cancel", StandardStatus.PROMULGATED): StandardStatus.CANCELLED,
}


def next_standard_status(action: str, current: StandardStatus) -> StandardStatus:
    return transition("standard", STANDARD_TRANSITIONS, action, current)


@dataclass(frozen=True)
class Standard(Aggregate):
    """One edition of a NATO standard; a new edition is a new record that supersedes the old one."""

    id: str
    kind: StandardKind
    number: str
    edition: int
    title: str
    covering_publications: tuple[str, ...]
    domain: str
    capability_areas: tuple[str, ...]
    status: StandardStatus
    version: int
    history: tuple[Change, ...]
    #: Levels a product may claim conformance to (STANAG 4569 protection levels, 4586 levels of
    #: interoperability); empty when the standard has none.
    levels: tuple[str, ...] = ()
    supersedes: str | None = None
    superseded_by: str | None = None
    promulgated_on: date | None = None
    cancellation_reason: str | None = None
    #: Owned by NATO; who may read the standard, its national responses and their events.
    releasability: Releasability = ALLIES_RELEASE

    @property
    def reference(self) -> str:
        """How people cite it: `STANAG 4569 Ed. 3`."""
        return f"{self.kind.value} {self.number} Ed. {self.edition}"

    @classmethod
    def draft(
        cls,
        *,
        id: str,
        actor: Actor,
        kind: StandardKind,
        number: str,
        edition: int,
        title: str,
        domain: str,
        now: datetime,
        covering_publications: tuple[str, ...] = (),
        capability_areas: tuple[str, ...] = (),
        levels: tuple[str, ...] = (),
        supersedes: Standard | None = None,
        releasability: Releasability = ALLIES_RELEASE,
    ) -> Standard:
        _check_nato_standards(actor, "draft")
        if releasability.owner != NATO or releasability.scope in (
            ReleasabilityScope.NATIONAL,
            ReleasabilityScope.NATIONS,
        ):
            raise invalid(
                "body.releasability", "a NATO standard is released to all Allies (and named partners)"
            )
        if any(n not in PARTNERS for n in releasability.nations):
            raise invalid(
                "body.releasability.nations", "beyond the Allies, a standard is released to partners"
            )
        if not number.strip():
            raise invalid("body.number", "a standard needs a number")
        if not title.strip():
            raise invalid("body.title", "a standard needs a title")
        if edition < 1:
            raise invalid("body.edition", "editions are numbered from 1")
        if len(set(levels)) != len(levels):
            raise invalid("body.levels", "each level is named once")
        if supersedes is not None:
            if (supersedes.kind, supersedes.number) != (kind, number.strip()):
                raise invalid("body.supersedes", "a new edition supersedes an edition of the same standard")
            if supersedes.edition >= edition:
                raise invalid("body.edition", "a new edition must be numbered above the one it supersedes")
            if supersedes.status in (StandardStatus.SUPERSEDED, StandardStatus.CANCELLED):
                raise invalid("body.supersedes", f"{supersedes.reference} is already {supersedes.status}")
        return cls(
            id=id,
            kind=kind,
            number=number.strip(),
            edition=edition,
            title=title.strip(),
            covering_publications=covering_publications,
            domain=domain,
            capability_areas=capability_areas,
            status=StandardStatus.STUDY,
            version=1,
            history=(Change("drafted", StandardStatus.STUDY.value, actor.id, now),),
            levels=levels,
            supersedes=supersedes.id if supersedes else None,
            releasability=releasability,
            events=(StandardDrafted(by=actor.id, at=now),),
        )

    def _move(
        self, action: str, actor: Actor, now: datetime, event: DomainEvent, note: str = "", **changes: object
    ) -> Standard:
        status = next_standard_status(action, self.status)
        return self.recorded(
            event,
            status=status,
            version=self.version + 1,
            history=(*self.history, Change(action, status.value, actor.id, now, note)),
            **changes,
        )

    def circulate_for_ratification(self, actor: Actor, now: datetime) -> Standard:
        _check_nato_standards(actor, "circulate")
        return self._move("circulate", actor, now, StandardCirculated(by=actor.id, at=now))

    def promulgate(self, actor: Actor, now: datetime) -> Standard:
        _check_nato_standards(actor, "promulgate")
        return self._move(
            "promulgate", actor, now, StandardPromulgated(by=actor.id, at=now), promulgated_on=now.date()
        )

    def supersede(self, actor: Actor, by: Standard, now: datetime) -> Standard:
        """Replaced by `by`, a newer edition of the same standard (one edition of a standard is in force)."""
        _check_nato_standards(actor, "supersede")
        if (by.kind, by.number) != (self.kind, self.number) or by.edition <= self.edition:
            raise invalid("body.superseded_by", f"{by.reference} does not supersede {self.reference}")
        if by.status is not StandardStatus.PROMULGATED:
            raise invalid("body.superseded_by", f"{by.reference} is not promulgated yet")
        return self._move(
            "supersede",
            actor,
            now,
            StandardSuperseded(superseded_by=by.id, at=now),
            note=by.reference,
            superseded_by=by.id,
        )

    def cancel(self, actor: Actor, reason: str, now: datetime) -> Standard:
        _check_nato_standards(actor, "cancel")
        if not reason.strip():
            raise invalid("body.reason", "a cancellation needs a reason")
        return self._move(
            "cancel",
            actor,
            now,
            StandardCancelled(by=actor.id, reason=reason.strip(), at=now),
            note=reason.strip(),
            cancellation_reason=reason.strip(),
        )

    @property
    def in_force(self) -> bool:
        return self.status is StandardStatus.PROMULGATED


def search(
    standards: Iterable[Standard],
    *,
    number: str | None = None,
    text: str | None = None,
    capability_area: str | None = None,
    status: StandardStatus | None = None,
) -> list[Standard]:
    """The catalogue search: every filter given must match; ordered by number then edition."""
    needle = text.strip().lower() if text else None
    found = [
        s
        for s in standards
        if (number is None or s.number == number.strip())
        and (status is None or s.status is status)
        and (capability_area is None or capability_area in s.capability_areas)
        and (
            needle is None
            or needle in s.title.lower()
            or needle in s.reference.lower()
            or any(needle in p.lower() for p in s.covering_publications)
        )
    ]
    return sorted(found, key=lambda s: (s.kind.value, s.number, s.edition))
