"""The procurement service's one mapper: what its aggregates record (domain events) -> the published
`icep.contracts.procurement` payloads, each with its subject (the aggregate's id) and who may read it.

The unit of work calls it when a repository saves an aggregate, with the aggregate as it stands after the
change (its status and version are the event's). An initiative's events are released to its readers,
except those carrying one nation's figures (`readers.participant_release`), the demand as it stands
(`readers.demand_release`) and the bids (the lead nation alone)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from icep.contracts import EventPayload, Releasability
from icep.contracts import procurement as published
from icep.platform.domain import DomainEvent
from icep.platform.events import OutgoingEvent
from icep.procurement.demand.model import DemandSignal, SignalPublished
from icep.procurement.initiatives import domain_events as happened
from icep.procurement.initiatives.model import Initiative
from icep.procurement.initiatives.parts import Demand, InitiativeStatus, MilestoneStatus
from icep.procurement.initiatives.readers import demand_release, lead_and, participant_release
from icep.procurement.settings import min_aggregate_participants
from icep.procurement.suppliers.model import Blocked, Cleared, Registered, Screened, Supplier


def procurement_events(aggregate: Any, event: DomainEvent) -> Iterable[OutgoingEvent]:
    """The published events one domain event of an initiative, a supplier or a demand signal stands for."""
    if isinstance(aggregate, Initiative):
        found = initiative_events(aggregate, event)
    elif isinstance(aggregate, Supplier):
        found = supplier_events(aggregate, event)
    elif isinstance(aggregate, DemandSignal):
        found = signal_events(aggregate, event)
    else:
        raise TypeError(f"procurement maps no events of {type(aggregate).__name__}")
    return [
        OutgoingEvent(payload=payload, subject=aggregate.id, releasability=release)
        for payload, release in found
    ]


Published = Iterator[tuple[EventPayload, Releasability]]


# --- initiatives ----------------------------------------------------------------------------------------


def year_keys(q: Mapping[int, int]) -> dict[str, int]:
    return {str(y): v for y, v in sorted(q.items())}


def initiative_fields(i: Initiative) -> dict[str, Any]:
    return {
        "initiative_id": i.id,
        "ocid": i.ocid,
        "lead_nation": i.lead_nation,
        "product": i.item.product,
        "status": i.status.value,
        "version": i.version,
    }


def _participation_fields(i: Initiative, e: happened.InitiativeEvent, nation: str) -> dict[str, Any]:
    p = i.participation(nation)
    return {
        **initiative_fields(i),
        "nation": nation,
        "participation_status": p.status.value if p else "absent",
        "by": e.by,
        "at": e.at,
    }


def _demand_figures(
    i: Initiative, d: Demand, release: Releasability, *, published_: bool = False
) -> tuple[EventPayload, Releasability]:
    """The demand `d` of the initiative as an event released as `release`; a cancelled one's demand leaves
    the picture: zeros for every year it had."""
    if i.status is InitiativeStatus.CANCELLED:
        gone = dict.fromkeys(sorted(set(d.indicative) | set(d.firm) | set(d.funded)), 0)
        d = Demand(0, gone, gone, gone)
    event = published.DemandAggregated(
        **initiative_fields(i),
        unit=i.item.unit,
        participants=d.participants,
        indicative=year_keys(d.indicative),
        firm=year_keys(d.firm),
        funded=year_keys(d.funded),
        disclosure="published" if published_ else "full",
    )
    return event, release


def _demand_as_it_stands(i: Initiative) -> Published:
    """The aggregate as it stands, to the lead nation and NATO staff."""
    yield _demand_figures(i, i.demand, demand_release(i))


def _demand_as_published(i: Initiative) -> Published:
    """Once the demand is settled (the tender is published), the aggregate as published
    (`Initiative.demand_for(None, k)`) to every reader of the initiative."""
    if i.demand_settled:
        shown = i.demand_for(None, min_aggregate_participants()).demand
        yield _demand_figures(i, shown, i.releasability, published_=True)


def initiative_events(i: Initiative, e: DomainEvent) -> Published:
    everyone = i.releasability
    match e:
        case happened.Proposed():
            yield (
                published.InitiativeProposed(
                    **initiative_fields(i),
                    title=i.title,
                    capability_area=i.capability_area,
                    unit=i.item.unit,
                    procuring_entity=i.procuring_entity,
                    required_standards=[
                        published.RequiredStandardFigure(number=s.number, edition=s.edition)
                        for s in i.required_standards
                    ],
                    participation_deadline=i.participation_deadline,
                    open_to_partners=list(i.open_to_partners),
                    proposed_by=e.by,
                    proposed_at=e.at,
                ),
                everyone,
            )
        case happened.Opened():
            yield published.InitiativeOpened(**initiative_fields(i), opened_by=e.by, opened_at=e.at), everyone
        case happened.Joined():
            p = i.participation(e.nation)
            assert p is not None
            yield (
                published.InitiativeJoined(
                    **_participation_fields(i, e, e.nation), indicative=year_keys(p.indicative)
                ),
                participant_release(i, e.nation),
            )
            yield from _demand_as_it_stands(i)
        case happened.Committed():
            p = i.participation(e.nation)
            assert p is not None
            yield (
                published.InitiativeCommitted(
                    **_participation_fields(i, e, e.nation),
                    firm=year_keys(p.firm),
                    funded=year_keys(p.funded),
                ),
                participant_release(i, e.nation),
            )
            yield from _demand_as_it_stands(i)
        case happened.WithdrawalAsked():
            # Requested: the demand still counts it until the lead nation decides.
            yield (
                published.WithdrawalRequested(**_participation_fields(i, e, e.nation), reason=e.reason),
                participant_release(i, e.nation),
            )
        case happened.Withdrawn():
            yield (
                published.ParticipantWithdrawn(
                    **_participation_fields(i, e, e.nation),
                    amendment=e.amendment,
                    approved_by=e.approved_by,
                    reason=e.reason,
                ),
                participant_release(i, e.nation),
            )
            yield from _demand_as_it_stands(i)
        case happened.WithdrawalRefused():
            yield (
                published.WithdrawalRefused(**_participation_fields(i, e, e.nation), reason=e.reason),
                participant_release(i, e.nation),
            )
        case happened.ParticipationClosed():
            yield (
                published.ParticipationClosed(**initiative_fields(i), closed_by=e.by, closed_at=e.at),
                everyone,
            )
        case happened.Cancelled():
            yield (
                published.InitiativeCancelled(
                    **initiative_fields(i),
                    reason=i.cancellation_reason or "",
                    cancelled_by=e.by,
                    cancelled_at=e.at,
                ),
                everyone,
            )
            # Its demand leaves the picture, as it stood and (when it was published) as published.
            yield from _demand_as_it_stands(i)
            yield from _demand_as_published(i)
        case happened.TenderPublished():
            # The demand is settled: its aggregate is published to every reader (disclosure control).
            yield from _demand_as_published(i)
            assert i.tender is not None
            yield (
                published.TenderPublished(
                    **initiative_fields(i),
                    lots=[
                        published.LotFigure(
                            lot_id=x.id,
                            title=x.title,
                            quantity=x.quantity,
                            estimated_value=x.estimated_value,
                            currency=x.currency,
                        )
                        for x in i.tender.lots
                    ],
                    tender_period_end=i.tender.period_end,
                    published_by=e.by,
                    published_at=e.at,
                ),
                everyone,
            )
        case happened.BidRecorded():
            b = e.bid
            yield (
                published.BidRecorded(
                    **initiative_fields(i),
                    bid_id=b.id,
                    lot_id=b.lot_id,
                    supplier_id=b.supplier_id,
                    quantity=b.quantity,
                    value=b.value,
                    currency=b.currency,
                    recorded_by=e.by,
                    recorded_at=e.at,
                ),
                lead_and(i),  # bids are the lead nation's alone
            )
        case happened.Awarded():
            yield (
                published.AwardMade(
                    **initiative_fields(i),
                    awards=[
                        published.AwardFigure(
                            award_id=a.id,
                            lot_id=a.lot_id,
                            supplier_id=a.supplier_id,
                            supplier_name=a.supplier_name,
                            quantity=a.quantity,
                            value=a.value,
                            currency=a.currency,
                        )
                        for a in e.awards
                    ],
                    awarded_by=e.by,
                    awarded_at=e.at,
                ),
                everyone,
            )
        case happened.ContractSigned():
            c = e.contract
            yield (
                published.ContractSigned(
                    **initiative_fields(i),
                    contract_id=c.id,
                    award_id=c.award_id,
                    supplier_id=c.supplier_id,
                    framework=c.framework,
                    value=c.value,
                    currency=c.currency,
                    period_start=c.period_start,
                    period_end=c.period_end,
                    milestones=[
                        published.MilestoneFigure(
                            milestone_id=m.id, title=m.title, due=m.due, quantity=m.quantity
                        )
                        for m in c.milestones
                    ],
                    signed_by=e.by,
                    signed_at=e.at,
                ),
                everyone,
            )
        case happened.CallOffPlaced():
            o = e.call_off
            yield (
                published.CallOffPlaced(
                    **initiative_fields(i),
                    call_off_id=o.id,
                    call_off_ocid=o.ocid,
                    contract_id=o.contract_id,
                    buyer=o.buyer,
                    quantity=o.quantity,
                    value=o.value,
                    currency=o.currency,
                    delivery_by=o.delivery_by,
                    placed_by=e.by,
                    placed_at=e.at,
                ),
                everyone,
            )
        case happened.MilestoneRecorded():
            m = e.milestone
            if m.status is MilestoneStatus.MET:
                assert m.met_on is not None
                yield (
                    published.MilestoneMet(
                        **initiative_fields(i),
                        contract_id=e.contract_id,
                        milestone_id=m.id,
                        due=m.due,
                        met_on=m.met_on,
                        recorded_by=e.by,
                    ),
                    everyone,
                )
            else:
                yield (
                    published.MilestoneMissed(
                        **initiative_fields(i),
                        contract_id=e.contract_id,
                        milestone_id=m.id,
                        due=m.due,
                        reason=m.reason or "",
                        recorded_by=e.by,
                    ),
                    everyone,
                )
        case happened.DeliveryStarted():
            yield published.InitiativeDelivering(**initiative_fields(i), by=e.by, at=e.at), everyone
        case happened.Closed():
            yield published.InitiativeClosed(**initiative_fields(i), by=e.by, at=e.at), everyone
        case happened.Flagged():
            f = e.flag
            yield (
                published.InitiativeFlagged(
                    **initiative_fields(i),
                    standard_number=f.standard.number,
                    standard_edition=f.standard.edition,
                    standard_status=f.standard_status,
                    reason=f.reason,
                    flagged_at=e.at,
                ),
                everyone,
            )
        case _:
            raise TypeError(f"no published event for {type(e).__name__} of an initiative")


# --- suppliers ------------------------------------------------------------------------------------------


def _supplier_fields(s: Supplier) -> dict[str, Any]:
    return {
        "supplier_id": s.id,
        "organisation_id": s.organisation_id,
        "name": s.name,
        "scale": s.scale.value,
        "country_of_incorporation": s.country_of_incorporation,
        "screening": s.screening.value,
        "version": s.version,
    }


def supplier_events(s: Supplier, e: DomainEvent) -> Published:
    everyone = s.releasability
    match e:
        case Registered():
            yield (
                published.SupplierRegistered(
                    **_supplier_fields(s),
                    ultimate_parent=s.ultimate_parent,
                    ultimate_parent_country=s.ultimate_parent_country,
                    products=list(s.products),
                    registered_by=e.by,
                    registered_at=e.at,
                ),
                everyone,
            )
        case Screened():
            yield (
                published.SupplierScreened(
                    **_supplier_fields(s),
                    matches=list(s.matches),
                    lists_version=s.lists_version or "",
                    screened_at=e.at,
                ),
                everyone,
            )
            if e.for_adjudication:
                yield (
                    published.SupplierFlagged(
                        **_supplier_fields(s), matches=list(s.matches), flagged_at=e.at
                    ),
                    everyone,
                )
        case Cleared():
            yield (
                published.SupplierCleared(
                    **_supplier_fields(s),
                    mitigation=s.mitigation or "",
                    adjudicator=s.adjudicator or "",
                    cleared_at=e.at,
                ),
                everyone,
            )
        case Blocked():
            yield (
                published.SupplierBlocked(
                    **_supplier_fields(s),
                    reason=s.blocked_reason or "",
                    adjudicator=s.adjudicator or "",
                    blocked_at=e.at,
                ),
                everyone,
            )
        case _:
            raise TypeError(f"no published event for {type(e).__name__} of a supplier")


# --- demand signals -------------------------------------------------------------------------------------


def signal_events(s: DemandSignal, e: DomainEvent) -> Published:
    match e:
        case SignalPublished():
            yield (
                published.DemandSignalPublished(
                    signal_id=s.id,
                    nation=s.nation,
                    product=s.product,
                    capability_area=s.capability_area,
                    unit=s.unit,
                    firmness=s.firmness.value,
                    quantities=year_keys(s.quantities),
                    version=s.version,
                    published_by=e.by,
                    published_at=s.updated_at,
                ),
                s.releasability,
            )
        case _:
            raise TypeError(f"no published event for {type(e).__name__} of a demand signal")
