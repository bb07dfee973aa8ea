"""A nation's answer to one standard edition: pending, ratified, ratified with reservations, not
ratifying; and, being voluntary, when it forecasts and actually implemented it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum

from icep.contracts import Releasability
from icep.contracts.nations import NATO
from icep.platform.domain import Actor, Aggregate, DomainEvent, invalid
from icep.platform.errors import Forbidden, IllegalTransition, NotFound
from icep.standards.records import (
    RESPONDING_NATIONS,
    STANDARDS_ROLE,
    Change,
    may_read,
)
from icep.standards.standards.model import (
    Standard,
    StandardStatus,
)


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


@dataclass(frozen=True, kw_only=True)
class AnswerEvent(DomainEvent):
    """What every change to an answer records: the edition answered (the event is marked as the answer is,
    and cites the edition) and who recorded it, the nation itself or NATO for the record."""

    standard: Standard
    by: str
    by_nation: str


@dataclass(frozen=True, kw_only=True)
class Ratified(AnswerEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class Declined(AnswerEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class ReservationRecorded(AnswerEvent):
    reservation: Reservation


@dataclass(frozen=True, kw_only=True)
class ReservationWithdrawn(AnswerEvent):
    clause: str


@dataclass(frozen=True, kw_only=True)
class ImplementationForecast(AnswerEvent):
    forecast: date


@dataclass(frozen=True, kw_only=True)
class Implemented(AnswerEvent):
    on: date


@dataclass(frozen=True)
class NationalResponse(Aggregate):
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

    def _record(self, action: str, event: AnswerEvent, note: str = "", **changes: object) -> NationalResponse:
        after = replace(self, **changes)  # type: ignore[arg-type]
        return after.recorded(
            event,
            version=self.version + 1,
            history=(*self.history, Change(action, after.status.value, event.by, event.at, note)),
        )

    def ratify(
        self, actor: Actor, standard: Standard, now: datetime, reservations: Sequence[Reservation] = ()
    ) -> NationalResponse:
        self._check("ratify", actor, standard)
        _check_reservations(reservations)
        status = ResponseStatus.RATIFIED_WITH_RESERVATIONS if reservations else ResponseStatus.RATIFIED
        return self._record(
            "ratify",
            Ratified(standard=standard, by=actor.id, by_nation=actor.nation, at=now),
            status=status,
            reservations=tuple(reservations),
        )

    def decline(self, actor: Actor, standard: Standard, now: datetime) -> NationalResponse:
        """Not ratifying (or no longer): reservations and implementation no longer apply."""
        self._check("decline", actor, standard)
        return self._record(
            "decline",
            Declined(standard=standard, by=actor.id, by_nation=actor.nation, at=now),
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
            ReservationRecorded(
                reservation=reservation, standard=standard, by=actor.id, by_nation=actor.nation, at=now
            ),
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
        return self._record(
            "withdraw_reservation",
            ReservationWithdrawn(
                clause=clause, standard=standard, by=actor.id, by_nation=actor.nation, at=now
            ),
            note=clause,
            status=status,
            reservations=kept,
        )

    def forecast_implementation(
        self, actor: Actor, standard: Standard, by: date, now: datetime
    ) -> NationalResponse:
        self._check("forecast_implementation", actor, standard)
        if self.implemented_on is not None:
            raise IllegalTransition("response", "forecast implementation of", "implemented")
        return self._record(
            "forecast_implementation",
            ImplementationForecast(
                forecast=by, standard=standard, by=actor.id, by_nation=actor.nation, at=now
            ),
            note=by.isoformat(),
            implementation_forecast=by,
        )

    def record_implementation(
        self, actor: Actor, standard: Standard, on: date, now: datetime
    ) -> NationalResponse:
        self._check("record_implementation", actor, standard)
        if on > now.date():
            raise invalid("body.implemented_on", "an implementation date cannot lie in the future")
        if standard.promulgated_on is not None and on < standard.promulgated_on:
            raise invalid("body.implemented_on", "a standard is implemented after it is promulgated")
        return self._record(
            "record_implementation",
            Implemented(on=on, standard=standard, by=actor.id, by_nation=actor.nation, at=now),
            note=on.isoformat(),
            implemented_on=on,
        )

    @property
    def ratified(self) -> bool:
        return self.status in RATIFIED_STATES

    def implemented(self, on: date) -> bool:
        return self.ratified and self.implemented_on is not None and self.implemented_on <= on
