"""Joint procurement initiatives (OCDS planning processes) and what they hold."""

from __future__ import annotations

from datetime import date, datetime

from icep_client.models.base import Change, IcepModel, Releasability, Versioned

__all__ = [
    "Award",
    "Bid",
    "CallOff",
    "Contract",
    "Demand",
    "Flag",
    "Initiative",
    "Item",
    "Lot",
    "Milestone",
    "Participation",
    "RequiredStandard",
    "Tender",
]


class Item(IcepModel):
    __schema__ = "ItemOut"
    product: str
    unit: str
    classification_scheme: str
    classification_id: str
    description: str


class RequiredStandard(IcepModel):
    __schema__ = "RequiredStandardOut"
    number: str
    edition: int
    label: str


class Participation(IcepModel):
    __schema__ = "ParticipationOut"
    nation: str
    status: str
    indicative: dict[str, int] | None
    firm: dict[str, int] | None
    funded: dict[str, int] | None
    joined_at: datetime | None
    withdrawal_reason: str | None


class Demand(IcepModel):
    """The aggregated demand as the caller may see it (`disclosure`: full, published or withheld)."""

    __schema__ = "DemandOut"
    participants: int
    disclosure: str
    indicative: dict[str, int]
    firm: dict[str, int]
    funded: dict[str, int]


class Lot(IcepModel):
    __schema__ = "LotOut"
    id: str
    title: str
    quantity: int
    estimated_value: float | None
    currency: str | None


class Tender(IcepModel):
    __schema__ = "TenderOut"
    lots: list[Lot]
    period_end: date
    published_at: datetime


class Bid(IcepModel):
    __schema__ = "BidOut"
    id: str
    lot_id: str
    supplier_id: str
    quantity: int
    value: float
    currency: str
    received_at: datetime


class Award(IcepModel):
    __schema__ = "AwardOut"
    id: str
    lot_id: str
    supplier_id: str
    supplier_name: str
    quantity: int
    value: float
    currency: str
    date: datetime


class Milestone(IcepModel):
    __schema__ = "MilestoneOut"
    id: str
    title: str
    due: date
    quantity: int | None
    status: str
    met_on: date | None
    reason: str | None


class Contract(IcepModel):
    __schema__ = "ContractOut"
    id: str
    award_id: str
    supplier_id: str
    framework: bool
    value: float
    currency: str
    period_start: date
    period_end: date
    milestones: list[Milestone]
    signed_at: datetime


class CallOff(IcepModel):
    __schema__ = "CallOffOut"
    id: str
    ocid: str
    contract_id: str
    buyer: str
    quantity: int
    value: float
    currency: str
    delivery_by: date
    placed_at: datetime


class Flag(IcepModel):
    __schema__ = "FlagOut"
    standard: RequiredStandard
    standard_status: str
    reason: str
    at: datetime


class Initiative(Versioned):
    """A joint procurement initiative (an OCDS planning process)."""

    __schema__ = "InitiativeOut"
    id: str
    ocid: str
    title: str
    description: str
    item: Item
    capability_area: str
    required_standards: list[RequiredStandard]
    lead_nation: str
    procuring_entity: str
    participation_deadline: date
    open_to_partners: list[str]
    releasability: Releasability
    status: str
    created_at: datetime
    participations: list[Participation]
    demand: Demand
    tender: Tender | None
    bids: list[Bid]
    awards: list[Award]
    contracts: list[Contract]
    call_offs: list[CallOff]
    flags: list[Flag]
    cancellation_reason: str | None
    history: list[Change]
