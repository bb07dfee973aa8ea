"""The joint procurement initiative, in plain Python (no web, database or Kafka here).

An initiative is one OCDS contracting process (its `ocid`): proposed by a lead nation (or NATO's NSPA) ->
open for participation -> participation closed -> tendering -> awarded -> contracted -> delivering ->
closed; or cancelled before a contract is signed. Nations join with indicative quantities per year, commit
firm and funded quantities, or withdraw (after committing, only with the lead nation's approval, recorded as
an amendment). The aggregated demand is computed here.

An award goes only to a supplier that is clear or cleared in screening and whose product holds verified
conformance with every standard edition the initiative requires: counted only from claims that name the
supplier's product (manufacturer and code) and that every reader of the initiative may read
(`standing.py`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime

from icep.contracts import Releasability, ReleasabilityScope
from icep.contracts.nations import ALLIES, NATO, PARTNERS
from icep.platform.domain import Actor, Aggregate, invalid
from icep.platform.errors import Conflict, Forbidden, IllegalTransition, NotFound
from icep.procurement.initiatives import domain_events as happened
from icep.procurement.initiatives.parts import (
    ACTIVE,
    CONTRACTED_STATES,
    DEMAND_OPEN,
    FIRM,
    Award,
    AwardInput,
    Bid,
    CallOff,
    Contract,
    Demand,
    DisclosedDemand,
    Disclosure,
    Flag,
    InitiativeStatus,
    Item,
    Lot,
    Milestone,
    MilestoneStatus,
    Participation,
    ParticipationStatus,
    RequiredStandard,
    S,
    Tender,
    aggregate,
    next_initiative_status,
    published_demand,
)
from icep.procurement.initiatives.standing import SupplierStanding
from icep.procurement.rules import (
    OCID_PREFIX,
    PROCUREMENT_ROLE,
    Change,
    check_procurement_staff,
    check_quantities,
    may_read,
    readers_missing,
)
from icep.procurement.suppliers.model import (
    Supplier,
)


@dataclass(frozen=True, kw_only=True)
class Initiative(Aggregate):
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
        check_procurement_staff(actor)
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
        ).recorded(happened.Proposed(by=actor.id, at=now))

    # -- helpers

    def visible_to(self, nation: str) -> bool:
        return may_read(self.releasability, nation)

    def _lead_only(self, actor: Actor, action: str) -> None:
        if actor.nation != self.lead_nation or PROCUREMENT_ROLE not in actor.roles:
            raise Forbidden(f"only {self.lead_nation}'s procurement staff, who lead it, may {action}")

    def _move(
        self, action: str, event: happened.InitiativeEvent, note: str = "", **changes: object
    ) -> Initiative:
        """A change of status: `action` leads there from the current one; recorded as `event`."""
        status = next_initiative_status(action, self.status)
        return self.recorded(
            event,
            status=status,
            version=self.version + 1,
            history=(*self.history, Change(action, status.value, event.by, event.at, note)),
            **changes,
        )

    def _record(
        self, action: str, event: happened.InitiativeEvent, note: str = "", **changes: object
    ) -> Initiative:
        """A change that keeps the status (participation, bids, milestones, flags), recorded as `event`."""
        return self.recorded(
            event,
            version=self.version + 1,
            history=(*self.history, Change(action, self.status.value, event.by, event.at, note)),
            **changes,
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
        return self._move("open", happened.Opened(by=actor.id, at=now))

    def close_participation(self, actor: Actor, now: datetime) -> Initiative:
        self._lead_only(actor, "close participation")
        next_initiative_status("close_participation", self.status)  # a wrong state is named first
        if not any(p.status in ACTIVE for p in self.participations):
            raise IllegalTransition("initiative", "close participation of", "an initiative nobody joined")
        self._check_no_pending_withdrawal("close participation")
        return self._move("close_participation", happened.ParticipationClosed(by=actor.id, at=now))

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
        cancelled = happened.Cancelled(by=actor.id, at=now)
        return self._move("cancel", cancelled, note=reason.strip(), cancellation_reason=reason.strip())

    def start_delivery(self, actor: Actor, now: datetime) -> Initiative:
        self._lead_only(actor, "start delivery")
        return self._move("start_delivery", happened.DeliveryStarted(by=actor.id, at=now))

    def close(self, actor: Actor, now: datetime) -> Initiative:
        self._lead_only(actor, "close it")
        scheduled = [
            m.id for c in self.contracts for m in c.milestones if m.status is MilestoneStatus.SCHEDULED
        ]
        if scheduled:
            raise IllegalTransition("initiative", "close", f"delivering with open milestones {scheduled}")
        return self._move("close", happened.Closed(by=actor.id, at=now))

    # -- participation (each nation for itself)

    def _check_participant(self, actor: Actor) -> None:
        check_procurement_staff(actor)
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
        event = happened.Joined(by=actor.id, at=now, nation=actor.nation)
        return self._record("join", event, note=actor.nation, participations=self._with(joined))

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
        event = happened.Committed(by=actor.id, at=now, nation=actor.nation)
        return self._record("commit", event, note=actor.nation, participations=self._with(committed))

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
            left = happened.Withdrawn(
                by=actor.id,
                at=now,
                nation=actor.nation,
                amendment=amendment,
                approved_by=actor.id if amendment else None,
                reason=reason.strip(),
            )
            return self._record(action, left, note=actor.nation, participations=self._with(gone)), True
        asked = replace(
            current, status=ParticipationStatus.WITHDRAWAL_REQUESTED, withdrawal_reason=reason.strip()
        )
        event = happened.WithdrawalAsked(by=actor.id, at=now, nation=actor.nation, reason=reason.strip())
        return self._record(
            "request_withdrawal", event, note=actor.nation, participations=self._with(asked)
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
        reason = current.withdrawal_reason or ""
        if approve:
            after = replace(current, status=ParticipationStatus.WITHDRAWN)
            approved = happened.Withdrawn(
                by=actor.id, at=now, nation=nation, amendment=True, approved_by=actor.id, reason=reason
            )
            return self._record("approve_withdrawal", approved, note=nation, participations=self._with(after))
        after = replace(current, status=ParticipationStatus.COMMITTED, withdrawal_reason=None)
        refused = happened.WithdrawalRefused(by=actor.id, at=now, nation=nation, reason=reason)
        return self._record("refuse_withdrawal", refused, note=nation, participations=self._with(after))

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
        published = happened.TenderPublished(by=actor.id, at=now)
        return self._move("publish_tender", published, tender=Tender(tuple(lots), period_end, now))

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
        recorded = happened.BidRecorded(by=actor.id, at=now, bid=bid)
        return self._record("record_bid", recorded, note=supplier.name, bids=(*self.bids, bid))

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
            standing.check_awardable(self.required_standards, a.product_code, f"body.awards.{n}")
            made.append(
                Award(award_id, a.lot_id, supplier.id, supplier.name, a.quantity, a.value, a.currency, now)
            )
        awarded = happened.Awarded(by=actor.id, at=now, awards=tuple(made))
        return self._move("award", awarded, awards=awarded.awards)

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
        event = happened.ContractSigned(by=actor.id, at=now, contract=signed)
        return self._move("sign_contract", event, note=contract.id, contracts=(*self.contracts, signed))

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
        placed = replace(call_off, placed_at=now)
        event = happened.CallOffPlaced(by=actor.id, at=now, call_off=placed)
        return self._record("place_call_off", event, note=call_off.id, call_offs=(*self.call_offs, placed))

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
        event = happened.MilestoneRecorded(by=actor.id, at=now, contract_id=contract_id, milestone=done)
        return self._record(
            f"milestone_{done.status.value}", event, note=milestone_id, contracts=contracts
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
        return self._record(
            "flagged", happened.Flagged(by="standards", at=now, flag=flag), reason, flags=(*self.flags, flag)
        )
