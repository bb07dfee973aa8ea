"""Multinational procurement: the rules, in plain Python (no web, database or Kafka here).

A joint procurement initiative is one OCDS contracting process (its `ocid`): proposed by a lead nation (or
NATO's NSPA) -> open for participation -> participation closed -> tendering -> awarded -> contracted ->
delivering -> closed; or cancelled before a contract is signed. Nations join with indicative quantities per
year, commit firm and funded quantities, or withdraw (after committing, only with the lead nation's
approval, recorded as an amendment). The aggregated demand is computed here.

Suppliers are screened against restricted countries and parties: a match is a *potential* match that a
named person adjudicates (cleared with a mitigation, or blocked); the machine never decides alone. An award
goes only to a supplier that is clear or cleared and whose product holds verified conformance with every
standard edition the initiative requires: counted only from claims that name the supplier's product
(manufacturer and code) and that every reader of the initiative may read.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum
from functools import cached_property

from icep.contracts import Releasability, ReleasabilityScope
from icep.contracts.nations import ALLIES, NATO, PARTNERS
from icep.contracts.releasability import ALLIES_TOKEN, nation_tokens, reader_tokens
from icep.platform import visibility
from icep.platform.domain import Actor as Actor  # re-exported: the domain speaks of actors
from icep.platform.domain import invalid, transition
from icep.platform.errors import Conflict, Forbidden, IllegalTransition, NotFound

PROCUREMENT_ROLE = "procurement"
OCID_PREFIX = "ocds-icep01"
#: Years a quantity may be given for.
YEARS = (2024, 2050)
MAX_QUANTITY = 1_000_000_000


class AwardRefused(Conflict):
    """An award the rules refuse: the problem's detail says why."""

    title = "Award refused"
    slug = "award-refused"


@dataclass(frozen=True)
class Change:
    action: str
    status: str
    by: str
    at: datetime
    note: str = ""


def readers(r: Releasability) -> frozenset[str]:
    """Who may read a record released as `r` (an initiative, supplier or demand signal): the one rule for
    reads, lists and the marking of its events (`icep.platform.visibility`)."""
    return visibility.readers_of(r)


def may_read(r: Releasability, nation: str) -> bool:
    return visibility.may_read(readers(r), nation)


def readers_missing(record: Releasability, wider: Releasability) -> list[str]:
    """The readers of what is released as `wider` who may not read `record`: `ALLIES` when `wider` is
    released to every Ally and `record` is not, and each nation (or NATO) among `wider`'s readers that
    `record` does not reach. Empty when everyone who may read the one may read the other."""
    have = reader_tokens(record)
    return sorted(
        token
        for token in reader_tokens(wider)
        if (token not in have if token == ALLIES_TOKEN else have.isdisjoint(nation_tokens(token)))
    )


def _check_procurement_staff(actor: Actor) -> None:
    if PROCUREMENT_ROLE not in actor.roles:
        raise Forbidden("only procurement staff may do this")


def check_quantities(quantities: Mapping[int, int], location: str) -> dict[int, int]:
    """Quantities per year: years within range, quantities from 0; zero entries dropped."""
    for year, quantity in quantities.items():
        if not YEARS[0] <= year <= YEARS[1]:
            raise invalid(location, f"years run from {YEARS[0]} to {YEARS[1]}, not {year}")
        if not 0 <= quantity <= MAX_QUANTITY:
            raise invalid(location, f"a quantity is between 0 and {MAX_QUANTITY}")
    return {y: q for y, q in sorted(quantities.items()) if q}


def _add(into: dict[int, int], quantities: Mapping[int, int]) -> None:
    for year, quantity in quantities.items():
        into[year] = into.get(year, 0) + quantity


# --- initiatives ----------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class SupplierStanding:
    """What an award needs to know of a supplier: its screening and its products' verified conformance."""

    supplier: Supplier
    #: Per product code of the supplier: the standard editions (number, edition) that product holds
    #: verified, unexpired conformance with. One product must hold every required edition on its own.
    verified: Mapping[str, frozenset[tuple[str, int]]]

    def missing(
        self, required: Sequence[RequiredStandard], product_code: str | None = None
    ) -> tuple[str | None, list[RequiredStandard]]:
        """The product that comes closest to holding every required edition (`product_code` if given,
        else the supplier's product missing the fewest, the first of them on a tie), and the editions it
        is missing; (None, all required) when the supplier has no product."""
        codes = [product_code] if product_code is not None else list(self.supplier.products)
        best: tuple[str | None, list[RequiredStandard]] = (None, list(required))
        for code in codes:
            held = self.verified.get(code, frozenset())
            lacking = [s for s in required if (s.number, s.edition) not in held]
            if best[0] is None or len(lacking) < len(best[1]):
                best = (code, lacking)
        return best


