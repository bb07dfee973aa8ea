"""Events published by the procurement service on `icep.procurement.events`.

Aggregates: `initiative` (a joint procurement initiative: an OCDS contracting process, subject its id; its
`ocid` is in every event), `supplier` and `demand_signal`. Quantities per year are objects keyed by the
year as a string (`{"2026": 120000}`), as JSON requires.

Most initiative events go to whoever may read the initiative. Those about one nation's participation
(joined, committed, withdrawal requested or refused, participant withdrawn) go to the lead nation, that
nation and NATO staff, who alone read its quantities in the initiative; a bid to the lead nation alone,
who alone reads bids (each declared as its `audience`). The aggregated demand goes to the initiative's
readers (subject to the disclosure rule on aggregates, below).

Declared marking exception (disclosure control on aggregated demand): `demand_aggregated` is narrower
than the initiative. The aggregate as it stands, with every change that moves it, goes to the lead nation
and NATO staff only (NATO when the initiative is released to NATO staff). The wider audience, everyone
who may read the initiative, gets one `demand_aggregated` when the demand is settled (with the tender's
publication) carrying the published aggregate: the firm demand only (`indicative` and `funded` empty),
a year only when at least `ICEP_PROCUREMENT_MIN_AGGREGATE_PARTICIPANTS` nations (default 3) commit to it
(a year left out is not a zero); and, when a published demand is cancelled, one with zeros for those
years. Readers of the
initiative other than the lead nation and NATO staff (participants and partners included) thus never
receive a figure that one nation's quantity could be recovered from, alone or by differencing.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import ClassVar, Literal

from pydantic import Field

from icep.contracts.base import Audience, EventPayload, MoneyAmount, Subject

# --- initiatives ----------------------------------------------------------------------------------------


class RequiredStandardFigure(EventPayload):
    number: str
    edition: int


class _InitiativeEvent(EventPayload):
    aggregate: ClassVar[str] = "initiative"
    subject: ClassVar[Subject] = Subject("{initiative_id}", "/v1/initiatives/{initiative_id}")

    initiative_id: str
    ocid: str
    lead_nation: str
    product: str
    status: str
    version: int


class InitiativeProposed(_InitiativeEvent):
    event_type: ClassVar[str] = "icep.procurement.initiative.proposed.v1"

    title: str
    capability_area: str
    unit: str
    procuring_entity: str
    required_standards: list[RequiredStandardFigure]
    participation_deadline: date
    open_to_partners: list[str]
    proposed_by: str
    proposed_at: datetime


class InitiativeOpened(_InitiativeEvent):
    event_type: ClassVar[str] = "icep.procurement.initiative.opened.v1"

    opened_by: str
    opened_at: datetime


class _ParticipationEvent(_InitiativeEvent):
    nation: str
    participation_status: str
    by: str
    at: datetime


class InitiativeJoined(_ParticipationEvent):
    event_type: ClassVar[str] = "icep.procurement.initiative.joined.v1"
    audience: ClassVar[Audience] = Audience.narrower(
        ("lead_nation", "nation", "NATO"),
        "one nation's participation: its readers among the lead nation, that nation and NATO staff",
    )

    indicative: dict[str, int]


class InitiativeCommitted(_ParticipationEvent):
    event_type: ClassVar[str] = "icep.procurement.initiative.committed.v1"
    audience: ClassVar[Audience] = Audience.narrower(
        ("lead_nation", "nation", "NATO"),
        "one nation's participation: its readers among the lead nation, that nation and NATO staff",
    )

    firm: dict[str, int]
    funded: dict[str, int]


class WithdrawalRequested(_ParticipationEvent):
    """A committed nation asks to withdraw: the lead nation approves (ParticipantWithdrawn) or refuses it.
    Released to the lead nation, that nation and NATO staff."""

    event_type: ClassVar[str] = "icep.procurement.initiative.withdrawal_requested.v1"
    audience: ClassVar[Audience] = Audience.narrower(
        ("lead_nation", "nation", "NATO"),
        "one nation's participation: its readers among the lead nation, that nation and NATO staff",
    )

    reason: str


class WithdrawalRefused(_ParticipationEvent):
    """The lead nation refused a withdrawal: the nation stays committed. Released to the lead nation, that
    nation and NATO staff."""

    event_type: ClassVar[str] = "icep.procurement.initiative.withdrawal_refused.v1"
    audience: ClassVar[Audience] = Audience.narrower(
        ("lead_nation", "nation", "NATO"),
        "one nation's participation: its readers among the lead nation, that nation and NATO staff",
    )

    reason: str = Field(description="The reason the nation gave for asking to withdraw")


class ParticipantWithdrawn(_ParticipationEvent):
    event_type: ClassVar[str] = "icep.procurement.initiative.participant_withdrawn.v1"
    audience: ClassVar[Audience] = Audience.narrower(
        ("lead_nation", "nation", "NATO"),
        "one nation's participation: its readers among the lead nation, that nation and NATO staff",
    )

    #: After a firm commitment a withdrawal is an amendment the lead nation approved.
    amendment: bool
    approved_by: str | None
    reason: str


class DemandAggregated(_InitiativeEvent):
    """The initiative's aggregated demand: as it stands, to the lead nation and NATO staff with every
    change that moves it; as published (the firm demand of the years k or more nations commit to), to
    every reader of the initiative once, when the demand is settled (see the module's marking
    exception)."""

    event_type: ClassVar[str] = "icep.procurement.initiative.demand_aggregated.v1"
    audience: ClassVar[Audience] = Audience.narrower(
        ("lead_nation", "NATO"),
        "disclosure control: the aggregate as it stands could be differenced to one nation's quantity",
        except_when=("disclosure", "published"),
    )

    unit: str
    participants: int
    indicative: dict[str, int]
    firm: dict[str, int]
    funded: dict[str, int]
    #: `full`: the aggregate as it stands (to the lead nation and NATO staff); `published`: the settled
    #: aggregate every reader of the initiative receives.
    disclosure: Literal["full", "published"] = "full"


class ParticipationClosed(_InitiativeEvent):
    event_type: ClassVar[str] = "icep.procurement.initiative.participation_closed.v1"

    closed_by: str
    closed_at: datetime


class InitiativeCancelled(_InitiativeEvent):
    event_type: ClassVar[str] = "icep.procurement.initiative.cancelled.v1"

    reason: str
    cancelled_by: str
    cancelled_at: datetime


class InitiativeFlagged(_InitiativeEvent):
    """A standard the initiative requires was superseded or cancelled."""

    event_type: ClassVar[str] = "icep.procurement.initiative.flagged.v1"

    standard_number: str
    standard_edition: int
    standard_status: str
    reason: str
    flagged_at: datetime


class LotFigure(EventPayload):
    lot_id: str
    title: str
    quantity: int
    estimated_value: MoneyAmount | None
    currency: str | None


class TenderPublished(_InitiativeEvent):
    event_type: ClassVar[str] = "icep.procurement.tender.published.v1"

    lots: list[LotFigure]
    tender_period_end: date
    published_by: str
    published_at: datetime


class BidRecorded(_InitiativeEvent):
    """A supplier's bid on a lot, as the lead nation recorded it: released to the lead nation alone."""

    event_type: ClassVar[str] = "icep.procurement.bid.recorded.v1"
    audience: ClassVar[Audience] = Audience.narrower(
        ("lead_nation",), "bids are commercial offers the lead nation evaluates alone"
    )

    bid_id: str
    lot_id: str
    supplier_id: str
    quantity: int
    value: MoneyAmount
    currency: str
    recorded_by: str
    recorded_at: datetime


