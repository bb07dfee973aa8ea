"""The registers nations share: suppliers, demand signals and interchangeability clearances."""

from __future__ import annotations

from datetime import datetime

from icep_client.models.base import Change, IcepModel, Releasability, Versioned

__all__ = ["Clearance", "ClearanceBasis", "DemandSignal", "Owner", "Supplier"]


# --- suppliers ----------------------------------------------------------------------------------------


class Owner(IcepModel):
    """One link of a supplier's ownership chain."""

    __schema__ = "OwnerOut"
    name: str
    country: str
    share_percent: float


class Supplier(Versioned):
    """A supplier a nation registered, with its screening (`screening`: pending, clear, potential_match,
    cleared or blocked) and whether contracts may be awarded to it."""

    __schema__ = "SupplierOut"
    id: str
    nation: str
    name: str
    organisation_id: str
    country_of_incorporation: str
    scale: str
    products: list[str]
    ownership_chain: list[Owner]
    ultimate_parent: str | None
    ultimate_parent_country: str | None
    screening: str
    matches: list[str]
    lists_version: str | None
    adjudicated: list[str]
    adjudicator: str | None
    mitigation: str | None
    blocked_reason: str | None
    awardable: bool
    releasability: Releasability
    history: list[Change]


# --- demand signals -----------------------------------------------------------------------------------


class DemandSignal(Versioned):
    """A nation's demand for a product, year by year (`quantities`, keyed by year), with its `firmness`
    (indicative, planned, funded or contracted)."""

    __schema__ = "SignalOut"
    id: str
    nation: str
    capability_area: str
    product: str
    unit: str
    quantities: dict[str, int]
    firmness: str
    releasability: Releasability
    updated_at: datetime


# --- interchangeability -------------------------------------------------------------------------------


class ClearanceBasis(IcepModel):
    """What a clearance rests on (`kind`: standard or trial) and its reference."""

    __schema__ = "BasisOut"
    kind: str
    reference: str


class Clearance(Versioned):
    """Whether an item (e.g. a round) may be used in a platform, for which nations: `status` is
    verified, restricted or not_interchangeable."""

    __schema__ = "ClearanceOut"
    id: str
    item: str
    platform: str
    nations: list[str]
    status: str
    restrictions: list[str]
    basis: ClearanceBasis
    releasability: Releasability
    history: list[Change]
    updated_at: datetime