@dataclass(frozen=True)
class Initiative:
    id: str
    ocid: str
    title: str
    description: str
    item: Item
    capability_area: str
    required_standards: tuple[RequiredStandard, ...]
    lead_nation: str
    procuring_entity: str
    participation_deadline: date
    open_to_partners: tuple[str, ...]
    releasability: Releasability
    status: InitiativeStatus
    version: int
    history: tuple[Change, ...]
    created_at: datetime
    participations: tuple[Participation, ...] = ()
    tender: Tender | None = None
    bids: tuple[Bid, ...] = ()
    awards: tuple[Award, ...] = ()
    contracts: tuple[Contract, ...] = ()
    call_offs: tuple[CallOff, ...] = ()
    flags: tuple[Flag, ...] = ()
    cancellation_reason: str | None = None

    @classmethod
    def propose(
        cls,
        *,
        id: str,
        actor: Actor,
        title: str,
        item: Item,
        capability_area: str,
        participation_deadline: date,
        now: datetime,
        procuring_entity: str | None = None,
        description: str = "",
        required_standards: Sequence[RequiredStandard] = (),
        open_to_partners: Sequence[str] = (),
        releasability: Releasability | None = None,
    ) -> Initiative:
        _check_procurement_staff(actor)
        if actor.nation not in ALLIES and actor.nation != NATO:
            raise Forbidden("an initiative is led by an Ally or by NATO (NSPA)")
        if not title.strip():
            raise invalid("body.title", "an initiative needs a title")
        if not item.product.strip() or not item.unit.strip():
            raise invalid("body.item", "an initiative buys a named product in a unit")
        if not capability_area.strip():
            raise invalid("body.capability_area", "an initiative names its capability area")
        if procuring_entity is not None and not procuring_entity.strip():
            raise invalid("body.procuring_entity", "name the procuring entity, or leave it out")
        if participation_deadline < now.date():
            raise invalid("body.participation_deadline", "the participation deadline has passed")
        unknown = [p for p in open_to_partners if p not in PARTNERS]
        if unknown:
            raise invalid("body.open_to_partners", f"not partners of the Pledge: {unknown}")
        if len({(s.number, s.edition) for s in required_standards}) != len(required_standards):
            raise invalid("body.required_standards", "each standard edition is named once")
        release = releasability or Releasability(
            owner=actor.nation,
            scope=ReleasabilityScope.ALLIES_PARTNERS if open_to_partners else ReleasabilityScope.ALLIES,
            nations=tuple(open_to_partners),
        )
        if release.owner != actor.nation:
            raise invalid("body.releasability", f"the initiative belongs to {actor.nation}")
        hidden = [p for p in open_to_partners if not release.allows(p)]
        if hidden:
            raise invalid("body.releasability", f"partners who may join must be able to read it: {hidden}")
        return cls(
            id=id,
            ocid=f"{OCID_PREFIX}-{id}",
            title=title.strip(),
            description=description.strip(),
            item=item,
            capability_area=capability_area.strip(),
            required_standards=tuple(required_standards),
            lead_nation=actor.nation,
            procuring_entity=(procuring_entity or ("NSPA" if actor.nation == NATO else actor.nation)).strip(),
            participation_deadline=participation_deadline,
            open_to_partners=tuple(sorted(set(open_to_partners))),
            releasability=release,
            status=S.PROPOSED,
            version=1,
            history=(Change("proposed", S.PROPOSED.value, actor.id, now),),
            created_at=now,
        )

    # -- helpers

    def visible_to(self, nation: str) -> bool:
        return may_read(self.releasability, nation)

    def _lead_only(self, actor: Actor, action: str) -> None:
        if actor.nation != self.lead_nation or PROCUREMENT_ROLE not in actor.roles:
            raise Forbidden(f"only {self.lead_nation}'s procurement staff, who lead it, may {action}")

    def _move(
        self, action: str, actor: Actor, now: datetime, note: str = "", **changes: object
    ) -> Initiative:
        status = next_initiative_status(action, self.status)
        return replace(
            self,
            status=status,
            version=self.version + 1,
            history=(*self.history, Change(action, status.value, actor.id, now, note)),
            **changes,  # type: ignore[arg-type]
        )

    def _record(
        self, action: str, actor: Actor, now: datetime, note: str = "", **changes: object
    ) -> Initiative:
        """A change that keeps the status (participation, bids, milestones, flags)."""
        return replace(
            self,
            version=self.version + 1,
            history=(*self.history, Change(action, self.status.value, actor.id, now, note)),
            **changes,  # type: ignore[arg-type]
        )

    def participation(self, nation: str) -> Participation | None:
        return next((p for p in self.participations if p.nation == nation), None)

    def _with(self, p: Participation) -> tuple[Participation, ...]:
        others = tuple(x for x in self.participations if x.nation != p.nation)
        return tuple(sorted((*others, p), key=lambda x: x.nation))

    @property
    def demand(self) -> Demand:
        """The aggregate as it stands: the lead nation's and NATO staff's to see (`demand_for`)."""
        return aggregate(self.participations)

    @property
    def demand_settled(self) -> bool:
        """The tender was published: no participant may change its figures any more."""
        return any(c.action == "publish_tender" for c in self.history)

    def sees_demand_in_full(self, viewer: str | None) -> bool:
        """The lead nation and NATO staff see the aggregate as it stands."""
        return viewer is not None and viewer in (self.lead_nation, NATO)

    def demand_for(self, viewer: str | None, min_contributors: int) -> DisclosedDemand:
        """The aggregate as `viewer` (a nation, NATO, or None: everyone who may read the initiative) may
        see it; see `Disclosure`."""
        if self.sees_demand_in_full(viewer):
            return DisclosedDemand(Disclosure.FULL, self.demand)
        active = sum(1 for p in self.participations if p.status in ACTIVE)
        if not self.demand_settled:
            return DisclosedDemand(Disclosure.WITHHELD, Demand(active, {}, {}, {}))
        return DisclosedDemand(Disclosure.PUBLISHED, published_demand(self.participations, min_contributors))

    # -- life cycle (the lead nation)

    def open(self, actor: Actor, now: datetime) -> Initiative:
        self._lead_only(actor, "open it for participation")
        return self._move("open", actor, now)

    def close_participation(self, actor: Actor, now: datetime) -> Initiative:
        self._lead_only(actor, "close participation")
        next_initiative_status("close_participation", self.status)  # a wrong state is named first
        if not any(p.status in ACTIVE for p in self.participations):
            raise IllegalTransition("initiative", "close participation of", "an initiative nobody joined")
        self._check_no_pending_withdrawal("close participation")
        return self._move("close_participation", actor, now)

    @property
    def pending_withdrawals(self) -> tuple[str, ...]:
        """Nations whose withdrawal request waits for the lead nation's decision."""
        return tuple(
            p.nation for p in self.participations if p.status is ParticipationStatus.WITHDRAWAL_REQUESTED
        )

    def _check_no_pending_withdrawal(self, action: str) -> None:
        """The demand is settled first: a request left waiting would be stuck once the demand is closed."""
        pending = self.pending_withdrawals
        if pending:
            raise Conflict(
                f"cannot {action} while withdrawal requests of {', '.join(pending)} are pending: the lead"
                " nation approves or refuses them first",
                pending_withdrawals=list(pending),
            )

    def cancel(self, actor: Actor, reason: str, now: datetime) -> Initiative:
        self._lead_only(actor, "cancel it")
        if not reason.strip():
            raise invalid("body.reason", "a cancellation needs a reason")
        return self._move("cancel", actor, now, note=reason.strip(), cancellation_reason=reason.strip())

    def start_delivery(self, actor: Actor, now: datetime) -> Initiative:
        self._lead_only(actor, "start delivery")
        return self._move("start_delivery", actor, now)

    def close(self, actor: Actor, now: datetime) -> Initiative:
        self._lead_only(actor, "close it")
        scheduled = [
            m.id for c in self.contracts for m in c.milestones if m.status is MilestoneStatus.SCHEDULED
        ]
        if scheduled:
            raise IllegalTransition("initiative", "close", f"delivering with open milestones {scheduled}")
        return self._move("close", actor, now)

    # -- participation (each nation for itself)

    def _check_participant(self, actor: Actor) -> None:
        _check_procurement_staff(actor)
        nation = actor.nation
        if nation == NATO:
            raise Forbidden("NATO staff run initiatives; nations participate")
        if nation in PARTNERS and nation not in self.open_to_partners:
            raise Forbidden(f"this initiative is not open to {nation}")
        if nation not in ALLIES and nation not in PARTNERS:
            raise Forbidden(f"{nation} may not participate")
        if not self.visible_to(nation):
            raise NotFound(f"no initiative {self.id}")

    def join(self, actor: Actor, indicative: Mapping[int, int], now: datetime) -> Initiative:
        """Join (or revise an indicative quantity) while the initiative is open and before its deadline."""
        self._check_participant(actor)
        if self.status is not S.OPEN:
            raise IllegalTransition("initiative", "join", self.status.value)
        if now.date() > self.participation_deadline:
            raise IllegalTransition("initiative", "join", f"past its deadline {self.participation_deadline}")
        quantities = check_quantities(indicative, "body.indicative")
        if not quantities:
            raise invalid(
                "body.indicative", "a nation joins with an indicative quantity for at least one year"
            )
        current = self.participation(actor.nation)
        if current is not None and current.status not in (
            ParticipationStatus.JOINED,
            ParticipationStatus.WITHDRAWN,
        ):
            raise IllegalTransition("participation", "join", current.status.value)
        joined = Participation(actor.nation, ParticipationStatus.JOINED, quantities, joined_at=now)
        return self._record("join", actor, now, note=actor.nation, participations=self._with(joined))

    def commit(
        self, actor: Actor, firm: Mapping[int, int], funded: Mapping[int, int], now: datetime
    ) -> Initiative:
        """A firm quantity per year, and how much of it is funded; may be revised until tendering."""
        self._check_participant(actor)
        if self.status not in DEMAND_OPEN:
            raise IllegalTransition("initiative", "commit to", self.status.value)
        current = self.participation(actor.nation)
        if current is None or current.status not in (
            ParticipationStatus.JOINED,
            ParticipationStatus.COMMITTED,
        ):
            raise IllegalTransition(
                "participation", "commit", current.status.value if current else "not joined"
            )
        firm_q = check_quantities(firm, "body.firm")
        funded_q = check_quantities(funded, "body.funded")
        if not firm_q:
            raise invalid("body.firm", "a commitment names a firm quantity for at least one year")
        over = [y for y, q in funded_q.items() if q > firm_q.get(y, 0)]
        if over:
            raise invalid("body.funded", f"funded exceeds firm in {over}")
        committed = replace(current, status=ParticipationStatus.COMMITTED, firm=firm_q, funded=funded_q)
        return self._record("commit", actor, now, note=actor.nation, participations=self._with(committed))

    def withdraw(self, actor: Actor, reason: str, now: datetime) -> tuple[Initiative, bool]:
        """Withdraw: at once when only joined (or for the lead nation itself); after a firm commitment the
        lead nation must approve (returns False: requested, not yet withdrawn)."""
        self._check_participant(actor)
        if self.status not in DEMAND_OPEN:
            raise IllegalTransition("initiative", "withdraw from", self.status.value)
        current = self.participation(actor.nation)
        if current is None or current.status not in (
            ParticipationStatus.JOINED,
            ParticipationStatus.COMMITTED,
        ):
            raise IllegalTransition(
                "participation", "withdraw", current.status.value if current else "not joined"
            )
        if not reason.strip():
            raise invalid("body.reason", "a withdrawal gives a reason")
        if current.status is ParticipationStatus.JOINED or actor.nation == self.lead_nation:
            amendment = current.status is ParticipationStatus.COMMITTED
            gone = replace(current, status=ParticipationStatus.WITHDRAWN, withdrawal_reason=reason.strip())
            action = "withdraw_amendment" if amendment else "withdraw"
            return self._record(action, actor, now, note=actor.nation, participations=self._with(gone)), True
        asked = replace(
            current, status=ParticipationStatus.WITHDRAWAL_REQUESTED, withdrawal_reason=reason.strip()
        )
        return self._record(
            "request_withdrawal", actor, now, note=actor.nation, participations=self._with(asked)
        ), False

    def decide_withdrawal(self, actor: Actor, nation: str, approve: bool, now: datetime) -> Initiative:
        """The lead nation approves a committed participant's withdrawal (an amendment), or refuses it."""
        self._lead_only(actor, "decide on a withdrawal")
        current = self.participation(nation)
        if current is None or current.status is not ParticipationStatus.WITHDRAWAL_REQUESTED:
            raise IllegalTransition(
                "participation", "decide the withdrawal of", current.status.value if current else "absent"
            )
        if self.status not in DEMAND_OPEN:
            raise IllegalTransition("initiative", "amend participation of", self.status.value)
        if approve:
            after = replace(current, status=ParticipationStatus.WITHDRAWN)
            return self._record(
                "approve_withdrawal", actor, now, note=nation, participations=self._with(after)
            )
        after = replace(current, status=ParticipationStatus.COMMITTED, withdrawal_reason=None)
        return self._record("refuse_withdrawal", actor, now, note=nation, participations=self._with(after))

    # -- tender, award, contract (the lead nation)

    def publish_tender(
        self, actor: Actor, lots: Sequence[Lot], period_end: date, now: datetime
    ) -> Initiative:
        self._lead_only(actor, "publish the tender")
        next_initiative_status("publish_tender", self.status)  # a wrong state is named first
        self._check_no_pending_withdrawal("publish the tender")
        if not lots:
            raise invalid("body.lots", "a tender has at least one lot")
        if len({lot.id for lot in lots}) != len(lots):
            raise invalid("body.lots", "lot ids are unique")
        if period_end <= now.date():
            raise invalid("body.tender_period_end", "the tender period ends after today")
        firm_total = sum(self.demand.firm.values())
        lots_total = sum(lot.quantity for lot in lots)
        if firm_total and lots_total > firm_total:
            raise invalid("body.lots", f"the lots ({lots_total}) exceed the firm demand ({firm_total})")
        return self._move("publish_tender", actor, now, tender=Tender(tuple(lots), period_end, now))

    def record_bid(self, actor: Actor, bid: Bid, supplier: Supplier, now: datetime) -> Initiative:
        self._lead_only(actor, "record a bid")
        if self.status is not S.TENDERING or self.tender is None:
            raise IllegalTransition("initiative", "record a bid on", self.status.value)
        lot = next((x for x in self.tender.lots if x.id == bid.lot_id), None)
        if lot is None:
            raise invalid("body.lot_id", f"the tender has no lot {bid.lot_id}")
        if not 0 < bid.quantity <= lot.quantity:
            raise invalid("body.quantity", f"a bid is for 1 to {lot.quantity} {self.item.unit}")
        if supplier.id != bid.supplier_id:
            raise invalid("body.supplier_id", "the bid names another supplier")
        self._check_released_as_widely(supplier, "body.supplier_id")
        return self._record("record_bid", actor, now, note=supplier.name, bids=(*self.bids, bid))

    def _check_released_as_widely(self, supplier: Supplier, location: str) -> None:
        """A bid or an award copies the supplier's name and scale into the initiative (its API output, its
        OCDS parties, its events): only a supplier record that everyone who may read the initiative may
        read is named in it."""
        missing = readers_missing(supplier.releasability, self.releasability)
        if missing:
            raise invalid(
                location,
                f"supplier {supplier.id}'s record is not released to {', '.join(missing)}, who may read this"
                " initiative: release the supplier record as widely as the initiative",
            )

    def award(
        self,
        actor: Actor,
        awards: Sequence[tuple[str, AwardInput]],
        standings: Mapping[str, SupplierStanding],
        now: datetime,
    ) -> Initiative:
        """Award lots to one or more suppliers. Refused, with the reason, when a supplier is not clear or
        cleared, or holds no verified conformance with a required standard edition."""
        self._lead_only(actor, "award")
        if self.status is not S.TENDERING or self.tender is None:
            raise IllegalTransition("initiative", "award", self.status.value)
        if not awards:
            raise invalid("body.awards", "an award names at least one supplier")
        per_lot: dict[str, int] = {}
        made = []
        for n, (award_id, a) in enumerate(awards):
            lot = next((x for x in self.tender.lots if x.id == a.lot_id), None)
            if lot is None:
                raise invalid("body.awards", f"the tender has no lot {a.lot_id}")
            per_lot[a.lot_id] = per_lot.get(a.lot_id, 0) + a.quantity
            if a.quantity <= 0 or per_lot[a.lot_id] > lot.quantity:
                raise invalid("body.awards", f"lot {lot.id} is for {lot.quantity} {self.item.unit} in all")
            standing = standings.get(a.supplier_id)
            if standing is None:
                raise invalid(f"body.awards.{n}.supplier_id", f"no supplier {a.supplier_id}")
            supplier = standing.supplier
            self._check_released_as_widely(supplier, f"body.awards.{n}.supplier_id")
            if a.product_code is not None and a.product_code not in supplier.products:
                raise invalid(
                    f"body.awards.{n}.product_code", f"{a.product_code} is not a product of {supplier.name}"
                )
            if supplier.screening not in (Screening.CLEAR, Screening.CLEARED):
                raise AwardRefused(
                    f"{supplier.name} is {supplier.screening.value.replace('_', ' ')} in supply-chain"
                    " screening: only a clear or cleared supplier may be awarded",
                    supplier_id=supplier.id,
                    screening=supplier.screening.value,
                )
            product, lacking = standing.missing(self.required_standards, a.product_code)
            if lacking:
                missing = [s.label for s in lacking]
                if product is None:
                    which = f"{supplier.name} has no product on record: none"
                elif a.product_code is not None or len(supplier.products) == 1:
                    which = f"{supplier.name}'s product {product}"
                else:
                    which = (
                        f"no single product of {supplier.name} holds every required edition: the closest,"
                        f" {product},"
                    )
                raise AwardRefused(
                    f"{which} holds no verified conformance with {', '.join(missing)}, which this initiative"
                    " requires",
                    supplier_id=supplier.id,
                    product_code=product,
                    missing_standards=missing,
                )
            made.append(
                Award(award_id, a.lot_id, supplier.id, supplier.name, a.quantity, a.value, a.currency, now)
            )
        return self._move("award", actor, now, awards=tuple(made))

    def sign_contract(self, actor: Actor, contract: Contract, now: datetime) -> Initiative:
        self._lead_only(actor, "sign a contract")
        award = next((a for a in self.awards if a.id == contract.award_id), None)
        if award is None:
            raise invalid("body.award_id", f"no award {contract.award_id} in this initiative")
        if any(c.award_id == award.id for c in self.contracts):
            raise Conflict(f"award {award.id} already has a contract")
        if contract.period_end < contract.period_start:
            raise invalid("body.period_end", "a contract's period ends after it starts")
        if len({m.id for m in contract.milestones}) != len(contract.milestones):
            raise invalid("body.milestones", "milestone ids are unique")
        signed = replace(contract, supplier_id=award.supplier_id, signed_at=now)
        return self._move("sign_contract", actor, now, note=contract.id, contracts=(*self.contracts, signed))

    def place_call_off(self, actor: Actor, call_off: CallOff, now: datetime) -> Initiative:
        """A call-off under a framework contract, for a participating nation."""
        self._lead_only(actor, "place a call-off")
        if self.status not in (S.CONTRACTED, S.DELIVERING):
            raise IllegalTransition("initiative", "place a call-off under", self.status.value)
        contract = next((c for c in self.contracts if c.id == call_off.contract_id), None)
        if contract is None:
            raise invalid("body.contract_id", f"no contract {call_off.contract_id} in this initiative")
        if not contract.framework:
            raise invalid("body.contract_id", f"contract {contract.id} is not a framework agreement")
        buyer = self.participation(call_off.buyer)
        if buyer is None or buyer.status not in FIRM:
            raise invalid("body.buyer", f"{call_off.buyer} has no firm commitment in this initiative")
        if call_off.quantity <= 0:
            raise invalid("body.quantity", "a call-off is for at least one unit")
        if call_off.delivery_by <= now.date():
            raise invalid("body.delivery_by", "a call-off is delivered by a day still to come")
        if call_off.currency != contract.currency:
            raise invalid("body.currency", f"the framework contract is in {contract.currency}")
        award = next(a for a in self.awards if a.id == contract.award_id)
        called = sum(c.quantity for c in self.call_offs if c.contract_id == contract.id)
        if called + call_off.quantity > award.quantity:
            left = award.quantity - called
            raise invalid(
                "body.quantity",
                f"the framework covers {award.quantity} {self.item.unit}; {left} are left to call off",
            )
        return self._record(
            "place_call_off",
            actor,
            now,
            note=call_off.id,
            call_offs=(*self.call_offs, replace(call_off, placed_at=now)),
        )

    def record_milestone(
        self,
        actor: Actor,
        contract_id: str,
        milestone_id: str,
        met_on: date | None,
        reason: str,
        now: datetime,
    ) -> tuple[Initiative, Milestone]:
        """Met on a date, or missed (with a reason)."""
        self._lead_only(actor, "record a milestone")
        if self.status not in (S.CONTRACTED, S.DELIVERING):
            raise IllegalTransition("initiative", "record a milestone of", self.status.value)
        contract = next((c for c in self.contracts if c.id == contract_id), None)
        if contract is None:
            raise NotFound(f"no contract {contract_id} in this initiative")
        milestone = next((m for m in contract.milestones if m.id == milestone_id), None)
        if milestone is None:
            raise NotFound(f"no milestone {milestone_id} in contract {contract_id}")
        if milestone.status is not MilestoneStatus.SCHEDULED:
            raise IllegalTransition("milestone", "record", milestone.status.value)
        if met_on is not None:
            if met_on > now.date():
                raise invalid("body.met_on", "a milestone is met on a day that has come")
            done = replace(milestone, status=MilestoneStatus.MET, met_on=met_on)
        else:
            if not reason.strip():
                raise invalid("body.reason", "a missed milestone says why")
            done = replace(milestone, status=MilestoneStatus.MISSED, reason=reason.strip())
        changed = replace(
            contract, milestones=tuple(done if m.id == milestone_id else m for m in contract.milestones)
        )
        contracts = tuple(changed if c.id == contract_id else c for c in self.contracts)
        return self._record(
            f"milestone_{done.status.value}", actor, now, note=milestone_id, contracts=contracts
        ), done

    # -- standards awareness

    def flag(self, standard: RequiredStandard, standard_status: str, now: datetime) -> Initiative | None:
        """Flag an initiative not yet contracted whose required edition was superseded or cancelled; None
        when it does not require that edition, is past contracting, or is already flagged for it."""
        if standard not in self.required_standards or self.status in CONTRACTED_STATES | {S.CANCELLED}:
            return None
        if any(f.standard == standard and f.standard_status == standard_status for f in self.flags):
            return None
        reason = f"required standard {standard.label} is {standard_status}"
        flag = Flag(standard, standard_status, reason, now)
        return replace(
            self,
            version=self.version + 1,
            flags=(*self.flags, flag),
            history=(*self.history, Change("flagged", self.status.value, "standards", now, reason)),
        )


