"""Standards and interoperability: the rules, in plain Python (no web, database or Kafka here).

A standard edition's life: study -> ratification_draft -> promulgated -> superseded (by a newer edition of
the same number), or cancelled from any live state. Each nation answers each edition: pending, ratified,
ratified with reservations, not ratifying; and, being voluntary, records when it actually implemented it.
Products claim conformance to an edition (claimed -> under_test -> verified | rejected; verified -> expired
on its date). Interchangeability records which item is cleared for which platform, for which nations.

The answers people need are pure functions over these records: the interoperability verdict per pair of
nations, "can nation N fire item I from platform P, and why", and each nation's progress.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import IntEnum, StrEnum
from itertools import combinations

from icep.contracts import Releasability, ReleasabilityScope
from icep.contracts.nations import ALLIES, NATO, PARTNERS
from icep.platform import visibility
from icep.platform.domain import Actor as Actor  # re-exported: the domain speaks of actors
from icep.platform.domain import invalid, transition
from icep.platform.errors import Forbidden, IllegalTransition, NotFound

STANDARDS_ROLE = "standards"
#: Nations that answer standards: Allies and partners (the EU is an organisation and does not ratify).
RESPONDING_NATIONS: frozenset[str] = ALLIES | (PARTNERS - {"EU"})


@dataclass(frozen=True)
class Change:
    """One entry of a record's history: nothing is overwritten silently."""

    action: str
    status: str
    by: str
    at: datetime
    note: str = ""


#: NATO standards are released to every Ally unless drafted otherwise (e.g. to Allies and named partners).
ALLIES_RELEASE = Releasability(owner=NATO, scope=ReleasabilityScope.ALLIES)


def including(r: Releasability, *nations: str) -> Releasability:
    """`r` widened so that `nations` may also read (NATO staff assess every claim; a clearance's nations
    see it). Allies already include NATO staff."""
    missing = [n for n in dict.fromkeys(nations) if not r.allows(n)]
    if not missing:
        return r
    match r.scope:
        case ReleasabilityScope.NATIONAL:
            return Releasability(owner=r.owner, scope=ReleasabilityScope.NATIONS, nations=tuple(missing))
        case ReleasabilityScope.NATIONS:
            return Releasability(
                owner=r.owner, scope=ReleasabilityScope.NATIONS, nations=(*r.nations, *missing)
            )
        case _:
            partners = tuple(n for n in missing if n not in ALLIES and n != NATO)
            return Releasability(
                owner=r.owner, scope=ReleasabilityScope.ALLIES_PARTNERS, nations=(*r.nations, *partners)
            )


def readers(r: Releasability) -> frozenset[str]:
    """Who may read a record released as `r`: a standard, a national answer (`NationalResponse.
    releasability_for`), a claim or a clearance (their `release`). Its events are marked with the same
    releasability, so readers and recipients are one set (`icep.platform.visibility`)."""
    return visibility.readers_of(r)


def may_read(r: Releasability, nation: str) -> bool:
    return visibility.may_read(readers(r), nation)


def _check_nato_standards(actor: Actor, action: str) -> None:
    if actor.nation != NATO or STANDARDS_ROLE not in actor.roles:
        raise Forbidden(f"only NATO standardization staff may {action} a standard")


