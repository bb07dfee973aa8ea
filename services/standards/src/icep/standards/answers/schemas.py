"""Request and response bodies of national answers."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from icep.contracts.releasability import ReleasabilityOut
from icep.standards.answers.model import NationalResponse, Reservation, ReservationKind
from icep.standards.answers.use_cases import ResponseView
from icep.standards.schemas import ChangeOut, In

#: A clause of a standard: `4.2.1`, `Annex A 3.2`, `B-4(c)` (no `/`: it is a path segment when withdrawn).
CLAUSE = r"^[A-Za-z0-9][A-Za-z0-9 .()\-]{0,99}$"


class ReservationOut(BaseModel):
    clause: str
    kind: ReservationKind
    detail: str

    @classmethod
    def of(cls, r: Reservation) -> ReservationOut:
        return cls(clause=r.clause, kind=r.kind, detail=r.detail)


class ReservationIn(In):
    clause: str = Field(pattern=CLAUSE, examples=["4.2.1", "Annex A 3.2"])
    kind: ReservationKind
    detail: str = Field(min_length=1, max_length=2000)

    def to_domain(self) -> Reservation:
        return Reservation(self.clause.strip(), self.kind, self.detail.strip())


class RatifyIn(In):
    reservations: list[ReservationIn] = Field(default=[], max_length=100)


class ForecastIn(In):
    implementation_forecast: date


class ImplementedIn(In):
    implemented_on: date


class ResponseOut(BaseModel):
    standard_id: str
    standard_reference: str
    nation: str
    status: str
    reservations: list[ReservationOut]
    implementation_forecast: date | None
    implemented_on: date | None
    releasability: ReleasabilityOut
    version: int
    history: list[ChangeOut]

    @classmethod
    def of(cls, view: ResponseView) -> ResponseOut:
        r = view.response
        return cls(
            standard_id=r.standard_id,
            standard_reference=view.standard.reference,
            nation=r.nation,
            status=r.status.value,
            reservations=[ReservationOut.of(x) for x in r.reservations],
            implementation_forecast=r.implementation_forecast,
            implemented_on=r.implemented_on,
            releasability=ReleasabilityOut.of(NationalResponse.releasability_for(view.standard, r.nation)),
            version=r.version,
            history=ChangeOut.all(r.history),
        )


class ResponsesOut(BaseModel):
    items: list[ResponseOut] = Field(description="Recorded answers; a nation not listed is pending")