# --- demand signals and the demand picture --------------------------------------------------------------


class Firmness(StrEnum):
    INDICATIVE = "indicative"
    PLANNED = "planned"
    FUNDED = "funded"
    CONTRACTED = "contracted"


@dataclass(frozen=True)
class DemandSignal:
    """A nation's standing demand for a product, outside any initiative."""

    id: str
    nation: str
    product: str
    capability_area: str
    unit: str
    firmness: Firmness
    quantities: dict[int, int]
    releasability: Releasability
    version: int
    updated_at: datetime

    @classmethod
    def publish(
        cls,
        *,
        id: str,
        actor: Actor,
        product: str,
        capability_area: str,
        unit: str,
        firmness: Firmness,
        quantities: Mapping[int, int],
        now: datetime,
        releasability: Releasability | None = None,
    ) -> DemandSignal:
        _check_procurement_staff(actor)
        if actor.nation not in ALLIES and actor.nation not in PARTNERS:
            raise Forbidden("demand signals come from nations")
        if not product.strip() or not unit.strip():
            raise invalid("body.product", "a demand signal names a product and a unit")
        if not capability_area.strip():
            raise invalid("body.capability_area", "a demand signal names its capability area")
        q = check_quantities(quantities, "body.quantities")
        if not q:
            raise invalid("body.quantities", "a demand signal has a quantity for at least one year")
        release = releasability or Releasability(owner=actor.nation, scope=ReleasabilityScope.ALLIES)
        if release.owner != actor.nation:
            raise invalid("body.releasability", f"the signal belongs to {actor.nation}")
        return cls(
            id,
            actor.nation,
            product.strip(),
            capability_area.strip(),
            unit.strip(),
            firmness,
            q,
            release,
            1,
            now,
        )

    def revise(
        self, actor: Actor, firmness: Firmness, quantities: Mapping[int, int], now: datetime
    ) -> DemandSignal:
        _check_procurement_staff(actor)
        if actor.nation != self.nation:
            raise Forbidden(f"only {self.nation} revises its demand signal")
        q = check_quantities(quantities, "body.quantities")
        if not q:
            raise invalid("body.quantities", "a demand signal has a quantity for at least one year")
        return replace(self, firmness=firmness, quantities=q, version=self.version + 1, updated_at=now)