# --- the catalogue --------------------------------------------------------------------------------------


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
class Standard:
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
        )

    def _move(self, action: str, actor: Actor, now: datetime, note: str = "", **changes: object) -> Standard:
        status = next_standard_status(action, self.status)
        return replace(
            self,
            status=status,
            version=self.version + 1,
            history=(*self.history, Change(action, status.value, actor.id, now, note)),
            **changes,  # type: ignore[arg-type]
        )

    def circulate_for_ratification(self, actor: Actor, now: datetime) -> Standard:
        _check_nato_standards(actor, "circulate")
        return self._move("circulate", actor, now)

    def promulgate(self, actor: Actor, now: datetime) -> Standard:
        _check_nato_standards(actor, "promulgate")
        return self._move("promulgate", actor, now, promulgated_on=now.date())

    def supersede(self, actor: Actor, by: Standard, now: datetime) -> Standard:
        """Replaced by `by`, a newer edition of the same standard (one edition of a standard is in force)."""
        _check_nato_standards(actor, "supersede")
        if (by.kind, by.number) != (self.kind, self.number) or by.edition <= self.edition:
            raise invalid("body.superseded_by", f"{by.reference} does not supersede {self.reference}")
        if by.status is not StandardStatus.PROMULGATED:
            raise invalid("body.superseded_by", f"{by.reference} is not promulgated yet")
        return self._move("supersede", actor, now, note=by.reference, superseded_by=by.id)

    def cancel(self, actor: Actor, reason: str, now: datetime) -> Standard:
        _check_nato_standards(actor, "cancel")
        if not reason.strip():
            raise invalid("body.reason", "a cancellation needs a reason")
        return self._move("cancel", actor, now, note=reason.strip(), cancellation_reason=reason.strip())

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


# --- national responses ---------------------------------------------------------------------------------


class ResponseStatus(StrEnum):
    PENDING = "pending"
    RATIFIED = "ratified"
    RATIFIED_WITH_RESERVATIONS = "ratified_with_reservations"
    NOT_RATIFYING = "not_ratifying"


RATIFIED_STATES = frozenset({ResponseStatus.RATIFIED, ResponseStatus.RATIFIED_WITH_RESERVATIONS})


class ReservationKind(StrEnum):
    WILL_NOT_IMPLEMENT = "will_not_implement"
    LIMITED = "limited"  # implements the clause only within the stated limits


@dataclass(frozen=True)
class Reservation:
    clause: str
    kind: ReservationKind
    detail: str

    def describe(self, nation: str) -> str:
        how = "will not implement" if self.kind is ReservationKind.WILL_NOT_IMPLEMENT else "limits"
        return f"{nation} {how} clause {self.clause}: {self.detail}"


#: action -> the response states it is allowed from. The resulting state follows from the reservations.
RESPONSE_ACTIONS: dict[str, frozenset[ResponseStatus]] = {
    "ratify": frozenset({ResponseStatus.PENDING, ResponseStatus.NOT_RATIFYING}),
    "decline": frozenset({ResponseStatus.PENDING, *RATIFIED_STATES}),
    "record_reservation": RATIFIED_STATES,
    "withdraw_reservation": frozenset({ResponseStatus.RATIFIED_WITH_RESERVATIONS}),
    "forecast_implementation": RATIFIED_STATES,
    "record_implementation": RATIFIED_STATES,
}
#: What NATO staff may record for a nation: the ratification record of a promulgation, never whether or
#: when a nation implemented (that is the nation's own statement).
NATO_RECORDABLE = frozenset({"ratify", "decline", "record_reservation", "withdraw_reservation"})
#: The standard's states in which each response action makes sense.
STANDARD_STATES_FOR: dict[str, frozenset[StandardStatus]] = {
    "ratify": frozenset({StandardStatus.RATIFICATION_DRAFT, StandardStatus.PROMULGATED}),
    "decline": frozenset({StandardStatus.RATIFICATION_DRAFT, StandardStatus.PROMULGATED}),
    "record_reservation": frozenset({StandardStatus.RATIFICATION_DRAFT, StandardStatus.PROMULGATED}),
    "withdraw_reservation": frozenset({StandardStatus.RATIFICATION_DRAFT, StandardStatus.PROMULGATED}),
    "forecast_implementation": frozenset({StandardStatus.RATIFICATION_DRAFT, StandardStatus.PROMULGATED}),
    "record_implementation": frozenset({StandardStatus.PROMULGATED}),
}


def _check_reservations(reservations: Sequence[Reservation]) -> None:
    clauses = [r.clause.strip() for r in reservations]
    for i, r in enumerate(reservations):
        if not r.clause.strip():
            raise invalid(f"body.reservations.{i}.clause", "a reservation names the clause")
        if not r.detail.strip():
            raise invalid(f"body.reservations.{i}.detail", "a reservation says what the nation will not do")
    if len(set(clauses)) != len(clauses):
        raise invalid("body.reservations", "one reservation per clause")


