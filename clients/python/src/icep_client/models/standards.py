"""NATO standards, the nations' answers, interoperability verdicts and conformance claims."""

from __future__ import annotations

from datetime import date

from icep_client.models.base import Change, IcepModel, Releasability, Versioned

__all__ = [
    "ClaimProduct",
    "ConformanceClaim",
    "Interoperability",
    "InteroperabilityPair",
    "NationPosition",
    "Reservation",
    "Standard",
    "StandardInteroperability",
    "StandardResponse",
]


class Standard(Versioned):
    __schema__ = "StandardOut"
    id: str
    kind: str
    number: str
    edition: int
    reference: str
    title: str
    covering_publications: list[str]
    domain: str
    capability_areas: list[str]
    levels: list[str]
    status: str
    supersedes: str | None
    superseded_by: str | None
    promulgated_on: date | None
    cancellation_reason: str | None
    releasability: Releasability
    history: list[Change]


class Reservation(IcepModel):
    """A part of a standard a nation will not implement, or only with limits (`kind`)."""

    __schema__ = "ReservationOut"
    clause: str
    kind: str
    detail: str


class StandardResponse(Versioned):
    """A nation's answer to a standard: ratification, reservations, implementation."""

    __schema__ = "ResponseOut"
    standard_id: str
    standard_reference: str
    nation: str
    status: str
    reservations: list[Reservation]
    implementation_forecast: date | None
    implemented_on: date | None
    releasability: Releasability
    history: list[Change]


class NationPosition(IcepModel):
    __schema__ = "PositionOut"
    nation: str
    status: str
    reservations: list[Reservation]
    implemented_on: date | None


class InteroperabilityPair(IcepModel):
    """The verdict for two nations, with the reasons for it."""

    __schema__ = "PairOut"
    nations: list[str]
    verdict: str
    reasons: list[str]


class StandardInteroperability(IcepModel):
    __schema__ = "StandardInteroperabilityOut"
    standard_id: str
    reference: str
    status: str
    positions: list[NationPosition]
    pairs: list[InteroperabilityPair]


class Interoperability(IcepModel):
    __schema__ = "InteroperabilityOut"
    on: date
    standards: list[StandardInteroperability]
    pairs: list[InteroperabilityPair]


# --- conformance claims -------------------------------------------------------------------------------


class ClaimProduct(IcepModel):
    """The product a conformance claim is about."""

    __schema__ = "ProductOut"
    product_code: str
    name: str
    manufacturer: str


class ConformanceClaim(Versioned):
    """A nation's claim that a product conforms to a standard: `status` is claimed, under_test, verified,
    rejected or expired."""

    __schema__ = "ClaimOut"
    id: str
    standard_id: str
    nation: str
    product: ClaimProduct
    level: str | None
    evidence: list[str]
    status: str
    expires_on: date | None
    rejection_reason: str | None
    releasability: Releasability
    history: list[Change]