@dataclass(frozen=True)
class YearDemand:
    indicative: int = 0
    planned: int = 0
    funded: int = 0
    contracted: int = 0

    @property
    def total(self) -> int:
        return self.indicative + self.planned + self.funded + self.contracted

    @property
    def firm(self) -> int:
        """Planned, funded or contracted: what industry can build capacity on."""
        return self.planned + self.funded + self.contracted

    def plus(self, firmness: Firmness, quantity: int) -> YearDemand:
        return replace(self, **{firmness.value: getattr(self, firmness.value) + quantity})


def initiative_demand(
    initiative: Initiative, viewer: str | None, min_contributors: int
) -> dict[int, YearDemand]:
    """An initiative's demand by firmness: contracted once a contract is signed; before that, funded, then
    firm but unfunded (planned), then the indicative quantity beyond the firm one.

    As `viewer` (a nation, NATO, or None: everyone who may read the initiative) may see it (see
    `Disclosure`): in full for the lead nation and NATO staff; for anyone else only the published firm
    demand (nothing until the demand is settled), as planned (its funding is not published) or, once a
    contract is signed, contracted."""
    if initiative.status is S.CANCELLED:
        return {}
    contracted = initiative.status in CONTRACTED_STATES
    if not initiative.sees_demand_in_full(viewer):
        firm = initiative.demand_for(viewer, min_contributors).demand.firm
        as_ = Firmness.CONTRACTED if contracted else Firmness.PLANNED
        return {y: YearDemand().plus(as_, q) for y, q in firm.items()}
    out: dict[int, YearDemand] = {}
    for p in initiative.participations:
        if p.status not in ACTIVE:
            continue
        for y in set(p.indicative) | set(p.firm):
            firm_q, funded = (p.firm.get(y, 0), p.funded.get(y, 0)) if p.status in FIRM else (0, 0)
            d = out.get(y, YearDemand())
            if contracted:
                d = d.plus(Firmness.CONTRACTED, firm_q)
            else:
                d = d.plus(Firmness.FUNDED, funded).plus(Firmness.PLANNED, firm_q - funded)
            out[y] = d.plus(Firmness.INDICATIVE, max(p.indicative.get(y, 0) - firm_q, 0))
    return out