@dataclass(frozen=True)
class NationalResponse:
    """A nation's answer to one standard edition."""

    standard_id: str
    nation: str
    status: ResponseStatus
    reservations: tuple[Reservation, ...]
    implementation_forecast: date | None
    implemented_on: date | None
    version: int
    history: tuple[Change, ...]

    @staticmethod
    def releasability_for(standard: Standard, nation: str) -> Releasability:
        """A nation's answer is its own record, read by whoever may read the standard."""
        r = standard.releasability
        return Releasability(owner=nation, scope=r.scope, nations=r.nations)

    @classmethod
    def pending(cls, standard: Standard, nation: str) -> NationalResponse:
        if nation not in RESPONDING_NATIONS:
            raise invalid("path.nation", f"{nation!r} is not a nation that answers NATO standards")
        if not may_read(standard.releasability, nation):
            raise invalid("path.nation", f"{standard.reference} is not released to {nation}")
        return cls(standard.id, nation, ResponseStatus.PENDING, (), None, None, 1, ())

    def _check(self, action: str, actor: Actor, standard: Standard) -> None:
        if standard.id != self.standard_id:
            raise invalid("path.standard_id", "the response belongs to another standard edition")
        own = actor.nation == self.nation and STANDARDS_ROLE in actor.roles
        nato = actor.nation == NATO and STANDARDS_ROLE in actor.roles and action in NATO_RECORDABLE
        if not (own or nato):
            raise Forbidden(
                f"only {self.nation}'s standards staff may {action.replace('_', ' ')} for {self.nation}"
            )
        if standard.status not in STANDARD_STATES_FOR[action]:
            raise IllegalTransition("standard", action.replace("_", " ") + " on", standard.status.value)
        if self.status not in RESPONSE_ACTIONS[action]:
            raise IllegalTransition("response", action.replace("_", " "), self.status.value)

    def _record(
        self, action: str, actor: Actor, now: datetime, note: str = "", **changes: object
    ) -> NationalResponse:
        after = replace(self, **changes)  # type: ignore[arg-type]
        return replace(
            after,
            version=self.version + 1,
            history=(*self.history, Change(action, after.status.value, actor.id, now, note)),
        )

    def ratify(
        self, actor: Actor, standard: Standard, now: datetime, reservations: Sequence[Reservation] = ()
    ) -> NationalResponse:
        self._check("ratify", actor, standard)
        _check_reservations(reservations)
        status = ResponseStatus.RATIFIED_WITH_RESERVATIONS if reservations else ResponseStatus.RATIFIED
        return self._record("ratify", actor, now, status=status, reservations=tuple(reservations))

    def decline(self, actor: Actor, standard: Standard, now: datetime) -> NationalResponse:
        """Not ratifying (or no longer): reservations and implementation no longer apply."""
        self._check("decline", actor, standard)
        return self._record(
            "decline",
            actor,
            now,
            status=ResponseStatus.NOT_RATIFYING,
            reservations=(),
            implementation_forecast=None,
            implemented_on=None,
        )

    def record_reservation(
        self, actor: Actor, standard: Standard, reservation: Reservation, now: datetime
    ) -> NationalResponse:
        """Adds a reservation, or replaces the one on the same clause."""
        self._check("record_reservation", actor, standard)
        _check_reservations([reservation])
        kept = tuple(r for r in self.reservations if r.clause != reservation.clause)
        return self._record(
            "record_reservation",
            actor,
            now,
            note=reservation.clause,
            status=ResponseStatus.RATIFIED_WITH_RESERVATIONS,
            reservations=(*kept, reservation),
        )

    def withdraw_reservation(
        self, actor: Actor, standard: Standard, clause: str, now: datetime
    ) -> NationalResponse:
        self._check("withdraw_reservation", actor, standard)
        kept = tuple(r for r in self.reservations if r.clause != clause)
        if len(kept) == len(self.reservations):
            raise NotFound(f"{self.nation} has no reservation on clause {clause}")
        status = ResponseStatus.RATIFIED_WITH_RESERVATIONS if kept else ResponseStatus.RATIFIED
        return self._record("withdraw_reservation", actor, now, note=clause, status=status, reservations=kept)

    def forecast_implementation(
        self, actor: Actor, standard: Standard, by: date, now: datetime
    ) -> NationalResponse:
        self._check("forecast_implementation", actor, standard)
        if self.implemented_on is not None:
            raise IllegalTransition("response", "forecast implementation of", "implemented")
        return self._record(
            "forecast_implementation", actor, now, note=by.isoformat(), implementation_forecast=by
        )

    def record_implementation(
        self, actor: Actor, standard: Standard, on: date, now: datetime
    ) -> NationalResponse:
        self._check("record_implementation", actor, standard)
        if on > now.date():
            raise invalid("body.implemented_on", "an implementation date cannot lie in the future")
        if standard.promulgated_on is not None and on < standard.promulgated_on:
            raise invalid("body.implemented_on", "a standard is implemented after it is promulgated")
        return self._record("record_implementation", actor, now, note=on.isoformat(), implemented_on=on)

    @property
    def ratified(self) -> bool:
        return self.status in RATIFIED_STATES

    def implemented(self, on: date) -> bool:
        return self.ratified and self.implemented_on is not None and self.implemented_on <= on


