"""The resources partners use, as typed pydantic models written against the platform's OpenAPI document
(`docs/api/openapi.json`); each names the schema it mirrors in `__schema__`, and a test checks every
field against that schema so that drift fails. Fields the API adds later are ignored until a release of
this package knows them; statuses are plain strings, so a new state does not break an old client."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

__all__ = [
    "Attempt",
    "Award",
    "Bid",
    "CallOff",
    "Change",
    "Contract",
    "Correction",
    "Delivery",
    "Demand",
    "Event",
    "FeedEvent",
    "FeedPage",
    "Flag",
    "IcepModel",
    "Initiative",
    "Interoperability",
    "InteroperabilityPair",
    "Item",
    "Lot",
    "Milestone",
    "MonthProgress",
    "NationPosition",
    "Participation",
    "Ping",
    "Plan",
    "PlanReleasability",
    "Progress",
    "ProgressHistory",
    "Releasability",
    "RequiredStandard",
    "Reservation",
    "Standard",
    "StandardInteroperability",
    "StandardResponse",
    "Subscription",
    "SubscriptionCreated",
    "SummaryLine",
    "Tender",
    "Timeline",
    "TimelinePoint",
    "TimelineSeries",
    "Versioned",
    "YearRequirement",
]


class IcepModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    #: The OpenAPI schema (components/schemas) this model mirrors.
    __schema__: ClassVar[str] = ""


class Versioned(IcepModel):
    """A resource changed under optimistic concurrency: `etag` is what `If-Match` sends back."""

    version: int
    _etag: str | None = PrivateAttr(default=None)

    @property
    def etag(self) -> str:
        """The `ETag` the answer carried, else the one the API gives this version (`"<version>"`)."""
        return self._etag or f'"{self.version}"'

    def with_etag(self, etag: str | None) -> Versioned:
        self._etag = etag
        return self


# --- shared -------------------------------------------------------------------------------------------


class Releasability(IcepModel):
    __schema__ = "ReleasabilityOut"
    owner: str
    scope: str
    nations: list[str]
    marking: str


class Change(IcepModel):
    """One entry of a record's history."""

    __schema__ = "ChangeOut"
    action: str
    status: str
    by: str
    at: datetime
    note: str


# --- plans --------------------------------------------------------------------------------------------


class PlanReleasability(IcepModel):
    __schema__ = "PlanReleasabilityOut"
    scope: str
    nations: list[str]


class Plan(Versioned):
    """A national plan: `status` is draft, submitted, under_review, accepted, returned, withdrawn or
    superseded."""

    __schema__ = "PlanOut"
    id: str
    nation: str
    title: str
    period_start: date
    period_end: date
    capability_areas: list[str]
    releasability: PlanReleasability
    capacity_releasability: PlanReleasability | None
    status: str
    created_by: str
    created_at: datetime
    submitted_at: datetime | None
    returned_reasons: list[str]
    superseded_by: str | None
    content: dict[str, Any]


class Progress(IcepModel):
    __schema__ = "PlansProgressOut"
    plan_id: str
    commitment_key: str
    month: date
    actual_output: int
    planned_output: int
    shortfall: bool
    #: The plan lineage (`<nation>/<period_start>/<period_end>`) the actuals belong to.
    lineage: str
    #: 1 for the month's first report, then one more per correction.
    revision: int
    #: The figure this report corrected; None for the month's first report.
    previous_output: int | None


class SummaryLine(IcepModel):
    """One line of the Alliance capacity summary: a product in a year."""

    __schema__ = "SummaryLineOut"
    capability_area: str
    product: str
    unit: str
    year: int
    requirement: int | None
    committed: int
    actual: int | None
    actual_through: date | None
    gap: int | None
    nations: list[str]
    commitments: int