@dataclass(frozen=True)
class ProductDemand:
    product: str
    unit: str
    years: dict[int, YearDemand]
    signals: int
    initiatives: int


def demand_picture(
    signals: Iterable[DemandSignal],
    initiatives: Iterable[Initiative],
    viewer: str | None,
    min_contributors: int,
) -> list[ProductDemand]:
    """Per product, unit and year: standing signals and initiative demand, by firmness, each initiative's
    as `viewer` may see it (`initiative_demand`). Quantities in different units are never added up: a
    product demanded in two units has a line for each."""
    by_product: dict[tuple[str, str], dict[int, YearDemand]] = {}
    counts: dict[tuple[str, str], list[int]] = {}
    for s in signals:
        key = (s.product, s.unit)
        years = by_product.setdefault(key, {})
        counts.setdefault(key, [0, 0])[0] += 1
        for y, q in s.quantities.items():
            years[y] = years.get(y, YearDemand()).plus(s.firmness, q)
    for i in initiatives:
        d = initiative_demand(i, viewer, min_contributors)
        if not d:
            continue
        key = (i.item.product, i.item.unit)
        years = by_product.setdefault(key, {})
        counts.setdefault(key, [0, 0])[1] += 1
        for y, yd in d.items():
            cur = years.get(y, YearDemand())
            years[y] = YearDemand(
                cur.indicative + yd.indicative,
                cur.planned + yd.planned,
                cur.funded + yd.funded,
                cur.contracted + yd.contracted,
            )
    return [
        ProductDemand(p, u, dict(sorted(by_product[p, u].items())), counts[p, u][0], counts[p, u][1])
        for p, u in sorted(by_product)
    ]


