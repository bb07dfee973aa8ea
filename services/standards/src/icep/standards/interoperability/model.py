"""The read side's answers, pure functions over standards and national answers: the interoperability
verdict per pair of nations, and each nation's progress.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import IntEnum
from itertools import combinations

from icep.platform.domain import invalid
from icep.standards.answers.model import NationalResponse, Reservation, ResponseStatus
from icep.standards.records import (
    may_read,
)
from icep.standards.standards.model import (
    Standard,
    StandardStatus,
)


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
