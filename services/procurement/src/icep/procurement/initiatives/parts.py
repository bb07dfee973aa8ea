"""The parts of an initiative, in plain Python: its states and their transitions, what it buys, each
nation's participation and the aggregated demand (with its disclosure control), lots, bids, awards,
contracts with milestones, call-offs and flags."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from icep.platform.domain import transition
from icep.platform.errors import Conflict


class AwardRefused(Conflict):
    """An award the rules refuse: the problem's detail says why."""

    title = "Award refused"
    slug = "award-refused"


def _add(into: dict[int, int], quantities: Mapping[int, int]) -> None:
    for year, quantity in quantities.items():
        into[year] = into.get(year, 0) + quantity


class InitiativeStatus(StrEnum):
    PROPOSED = "proposed"
    OPEN = "open"
    PARTICIPATION_CLOSED = "participation_closed"
    TENDERING = "tendering"
    AWARDED = "awarded"
    CONTRACTED = "contracted"
    DELIVERING = "delivering"
    CLOSED = "closed"
    CANCELLED = "cancelled"


S = InitiativeStatus
#: (action, from) -> to
INITIATIVE_TRANSITIONS: dict[tuple[str, InitiativeStatus], InitiativeStatus] = {
    ("open", S.PROPOSED): S.OPEN,
    ("close_participation", S.OPEN): S.PARTICIPATION_CLOSED,
    ("publish_tender", S.PARTICIPATION_CLOSED): S.TENDERING,
    ("award", S.TENDERING): S.AWARDED,
    ("sign_contract", S.AWARDED): S.CONTRACTED,
    ("sign_contract", S.CONTRACTED): S.CONTRACTED,  # one contract per award
    ("start_delivery", S.CONTRACTED): S.DELIVERING,
    ("close", S.DELIVERING): S.CLOSED,
    **{
        ("cancel", s): S.CANCELLED
        for s in (S.PROPOSED, S.OPEN, S.PARTICIPATION_CLOSED, S.TENDERING, S.AWARDED)
    },
}
#: States in which the participants' demand may still change (and the lead may approve a withdrawal).
DEMAND_OPEN = frozenset({S.OPEN, S.PARTICIPATION_CLOSED})
#: States after which the initiative has a contract: the demand is contracted.
CONTRACTED_STATES = frozenset({S.CONTRACTED, S.DELIVERING, S.CLOSED})


def next_initiative_status(action: str, current: InitiativeStatus) -> InitiativeStatus:
    return transition("initiative", INITIATIVE_TRANSITIONS, action, current)


@dataclass(frozen=True)
class RequiredStandard:
    number: str
    edition: int

    @property
    def label(self) -> str:
        return f"{self.number} Ed. {self.edition}"


@dataclass(frozen=True)
class Item:
    """What is bought: a product, its classification (scheme and id) and unit."""

    product: str
    unit: str
    classification_scheme: str = "ICEP"
    classification_id: str = ""
    description: str = ""


class ParticipationStatus(StrEnum):
    JOINED = "joined"  # indicative quantities
    COMMITTED = "committed"  # firm (and funded) quantities
    WITHDRAWAL_REQUESTED = "withdrawal_requested"  # committed, waiting for the lead nation's approval
    WITHDRAWN = "withdrawn"


ACTIVE = frozenset(
    {ParticipationStatus.JOINED, ParticipationStatus.COMMITTED, ParticipationStatus.WITHDRAWAL_REQUESTED}
)
FIRM = frozenset({ParticipationStatus.COMMITTED, ParticipationStatus.WITHDRAWAL_REQUESTED})


@dataclass(frozen=True)
class Participation:
    nation: str
    status: ParticipationStatus
    indicative: dict[int, int]
    firm: dict[int, int] = field(default_factory=dict)
    funded: dict[int, int] = field(default_factory=dict)
    joined_at: datetime | None = None
    withdrawal_reason: str | None = None


@dataclass(frozen=True)
class Demand:
    """An initiative's aggregated demand per year: indicative (every active participant), firm and funded
    (participants that committed)."""

    participants: int
    indicative: dict[int, int]
    firm: dict[int, int]
    funded: dict[int, int]