@dataclass(frozen=True)
class YearBalance:
    year: int
    demand: YearDemand
    capacity: int
    #: Demand (all of it) minus committed capacity: positive is a shortfall industry must cover.
    gap: int
    #: Firm demand (planned, funded, contracted) minus capacity.
    firm_gap: int
    #: Output the plans reported short of their ramps in months of the year (latest report per month).
    shortfall_reported: int = 0


def demand_against_capacity(
    demand: Mapping[int, YearDemand],
    capacity: Mapping[int, int],
    shortfalls: Mapping[int, int] | None = None,
) -> list[YearBalance]:
    short = shortfalls or {}
    years = sorted(set(demand) | set(capacity) | set(short))
    out = []
    for y in years:
        d = demand.get(y, YearDemand())
        c = capacity.get(y, 0)
        out.append(YearBalance(y, d, c, d.total - c, d.firm - c, short.get(y, 0)))
    return out


# --- suppliers and supply-chain security ----------------------------------------------------------------


class Scale(StrEnum):
    MICRO = "micro"
    SME = "sme"
    LARGE = "large"


class Screening(StrEnum):
    PENDING = "pending"
    CLEAR = "clear"
    POTENTIAL_MATCH = "potential_match"
    CLEARED = "cleared"
    BLOCKED = "blocked"