# --- conformance ----------------------------------------------------------------------------------------


class ConformanceStatus(StrEnum):
    CLAIMED = "claimed"
    UNDER_TEST = "under_test"
    VERIFIED = "verified"
    REJECTED = "rejected"
    EXPIRED = "expired"


CONFORMANCE_TRANSITIONS: dict[tuple[str, ConformanceStatus], ConformanceStatus] = {
    ("start_test", ConformanceStatus.CLAIMED): ConformanceStatus.UNDER_TEST,
    ("verify", ConformanceStatus.UNDER_TEST): ConformanceStatus.VERIFIED,
    ("reject", ConformanceStatus.UNDER_TEST): ConformanceStatus.REJECTED,
    ("expire", ConformanceStatus.VERIFIED): ConformanceStatus.EXPIRED,
}


def next_conformance_status(action: str, current: ConformanceStatus) -> ConformanceStatus:
    return transition("conformance claim", CONFORMANCE_TRANSITIONS, action, current)


@dataclass(frozen=True)
class Product:
    manufacturer: str
    product_code: str
    name: str


@dataclass(frozen=True)
class ConformanceClaim:
    """A product claims conformance to a standard edition (and level); owned by the claiming nation."""

    id: str
    nation: str
    product: Product
    standard_id: str
    level: str | None
    status: ConformanceStatus
    evidence: tuple[str, ...]
    expires_on: date | None
    version: int
    history: tuple[Change, ...]
    rejection_reason: str | None = None
    #: Owned by the claiming nation; NATO's standards staff, who may assess it, always read it.
    releasability: Releasability | None = None

    @property
    def release(self) -> Releasability:
        return self.releasability or including(Releasability(owner=self.nation), NATO)

    @classmethod
    def claim(
        cls,
        *,
        id: str,
        actor: Actor,
        product: Product,
        standard: Standard,
        now: datetime,
        level: str | None = None,
        evidence: tuple[str, ...] = (),
        releasability: Releasability | None = None,
    ) -> ConformanceClaim:
        if STANDARDS_ROLE not in actor.roles:
            raise Forbidden("only standards staff record conformance claims")
        if not (product.manufacturer.strip() and product.product_code.strip() and product.name.strip()):
            raise invalid("body.product", "a product needs a manufacturer, product code and name")
        if standard.status is not StandardStatus.PROMULGATED:
            raise IllegalTransition("standard", "claim conformance to", standard.status.value)
        if level is not None and level not in standard.levels:
            raise invalid("body.level", f"{standard.reference} has no level {level!r}")
        if level is None and standard.levels:
            raise invalid("body.level", f"{standard.reference} is claimed at one of {list(standard.levels)}")
        if releasability is not None:
            beyond = [n for n in releasability.nations if not may_read(standard.releasability, n)]
            if beyond:
                raise invalid(
                    "body.releasability.nations",
                    f"{standard.reference} is not released to {', '.join(beyond)}",
                )
        return cls(
            id=id,
            nation=actor.nation,
            product=product,
            standard_id=standard.id,
            level=level,
            status=ConformanceStatus.CLAIMED,
            evidence=evidence,
            expires_on=None,
            version=1,
            history=(Change("claimed", ConformanceStatus.CLAIMED.value, actor.id, now),),
            releasability=_owned(releasability, actor.nation, NATO),
        )

    def _check_assessor(self, actor: Actor, action: str) -> None:
        if STANDARDS_ROLE not in actor.roles or actor.nation not in (self.nation, NATO):
            raise Forbidden(f"only {self.nation}'s or NATO's standards staff may {action} this claim")

    def _move(
        self, action: str, by: str, now: datetime, note: str = "", **changes: object
    ) -> ConformanceClaim:
        status = next_conformance_status(action, self.status)
        return replace(
            self,
            status=status,
            version=self.version + 1,
            history=(*self.history, Change(action, status.value, by, now, note)),
            **changes,  # type: ignore[arg-type]
        )

    def start_test(self, actor: Actor, now: datetime, evidence: tuple[str, ...] = ()) -> ConformanceClaim:
        self._check_assessor(actor, "test")
        return self._move("start_test", actor.id, now, evidence=(*self.evidence, *evidence))

    def _check_verifier(self, actor: Actor, action: str, allow_self_verification: bool) -> None:
        """Verification is independent: NATO's standards staff or another nation's test centre (standards
        staff of a nation the claim is released to) verify or reject a claim under test, never the
        claiming nation itself, unless the deployment allows self-verification. A refusal is 403: it is
        about who acts, whatever the claim's state (the claiming nation may read the claim, so it learns
        nothing it does not know)."""
        if STANDARDS_ROLE not in actor.roles:
            raise Forbidden(f"only standards staff may {action} this claim")
        if actor.nation == self.nation:
            if allow_self_verification:
                return
            raise Forbidden(
                f"a claim is verified independently: by NATO or another nation's test centre, not by"
                f" {self.nation}, whose claim it is"
            )
        if actor.nation != NATO and not may_read(self.release, actor.nation):
            raise Forbidden(f"only standards staff the claim is released to may {action} it")

    def verify(
        self,
        actor: Actor,
        expires_on: date,
        now: datetime,
        evidence: tuple[str, ...] = (),
        *,
        allow_self_verification: bool = False,
    ) -> ConformanceClaim:
        """Verified until `expires_on`, by an independent verifier (`_check_verifier`)."""
        self._check_verifier(actor, "verify", allow_self_verification)
        all_evidence = (*self.evidence, *evidence)
        if not all_evidence:
            raise invalid("body.evidence", "a verification rests on at least one evidence reference")
        if expires_on <= now.date():
            raise invalid("body.expires_on", "a verification expires after the day it is given")
        return self._move(
            "verify", actor.id, now, note=expires_on.isoformat(), evidence=all_evidence, expires_on=expires_on
        )

    def reject(self, actor: Actor, reason: str, now: datetime) -> ConformanceClaim:
        """Rejected by an independent verifier, or withdrawn this way by the claiming nation itself."""
        self._check_verifier(actor, "reject", allow_self_verification=True)
        if not reason.strip():
            raise invalid("body.reason", "a rejection needs a reason")
        return self._move("reject", actor.id, now, note=reason.strip(), rejection_reason=reason.strip())

    def is_due(self, now: datetime) -> bool:
        return (
            self.status is ConformanceStatus.VERIFIED
            and self.expires_on is not None
            and self.expires_on <= now.date()
        )

    def expire(self, now: datetime) -> ConformanceClaim:
        """Run by the schedule, not a person; only a verified claim whose date has come expires."""
        if self.status is ConformanceStatus.VERIFIED and not self.is_due(now):
            raise IllegalTransition("conformance claim", "expire", "verified until its expiry date")
        return self._move("expire", "schedule", now)


