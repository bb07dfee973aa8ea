"""Response bodies of the read side: progress and interoperability verdicts."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from icep.standards.answers.schemas import ReservationOut
from icep.standards.interoperability import model


class NationProgressOut(BaseModel):
    nation: str
    in_force: int = Field(description="Promulgated editions the caller may see")
    ratified: list[str]
    with_reservations: list[str]
    implemented: list[str]
    implementation_overdue: list[str]
    pending: list[str]
    not_ratifying: list[str]
    ratification_rate: float
    implementation_rate: float


class ProgressOut(BaseModel):
    on: date
    nations: list[NationProgressOut]


class PositionOut(BaseModel):
    nation: str
    status: str
    reservations: list[ReservationOut]
    implemented_on: date | None


class PairOut(BaseModel):
    nations: list[str]
    verdict: str = Field(description="interoperable, limited, not_implemented, unknown or not_interoperable")
    reasons: list[str]


class StandardInteroperabilityOut(BaseModel):
    standard_id: str
    reference: str
    status: str
    positions: list[PositionOut]
    pairs: list[PairOut]


class InteroperabilityOut(BaseModel):
    on: date
    standards: list[StandardInteroperabilityOut]
    pairs: list[PairOut] = Field(description="Over all the standards asked about: the worst verdict per pair")


def pair_out(p: model.PairVerdict) -> PairOut:
    return PairOut(nations=list(p.nations), verdict=p.verdict.label, reasons=list(p.reasons))