def name_key(name: str) -> str:
    """A name as screening compares it: Unicode compatibility forms folded (NFKC, so full-width letters,
    ligatures and non-breaking spaces are the plain ones), invisible format characters (zero-width spaces
    and joiners, soft hyphens) dropped, whitespace trimmed and collapsed to one space, case folded."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    visible = "".join(c for c in folded if unicodedata.category(c) != "Cf")
    return " ".join(visible.split())


@dataclass(frozen=True)
class Owner:
    name: str
    country: str
    share_percent: float


@dataclass(frozen=True)
class ScreeningLists:
    """Restricted countries and parties, as configured; `version` changes whenever they do."""

    countries: frozenset[str]
    parties: frozenset[str]

    @cached_property
    def party_keys(self) -> frozenset[str]:
        """The restricted parties' names as compared (`name_key`)."""
        return frozenset(k for k in map(name_key, self.parties) if k)

    @property
    def version(self) -> str:
        text = "|".join(sorted(self.countries)) + "#" + "|".join(sorted(self.party_keys))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def organisation_key(organisation_id: str) -> str:
    """An organisation id as it is compared: registries write the same id in either case (`ACME-1`,
    `acme-1`), so a block, a duplicate registration or a filter on one is one on the other."""
    return organisation_id.strip().casefold()


@dataclass(frozen=True)
class Supplier:
    id: str
    organisation_id: str
    name: str
    scale: Scale
    country_of_incorporation: str
    ultimate_parent: str | None
    ultimate_parent_country: str | None
    ownership_chain: tuple[Owner, ...]
    products: tuple[str, ...]
    nation: str  # who registered it
    releasability: Releasability
    screening: Screening
    matches: tuple[str, ...]
    lists_version: str | None
    version: int
    history: tuple[Change, ...]
    mitigation: str | None = None
    adjudicator: str | None = None
    blocked_reason: str | None = None
    #: The matches a person adjudicated when clearing: a re-screening finding only these stays cleared.
    adjudicated: tuple[str, ...] = ()

    @property
    def organisation_key(self) -> str:
        return organisation_key(self.organisation_id)

    @classmethod
    def register(
        cls,
        *,
        id: str,
        actor: Actor,
        organisation_id: str,
        name: str,
        scale: Scale,
        country_of_incorporation: str,
        now: datetime,
        ultimate_parent: str | None = None,
        ultimate_parent_country: str | None = None,
        ownership_chain: Sequence[Owner] = (),
        products: Sequence[str] = (),
        releasability: Releasability | None = None,
    ) -> Supplier:
        _check_procurement_staff(actor)
        if not organisation_id.strip() or not name.strip():
            raise invalid("body.name", "a supplier has an organisation id and a name")
        owners = tuple(replace(o, name=o.name.strip()) for o in ownership_chain)
        for i, o in enumerate(owners):
            if not o.name:
                raise invalid(f"body.ownership_chain.{i}.name", "an owner has a name")
            if not 0 < o.share_percent <= 100:
                raise invalid(f"body.ownership_chain.{i}.share_percent", "a share is above 0 and at most 100")
        total = sum(o.share_percent for o in owners)
        if total > 100 + 1e-9:
            raise invalid(
                "body.ownership_chain", f"the owners' shares add up to {total:g} %, more than 100 %"
            )
        if ultimate_parent is not None:
            ultimate_parent = ultimate_parent.strip()
            if not ultimate_parent:
                raise invalid("body.ultimate_parent", "an ultimate parent has a name")
        if (ultimate_parent is None) != (ultimate_parent_country is None):
            raise invalid("body.ultimate_parent_country", "an ultimate parent comes with its country")
        release = releasability or Releasability(owner=actor.nation, scope=ReleasabilityScope.ALLIES)
        if release.owner != actor.nation:
            raise invalid("body.releasability", f"the record belongs to {actor.nation}")
        return cls(
            id=id,
            organisation_id=organisation_id.strip(),
            name=name.strip(),
            scale=scale,
            country_of_incorporation=country_of_incorporation,
            ultimate_parent=ultimate_parent,
            ultimate_parent_country=ultimate_parent_country,
            ownership_chain=owners,
            products=tuple(dict.fromkeys(p.strip() for p in products if p.strip())),
            nation=actor.nation,
            releasability=release,
            screening=Screening.PENDING,
            matches=(),
            lists_version=None,
            version=1,
            history=(Change("registered", Screening.PENDING.value, actor.id, now),),
        )

    def find_matches(self, lists: ScreeningLists, blocked_elsewhere: Sequence[str] = ()) -> tuple[str, ...]:
        """Every reason the supplier may be under hostile influence, by the lists: where it is incorporated,
        who ultimately controls it, who owns it, and whether any of them is a restricted party (names
        compared as `name_key` makes them); and every nation that blocked the same organisation
        (`blocked_elsewhere`: what the service found on other supplier records)."""
        found: list[str] = []
        if self.country_of_incorporation in lists.countries:
            found.append(f"incorporated in {self.country_of_incorporation}")
        if self.ultimate_parent_country in lists.countries:
            found.append(f"ultimate parent {self.ultimate_parent} in {self.ultimate_parent_country}")
        for o in self.ownership_chain:
            if o.country in lists.countries:
                found.append(f"owner {o.name} ({o.share_percent:g} %) in {o.country}")
        for who in (self.name, self.ultimate_parent, *(o.name for o in self.ownership_chain)):
            if who and name_key(who) in lists.party_keys:
                found.append(f"{who} is a restricted party")
        for nation in sorted(set(blocked_elsewhere)):
            found.append(f"organisation {self.organisation_id} is blocked by {nation}")
        return tuple(dict.fromkeys(found))

    def screen(self, lists: ScreeningLists, now: datetime, blocked_elsewhere: Sequence[str] = ()) -> Supplier:
        """Screen against the lists in force and the blocks other nations put on the same organisation. No
        match: clear. A match: a potential match for a person to adjudicate, unless a person already
        cleared exactly these matches. A block stands."""
        matches = self.find_matches(lists, blocked_elsewhere)
        if self.screening is Screening.BLOCKED:
            status = Screening.BLOCKED
        elif not matches:
            status = Screening.CLEAR
        elif self.screening is Screening.CLEARED and set(matches) <= set(self.adjudicated):
            status = Screening.CLEARED
        else:
            status = Screening.POTENTIAL_MATCH
        return replace(
            self,
            screening=status,
            matches=matches,
            lists_version=lists.version,
            version=self.version + 1,
            history=(*self.history, Change("screened", status.value, "screening", now, "; ".join(matches))),
        )

    def _adjudicator(self, actor: Actor, person: str) -> str:
        """Who adjudicates, as recorded: the named person, with the client they act through. Only the
        registering Ally's or NATO's procurement staff adjudicate (a partner does not, even for a supplier
        it registered), and only a potential match."""
        allowed = (NATO,) if self.nation in PARTNERS else (self.nation, NATO)
        if PROCUREMENT_ROLE not in actor.roles or actor.nation not in allowed:
            whose = "NATO's" if self.nation in PARTNERS else f"{self.nation}'s or NATO's"
            raise Forbidden(f"only {whose} procurement staff adjudicate this supplier")
        if self.screening is not Screening.POTENTIAL_MATCH:
            raise IllegalTransition("supplier", "adjudicate", self.screening.value)
        name = " ".join(person.split())
        if not name:
            raise invalid("body.adjudicator", "a named person adjudicates: give their name")
        return f"{name} ({actor.id})"

    def clear(self, actor: Actor, mitigation: str, now: datetime, *, adjudicator: str) -> Supplier:
        """A named person (`adjudicator`) clears a potential match, with the mitigation that makes it
        acceptable."""
        who = self._adjudicator(actor, adjudicator)
        if not mitigation.strip():
            raise invalid("body.mitigation", "clearing a potential match records its mitigation")
        return replace(
            self,
            screening=Screening.CLEARED,
            mitigation=mitigation.strip(),
            adjudicator=who,
            adjudicated=self.matches,
            version=self.version + 1,
            history=(
                *self.history,
                Change("cleared", Screening.CLEARED.value, who, now, mitigation.strip()),
            ),
        )

    def block(self, actor: Actor, reason: str, now: datetime, *, adjudicator: str) -> Supplier:
        """A named person (`adjudicator`) blocks a supplier on a potential match, saying why."""
        who = self._adjudicator(actor, adjudicator)
        if not reason.strip():
            raise invalid("body.reason", "blocking a supplier says why")
        return replace(
            self,
            screening=Screening.BLOCKED,
            blocked_reason=reason.strip(),
            adjudicator=who,
            version=self.version + 1,
            history=(
                *self.history,
                Change("blocked", Screening.BLOCKED.value, who, now, reason.strip()),
            ),
        )

    @property
    def awardable(self) -> bool:
        return self.screening in (Screening.CLEAR, Screening.CLEARED)