def expire_due(claims: Iterable[ConformanceClaim], now: datetime) -> list[ConformanceClaim]:
    """The claims that expire now, already moved to expired. An expired claim is never due again, so
    running this twice (or after a restart) expires each claim exactly once."""
    return [c.expire(now) for c in claims if c.is_due(now)]


# --- interchangeability ---------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Interchangeability:
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
            releasability=_owned(releasability, actor.nation, *nations),
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
        return replace(
            self,
            releasability=including(self.release, *nations),
            nations=tuple(sorted(set(nations))),
            status=status,
            basis=basis or self.basis,
            restrictions=restrictions,
            updated_at=now,
            version=self.version + 1,
            history=(*self.history, Change("updated", status.value, actor.id, now)),
        )


def _owned(r: Releasability | None, owner: str, *readers: str) -> Releasability:
    """The release of a new record owned by `owner` (all Allies unless said), widened to `readers`."""
    r = r or Releasability(owner=owner, scope=ReleasabilityScope.ALLIES)
    if r.owner != owner:
        raise invalid("body.releasability", f"the record belongs to {owner}")
    return including(r, *readers)


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


# --- interoperability -----------------------------------------------------------------------------------


class Verdict(IntEnum):
    """Worst first, so the verdict over several standards is the minimum."""

    NOT_INTEROPERABLE = 0
    UNKNOWN = 1
    NOT_IMPLEMENTED = 2
    LIMITED = 3
    INTEROPERABLE = 4

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class NationPosition:
    nation: str
    status: ResponseStatus
    reservations: tuple[Reservation, ...]
    implemented_on: date | None