class Correction(IcepModel):
    """A later report of a month that changed its figure: who, when, and the figure before."""

    __schema__ = "CorrectionOut"
    revision: int
    plan_id: str
    actual_output: int
    previous_output: int
    corrected_by: str
    corrected_at: datetime


class MonthProgress(IcepModel):
    """A reported month of a commitment: the figure that stands, who first reported it, its corrections."""

    __schema__ = "MonthProgressOut"
    month: date
    actual_output: int
    planned_output: int
    shortfall: bool
    plan_id: str
    reported_by: str
    reported_at: datetime
    first_reported_by: str
    first_reported_at: datetime
    corrections: list[Correction]


class ProgressHistory(IcepModel):
    """Every month reported against a commitment, across the versions of the plan's lineage."""

    __schema__ = "ProgressHistoryOut"
    plan_id: str
    commitment_key: str
    lineage: str
    items: list[MonthProgress]


class YearRequirement(IcepModel):
    __schema__ = "YearRequirementOut"
    year: int
    required_quantity: int


class TimelinePoint(IcepModel):
    """One month: the requirement as a monthly rate, the committed ramp and the reported actuals."""

    __schema__ = "TimelinePointOut"
    month: str
    requirement: float | None
    committed: int | None
    actual: int | None
    reports: int


class TimelineSeries(IcepModel):
    """A product month by month, over every nation the caller may see (`nation` None) or one nation."""

    __schema__ = "TimelineSeriesOut"
    capability_area: str
    product: str
    unit: str
    nation: str | None
    requirements: list[YearRequirement]
    points: list[TimelinePoint]


class Timeline(IcepModel):
    """`GET /v1/capacity/timeline`: the months asked for (`YYYY-MM`) and a series per product and nation."""

    __schema__ = "TimelineOut"
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)
    first: str = Field(alias="from")
    last: str = Field(alias="to")
    series: list[TimelineSeries]


# --- initiatives --------------------------------------------------------------------------------------


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


# --- standards ----------------------------------------------------------------------------------------


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


# --- subscriptions and events -------------------------------------------------------------------------


class Subscription(Versioned):
    """A webhook subscription: `status` is active, paused or disabled."""

    __schema__ = "SubscriptionOut"
    id: str
    url: str
    description: str
    event_types: list[str]
    nations: list[str]
    capability_areas: list[str]
    products: list[str]
    nation: str
    status: str
    disabled_reason: str | None
    previous_secret_expires_at: datetime | None
    created_at: datetime


class SubscriptionCreated(Subscription):
    """A new subscription, with its signing secret (`whsec_...`), shown this once."""

    __schema__ = "SubscriptionCreated"
    secret: str


class Attempt(IcepModel):
    __schema__ = "AttemptOut"
    attempted_at: datetime
    status_code: int | None
    error: str | None
    latency_ms: float
    response_body: str | None


class Delivery(IcepModel):
    """One event's delivery to a subscription, with every attempt."""

    __schema__ = "DeliveryOut"
    id: str
    event_id: str
    event_type: str
    subject: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    generation: int
    replay_of: str | None
    redelivery_requested_at: datetime | None
    attempt_log: list[Attempt]


class Ping(IcepModel):
    __schema__ = "PingOut"
    message_id: str
    ok: bool
    status_code: int | None
    latency_ms: float
    error: str | None


class Event(IcepModel):
    """An event as webhooks deliver it (CloudEvents 1.0 attributes, the `nation` and `releasableto`
    extensions, and the event type's `data`)."""

    __schema__ = "EventEnvelope"
    id: str
    type: str
    source: str
    subject: str
    time: datetime
    nation: str
    releasableto: str
    data: dict[str, Any]


class FeedEvent(Event):
    """An event on the catch-up feed or the stream, with its `position` (the cursor)."""

    __schema__ = "FeedEvent"
    position: int


class FeedPage(IcepModel):
    __schema__ = "FeedPage"
    items: list[FeedEvent]
    next: str
    last_position: int
    more: bool