# --- the local read models ------------------------------------------------------------------------------


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


def names_product_of(claim: KnownConformance, supplier: Supplier) -> bool:
    """The claim is for one of the supplier's products: its code is the supplier's and its manufacturer is
    the supplier, by name or organisation id (compared as screening compares names). A claim for the same
    code by another manufacturer is another product."""
    if claim.product_code not in supplier.products or not claim.manufacturer.strip():
        return False
    return name_key(claim.manufacturer) in {name_key(supplier.name), name_key(supplier.organisation_id)}


def usable_claims(
    supplier: Supplier, claims: Iterable[KnownConformance], audience: Releasability
) -> list[KnownConformance]:
    """The claims an award to `supplier` may rest on, for a decision released as `audience` (the
    initiative): those naming the supplier's product that every reader of the decision may read. A claim
    some reader may not see is left out exactly as if it did not exist, so a refusal reads the same
    whether such a claim exists or none does (no oracle on what others hold)."""
    return [
        c
        for c in claims
        if c.releasability is not None
        and not readers_missing(c.releasability, audience)
        and names_product_of(c, supplier)
    ]


def supplier_standing(
    supplier: Supplier,
    claims: Iterable[KnownConformance],
    standards: Mapping[str, KnownStandard],
    on: date,
    audience: Releasability,
) -> SupplierStanding:
    """What an award released as `audience` may credit the supplier with: per product, the editions held
    by verified, unexpired claims that name that product and that every reader of the award may read."""
    usable = usable_claims(supplier, claims, audience)
    return SupplierStanding(supplier, verified_editions(supplier.products, usable, standards, on))


def verified_editions(
    products: Iterable[str],
    claims: Iterable[KnownConformance],
    standards: Mapping[str, KnownStandard],
    on: date,
) -> dict[str, frozenset[tuple[str, int]]]:
    """Per product code of `products`: the standard editions (number, edition) that product holds
    verified, unexpired conformance with (what one product holds is never credited to another)."""
    out: dict[str, set[tuple[str, int]]] = {p: set() for p in products}
    for c in claims:
        if c.product_code not in out or c.status != "verified":
            continue
        if c.expires_on is not None and c.expires_on <= on:
            continue
        s = standards.get(c.standard_id)
        if s is not None:
            out[c.product_code].add((s.number, s.edition))
    return {p: frozenset(held) for p, held in out.items()}