@dataclass(frozen=True)
class PairVerdict:
    nations: tuple[str, str]
    verdict: Verdict
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class StandardInteroperability:
    standard_id: str
    reference: str
    status: StandardStatus
    positions: tuple[NationPosition, ...]
    pairs: tuple[PairVerdict, ...]


@dataclass(frozen=True)
class InteroperabilityReport:
    standards: tuple[StandardInteroperability, ...]
    #: Over all the standards asked about: the worst verdict for each pair, with every reason.
    pairs: tuple[PairVerdict, ...]


def _position(
    standard: Standard, nation: str, responses: dict[tuple[str, str], NationalResponse]
) -> NationPosition:
    r = responses.get((standard.id, nation))
    if r is None:
        return NationPosition(nation, ResponseStatus.PENDING, (), None)
    return NationPosition(nation, r.status, r.reservations, r.implemented_on)


def _pair(standard: Standard, a: NationPosition, b: NationPosition, on: date) -> PairVerdict:
    ref = standard.reference
    if standard.status is StandardStatus.CANCELLED:
        return PairVerdict((a.nation, b.nation), Verdict.NOT_INTEROPERABLE, (f"{ref} is cancelled",))
    if standard.status in (StandardStatus.STUDY, StandardStatus.RATIFICATION_DRAFT):
        return PairVerdict((a.nation, b.nation), Verdict.UNKNOWN, (f"{ref} is not promulgated yet",))
    reasons: list[str] = []
    verdict = Verdict.INTEROPERABLE
    for p in (a, b):
        if p.status is ResponseStatus.NOT_RATIFYING:
            verdict = min(verdict, Verdict.NOT_INTEROPERABLE)
            reasons.append(f"{p.nation} does not ratify {ref}")
        elif p.status is ResponseStatus.PENDING:
            verdict = min(verdict, Verdict.UNKNOWN)
            reasons.append(f"{p.nation} has not answered {ref}")
        elif p.implemented_on is None or p.implemented_on > on:
            verdict = min(verdict, Verdict.NOT_IMPLEMENTED)
            reasons.append(f"{p.nation} ratified {ref} but has not implemented it")
        for r in p.reservations:
            verdict = min(verdict, Verdict.LIMITED)
            reasons.append(f"{ref}: {r.describe(p.nation)}")
    if standard.status is StandardStatus.SUPERSEDED:
        reasons.append(f"{ref} is superseded")
    if verdict is Verdict.INTEROPERABLE:
        reasons.insert(0, f"both implemented {ref} without reservations")
    return PairVerdict((a.nation, b.nation), verdict, tuple(reasons))


