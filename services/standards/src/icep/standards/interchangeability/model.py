"""Interchangeability: which item is cleared for which platform, for which nations; and the answer to
"can nation N fire item I from platform P, and why".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from icep.contracts import Releasability
from icep.contracts.nations import NATO
from icep.platform.domain import Actor, Aggregate, DomainEvent, invalid
from icep.platform.errors import Forbidden
from icep.standards.answers.model import NationalResponse, ResponseStatus
from icep.standards.records import (
    RESPONDING_NATIONS,
    STANDARDS_ROLE,
    Change,
    including,
    owned,
)
from icep.standards.standards.model import (
    Standard,
    StandardStatus,
)


class InterchangeabilityStatus(StrEnum):
    VERIFIED = "verified"
    RESTRICTED = "restricted"
    NOT_INTERCHANGEABLE = "not_interchangeable"


class BasisKind(StrEnum):
    STANDARD = "standard"
    TRIAL = "trial"


@dataclass(frozen=True)
class Basis:
    """Why a clearance holds: a standard edition (its id) or a firing trial (its reference)."""

    kind: BasisKind
    reference: str


@dataclass(frozen=True, kw_only=True)
class ClearanceRecorded(DomainEvent):
    by: str


@dataclass(frozen=True, kw_only=True)
class ClearanceUpdated(DomainEvent):
    by: str


@dataclass(frozen=True)
class Interchangeability(Aggregate):
    """Which item (munition or other) is cleared for which platform, by which nations."""

    id: str
    item: str
    platform: str
    nations: tuple[str, ...]
    status: InterchangeabilityStatus
    basis: Basis
    restrictions: tuple[str, ...]
    updated_at: datetime
    version: int
    history: tuple[Change, ...]
    #: Owned by the nation (or NATO) that recorded it; the nations it clears always read it.
    releasability: Releasability | None = None

    @property
    def release(self) -> Releasability:
        return self.releasability or including(Releasability(owner=NATO), *self.nations)

    @classmethod
    def record(
        cls,
        *,
        id: str,
        actor: Actor,
        item: str,
        platform: str,
        nations: tuple[str, ...],
        status: InterchangeabilityStatus,
        basis: Basis,
        now: datetime,
        restrictions: tuple[str, ...] = (),
        releasability: Releasability | None = None,
    ) -> Interchangeability:
        _check_clearance(actor, basis, nations, status, restrictions, item, platform)
        return cls(
            id=id,
            item=item.strip(),
            platform=platform.strip(),
            nations=tuple(sorted(set(nations))),
            status=status,
            basis=basis,
            restrictions=restrictions,
            updated_at=now,
            version=1,
            history=(Change("recorded", status.value, actor.id, now),),
            releasability=owned(releasability, actor.nation, *nations),
            events=(ClearanceRecorded(by=actor.id, at=now),),
        )

    def update(
        self,
        actor: Actor,
        *,
        now: datetime,
        status: InterchangeabilityStatus,
        nations: tuple[str, ...] | None = None,
        basis: Basis | None = None,
        restrictions: tuple[str, ...] = (),
    ) -> Interchangeability:
        nations = self.nations if nations is None else nations
        _check_clearance(actor, basis or self.basis, nations, status, restrictions, self.item, self.platform)
        if actor.nation != self.release.owner:
            raise Forbidden(f"only {self.release.owner} may change a clearance it recorded")
        return self.recorded(
            ClearanceUpdated(by=actor.id, at=now),
            releasability=including(self.release, *nations),
            nations=tuple(sorted(set(nations))),
            status=status,
            basis=basis or self.basis,
            restrictions=restrictions,
            updated_at=now,
            version=self.version + 1,
            history=(*self.history, Change("updated", status.value, actor.id, now)),
        )


def _check_clearance(
    actor: Actor,
    basis: Basis,
    nations: tuple[str, ...],
    status: InterchangeabilityStatus,
    restrictions: tuple[str, ...],
    item: str,
    platform: str,
) -> None:
    if STANDARDS_ROLE not in actor.roles:
        raise Forbidden("only standards staff record interchangeability")
    if not item.strip() or not platform.strip():
        raise invalid("body.item", "a clearance names the item and the platform")
    if not nations:
        raise invalid("body.nations", "a clearance names the nations it is for")
    if not basis.reference.strip():
        raise invalid("body.basis.reference", "a clearance names its basis: a standard edition or a trial")
    unknown = [n for n in nations if n not in RESPONDING_NATIONS]
    if unknown:
        raise invalid("body.nations", f"unknown nations {unknown}")
    # A nation clears for itself; NATO staff record clearances agreed among several nations.
    if actor.nation != NATO and set(nations) != {actor.nation}:
        raise Forbidden(f"{actor.nation} may record clearances for itself only")
    if status is InterchangeabilityStatus.RESTRICTED and not any(r.strip() for r in restrictions):
        raise invalid("body.restrictions", "a restricted clearance says what the restrictions are")


class Answer(StrEnum):
    YES = "yes"
    YES_WITH_RESTRICTIONS = "yes_with_restrictions"
    NO = "no"


@dataclass(frozen=True)
class InterchangeabilityAnswer:
    nation: str
    item: str
    platform: str
    answer: Answer
    reasons: tuple[str, ...]
    clearance_id: str | None = None


def can_fire(
    nation: str,
    item: str,
    platform: str,
    clearances: Iterable[Interchangeability],
    standards: Iterable[Standard] = (),
    responses: Iterable[NationalResponse] = (),
    on: date | None = None,
) -> InterchangeabilityAnswer:
    """Can `nation` fire `item` from `platform`, and why or why not.

    The latest clearance covering the nation decides. A clearance that rests on a standard is only as
    good as the nation's standing on that edition: a reservation, not ratifying, or a cancelled edition
    restricts it, and the reasons say so.
    """
    matching = [c for c in clearances if c.item == item and c.platform == platform]
    mine = [c for c in matching if nation in c.nations]
    if not mine:
        reasons = [f"no clearance of {item} for {platform} is recorded for {nation}"]
        others = sorted(
            {
                n
                for c in matching
                if c.status is not InterchangeabilityStatus.NOT_INTERCHANGEABLE
                for n in c.nations
            }
        )
        if others:
            reasons.append(f"cleared for {', '.join(others)} only")
        return InterchangeabilityAnswer(nation, item, platform, Answer.NO, tuple(reasons))
    clearance = max(mine, key=lambda c: (c.updated_at, c.version))
    basis = _describe_basis(clearance.basis, standards)
    if clearance.status is InterchangeabilityStatus.NOT_INTERCHANGEABLE:
        return InterchangeabilityAnswer(
            nation,
            item,
            platform,
            Answer.NO,
            (f"{item} is not interchangeable with {platform} ({basis})", *clearance.restrictions),
            clearance.id,
        )
    answer = (
        Answer.YES if clearance.status is InterchangeabilityStatus.VERIFIED else Answer.YES_WITH_RESTRICTIONS
    )
    reasons = [f"{clearance.status.value} for {nation} ({basis})", *clearance.restrictions]
    if clearance.basis.kind is BasisKind.STANDARD:
        standard = next((s for s in standards if s.id == clearance.basis.reference), None)
        response = next(
            (r for r in responses if r.standard_id == clearance.basis.reference and r.nation == nation), None
        )
        if standard is not None and standard.status is StandardStatus.CANCELLED:
            answer = Answer.YES_WITH_RESTRICTIONS
            reasons.append(f"{standard.reference}, the basis, is cancelled")
        elif standard is not None and standard.status is StandardStatus.SUPERSEDED:
            reasons.append(f"{standard.reference}, the basis, is superseded")
        if standard is not None and (response is None or response.status is ResponseStatus.PENDING):
            reasons.append(f"{nation} has not answered {standard.reference}, the basis, yet")
        if response is not None:
            if response.status is ResponseStatus.NOT_RATIFYING:
                answer = Answer.YES_WITH_RESTRICTIONS
                reasons.append(f"{nation} does not ratify the basis standard")
            for r in response.reservations:
                answer = Answer.YES_WITH_RESTRICTIONS
                reasons.append(r.describe(nation))
            if response.ratified and on is not None and not response.implemented(on):
                reasons.append(f"{nation} ratified the basis standard but has not implemented it")
    return InterchangeabilityAnswer(nation, item, platform, answer, tuple(reasons), clearance.id)


def _describe_basis(basis: Basis, standards: Iterable[Standard]) -> str:
    if basis.kind is BasisKind.TRIAL:
        return f"on the basis of firing trial {basis.reference}"
    standard = next((s for s in standards if s.id == basis.reference), None)
    return f"on the basis of {standard.reference if standard else basis.reference}"