class AwardFigure(EventPayload):
    award_id: str
    lot_id: str
    supplier_id: str
    supplier_name: str
    quantity: int
    value: MoneyAmount
    currency: str


class AwardMade(_InitiativeEvent):
    event_type: ClassVar[str] = "icep.procurement.award.made.v1"

    awards: list[AwardFigure]
    awarded_by: str
    awarded_at: datetime


class MilestoneFigure(EventPayload):
    milestone_id: str
    title: str
    due: date
    quantity: int | None


class ContractSigned(_InitiativeEvent):
    event_type: ClassVar[str] = "icep.procurement.contract.signed.v1"

    contract_id: str
    award_id: str
    supplier_id: str
    framework: bool
    value: MoneyAmount
    currency: str
    period_start: date
    period_end: date
    milestones: list[MilestoneFigure]
    signed_by: str
    signed_at: datetime


class CallOffPlaced(_InitiativeEvent):
    """A call-off under a framework contract: a new process (its own `call_off_ocid`) linked to it."""

    event_type: ClassVar[str] = "icep.procurement.call_off.placed.v1"

    call_off_id: str
    call_off_ocid: str
    contract_id: str
    buyer: str
    quantity: int
    value: MoneyAmount
    currency: str
    delivery_by: date
    placed_by: str
    placed_at: datetime