def interoperability(
    standards: Sequence[Standard],
    responses: Iterable[NationalResponse],
    nations: Sequence[str],
    on: date,
) -> InteroperabilityReport:
    """For each standard: who ratified, with what reservations, who implemented (by `on`), and a verdict
    for each pair of nations; then the worst verdict per pair across the standards."""
    unique = sorted(set(nations))
    if len(unique) < 2:
        raise invalid("query.nations", "name at least two nations to compare")
    if not standards:
        raise invalid("query.standards", "name at least one standard")
    by_key = {(r.standard_id, r.nation): r for r in responses}
    per_standard = []
    for s in standards:
        positions = tuple(_position(s, n, by_key) for n in unique)
        pairs = tuple(_pair(s, a, b, on) for a, b in combinations(positions, 2))
        per_standard.append(StandardInteroperability(s.id, s.reference, s.status, positions, pairs))
    overall = []
    for i, (a, b) in enumerate(combinations(unique, 2)):
        verdicts = [si.pairs[i] for si in per_standard]
        overall.append(
            PairVerdict(
                (a, b),
                min(v.verdict for v in verdicts),
                tuple(reason for v in verdicts for reason in v.reasons),
            )
        )
    return InteroperabilityReport(tuple(per_standard), tuple(overall))


# --- progress per nation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NationProgress:
    """For the ministers' review: standards in force, and where the nation stands on each."""

    nation: str
    in_force: int
    ratified: tuple[str, ...]
    with_reservations: tuple[str, ...]
    implemented: tuple[str, ...]
    implementation_overdue: tuple[str, ...]
    pending: tuple[str, ...]
    not_ratifying: tuple[str, ...]

    @property
    def ratification_rate(self) -> float:
        return len(self.ratified) / self.in_force if self.in_force else 0.0

    @property
    def implementation_rate(self) -> float:
        return len(self.implemented) / self.in_force if self.in_force else 0.0


def progress(
    nation: str, standards: Iterable[Standard], responses: Iterable[NationalResponse], on: date
) -> NationProgress:
    """Counts the promulgated editions only: superseded and cancelled ones are no longer asked of anyone.
    `ratified` includes ratifications with reservations; a forecast date before `on` without an actual
    implementation is overdue."""
    in_force = sorted(
        (s for s in standards if s.in_force and may_read(s.releasability, nation)),
        key=lambda s: (s.kind.value, s.number, s.edition),
    )
    mine = {r.standard_id: r for r in responses if r.nation == nation}
    ratified, reserved, implemented, overdue, pending, declined = [], [], [], [], [], []
    for s in in_force:
        r = mine.get(s.id)
        if r is None or r.status is ResponseStatus.PENDING:
            pending.append(s.reference)
            continue
        if r.status is ResponseStatus.NOT_RATIFYING:
            declined.append(s.reference)
            continue
        ratified.append(s.reference)
        if r.reservations:
            reserved.append(s.reference)
        if r.implemented(on):
            implemented.append(s.reference)
        elif r.implementation_forecast is not None and r.implementation_forecast < on:
            overdue.append(s.reference)
    return NationProgress(
        nation,
        len(in_force),
        tuple(ratified),
        tuple(reserved),
        tuple(implemented),
        tuple(overdue),
        tuple(pending),
        tuple(declined),
    )
