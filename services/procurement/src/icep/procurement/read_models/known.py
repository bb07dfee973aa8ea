"""Procurement's copies of standards and conformance claims, as plain Python values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from icep.contracts import Releasability


@dataclass(frozen=True)
class KnownStandard:
    """Procurement's copy of a standard edition (from the standards service's events)."""

    id: str
    number: str
    edition: int
    status: str


@dataclass(frozen=True)
class KnownConformance:
    """Procurement's copy of a conformance claim: the product it names (manufacturer and code), its
    status, and who may read it (None: not known, so no award counts it)."""

    claim_id: str
    product_code: str
    standard_id: str
    status: str
    expires_on: date | None
    manufacturer: str = ""
    releasability: Releasability | None = None