class MilestoneMet(_InitiativeEvent):
    event_type: ClassVar[str] = "icep.procurement.milestone.met.v1"

    contract_id: str
    milestone_id: str
    due: date
    met_on: date
    recorded_by: str


class MilestoneMissed(_InitiativeEvent):
    event_type: ClassVar[str] = "icep.procurement.milestone.missed.v1"

    contract_id: str
    milestone_id: str
    due: date
    reason: str
    recorded_by: str


class InitiativeDelivering(_InitiativeEvent):
    event_type: ClassVar[str] = "icep.procurement.initiative.delivering.v1"

    by: str
    at: datetime


class InitiativeClosed(_InitiativeEvent):
    event_type: ClassVar[str] = "icep.procurement.initiative.closed.v1"

    by: str
    at: datetime


# --- suppliers ------------------------------------------------------------------------------------------


class _SupplierEvent(EventPayload):
    aggregate: ClassVar[str] = "supplier"
    subject: ClassVar[Subject] = Subject("{supplier_id}", "/v1/suppliers/{supplier_id}")

    supplier_id: str
    organisation_id: str
    name: str
    scale: str
    country_of_incorporation: str
    screening: str
    version: int


class SupplierRegistered(_SupplierEvent):
    event_type: ClassVar[str] = "icep.procurement.supplier.registered.v1"

    ultimate_parent: str | None
    ultimate_parent_country: str | None
    products: list[str]
    registered_by: str
    registered_at: datetime


class SupplierScreened(_SupplierEvent):
    """Screened against the lists in force (also on re-screening): clear, or a potential match."""

    event_type: ClassVar[str] = "icep.procurement.supplier.screened.v1"

    matches: list[str]
    lists_version: str
    screened_at: datetime


class SupplierFlagged(_SupplierEvent):
    """A potential match a person must adjudicate (never decided by the machine alone)."""

    event_type: ClassVar[str] = "icep.procurement.supplier.flagged.v1"

    matches: list[str]
    flagged_at: datetime


class SupplierCleared(_SupplierEvent):
    event_type: ClassVar[str] = "icep.procurement.supplier.cleared.v1"

    mitigation: str
    adjudicator: str
    cleared_at: datetime


class SupplierBlocked(_SupplierEvent):
    event_type: ClassVar[str] = "icep.procurement.supplier.blocked.v1"

    reason: str
    adjudicator: str
    blocked_at: datetime


# --- demand signals -------------------------------------------------------------------------------------


class DemandSignalPublished(EventPayload):
    """A nation's standing demand for a product outside any initiative (published again when changed)."""

    event_type: ClassVar[str] = "icep.procurement.demand_signal.published.v1"
    aggregate: ClassVar[str] = "demand_signal"
    subject: ClassVar[Subject] = Subject("{signal_id}", "/v1/demand/signals/{signal_id}")

    signal_id: str
    nation: str
    product: str
    capability_area: str
    unit: str
    firmness: str  # indicative, planned, funded, contracted
    quantities: dict[str, int] = Field(description="Quantity per year, keyed by the year")
    version: int
    published_by: str
    published_at: datetime