def aggregate(participations: Iterable[Participation]) -> Demand:
    indicative: dict[int, int] = {}
    firm: dict[int, int] = {}
    funded: dict[int, int] = {}
    count = 0
    for p in participations:
        if p.status not in ACTIVE:
            continue
        count += 1
        _add(indicative, p.indicative)
        if p.status in FIRM:
            _add(firm, p.firm)
            _add(funded, p.funded)
    return Demand(
        count, dict(sorted(indicative.items())), dict(sorted(firm.items())), dict(sorted(funded.items()))
    )


#: By default an aggregate reaches readers other than the lead nation and NATO staff only when at least
#: this many nations contribute to it (`ICEP_PROCUREMENT_MIN_AGGREGATE_PARTICIPANTS`).
MIN_AGGREGATE_PARTICIPANTS = 3


class Disclosure(StrEnum):
    """How much of an initiative's aggregated demand a reader is shown.

    Disclosure control: the lead nation and NATO staff see the demand as it stands (`full`). Every other
    reader, participants and partners included, sees no figure while the demand can still change
    (`withheld`: until the tender is published, participants may join, revise, commit and withdraw), and
    afterwards the settled demand once (`published`): one measure only, the firm (committed) quantity
    per year, each year only when at least k nations commit a quantity to it (a year fewer commit to is
    left out, not a zero); indicative and funded figures are not published. A published figure never
    changes again (the demand is settled), so no sequence of published figures can be differenced to one
    nation's; one measure leaves no two figures of the same year to subtract from each other; and k >= 3
    keeps a participant from learning another's figure by subtracting its own."""

    FULL = "full"
    PUBLISHED = "published"
    WITHHELD = "withheld"


@dataclass(frozen=True)
class DisclosedDemand:
    disclosure: Disclosure
    demand: Demand


def _cells_of_enough(contributions: Iterable[Mapping[int, int]], min_contributors: int) -> dict[int, int]:
    """Per year, the sum of the contributions, for the years at least `min_contributors` nations contribute
    a positive quantity to (the others are left out, not shown as zero)."""
    total: dict[int, int] = {}
    count: dict[int, int] = {}
    for c in contributions:
        for year, q in c.items():
            if q > 0:
                total[year] = total.get(year, 0) + q
                count[year] = count.get(year, 0) + 1
    return {y: total[y] for y in sorted(total) if count[y] >= max(min_contributors, 1)}


def published_demand(participations: Sequence[Participation], min_contributors: int) -> Demand:
    """The aggregate as published to every reader (`Disclosure`): the firm quantity per year, each year
    only when at least `min_contributors` nations commit a quantity to it; no indicative or funded figure."""
    active = [p for p in participations if p.status in ACTIVE]
    firm = (p.firm for p in active if p.status in FIRM)
    return Demand(len(active), {}, _cells_of_enough(firm, min_contributors), {})


@dataclass(frozen=True)
class Lot:
    id: str
    title: str
    quantity: int
    estimated_value: float | None = None
    currency: str | None = None


@dataclass(frozen=True)
class Tender:
    lots: tuple[Lot, ...]
    period_end: date
    published_at: datetime


@dataclass(frozen=True)
class Bid:
    id: str
    lot_id: str
    supplier_id: str
    quantity: int
    value: float
    currency: str
    received_at: datetime


@dataclass(frozen=True)
class Award:
    id: str
    lot_id: str
    supplier_id: str
    supplier_name: str
    quantity: int
    value: float
    currency: str
    date: datetime


class MilestoneStatus(StrEnum):
    SCHEDULED = "scheduled"
    MET = "met"
    MISSED = "missed"


@dataclass(frozen=True)
class Milestone:
    id: str
    title: str
    due: date
    quantity: int | None = None
    status: MilestoneStatus = MilestoneStatus.SCHEDULED
    met_on: date | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Contract:
    id: str
    award_id: str
    supplier_id: str
    framework: bool
    value: float
    currency: str
    period_start: date
    period_end: date
    milestones: tuple[Milestone, ...]
    signed_at: datetime


@dataclass(frozen=True)
class CallOff:
    """A call-off under a framework contract: its own OCDS process, linked to the framework."""

    id: str
    ocid: str
    contract_id: str
    buyer: str
    quantity: int
    value: float
    currency: str
    delivery_by: date
    placed_at: datetime


@dataclass(frozen=True)
class Flag:
    """A required standard edition was superseded or cancelled."""

    standard: RequiredStandard
    standard_status: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class AwardInput:
    lot_id: str
    supplier_id: str
    quantity: int
    value: float
    currency: str
    #: The supplier's product offered: it must hold every required edition. None: one of its products must.
    product_code: str | None = None
