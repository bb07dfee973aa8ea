"""The Open Contracting Data Standard (OCDS 1.1.5) export of joint procurement initiatives: plain Python.

An initiative is one contracting process (its `ocid`). Each release is a *full snapshot* of the process at
one moment, tagged by stage (`tags_for` maps a domain change to release tags); a record compiles an
ocid's releases by the OCDS merge rules. A call-off under a framework contract is a process of its own,
whose release points to the framework's ocid with `relatedProcesses.relationship = ["framework"]`.

Mapping, in short:

- parties: the procuring entity (the lead nation, or NSPA) as `procuringEntity`; every nation with an
  active participation (joined, committed, or asking to withdraw) as `buyer`; a nation that withdrew stays
  a party as `interestedParty`; bidders as `tenderer`, awarded suppliers as `supplier` (scale in
  `details.scale`). Ids are stable: `nation-DEU`, `org-NSPA`, `supplier-<id>`. The top-level `buyer` is
  given for a single-buyer process only, once its buyers can no longer change (from tendering on), and
  always for a call-off (one nation).
- planning: a `rationale`, the participation deadline as a `preProcurement` milestone, and the aggregated
  demand per year under `planning.icepDemand` (ICEP's own field), as published to every reader
  (`initiatives.parts.Disclosure`): no figures until the tender is published (`disclosure: withheld`),
  then the settled firm demand (`published`), a year only when at least k nations commit to it.
- tender: status `planning` until the tender is published, `active` while tendering, `complete` after the
  award, `cancelled` when cancelled. Items are numbered "1".."n": before the tender item "1" is the whole
  planned quantity; once published, item *n* is lot *n* (`relatedLot`, with `tender.lots`, from the OCDS
  lots extension). Required standards are the `eligibilityCriteria` (and `tender.icepRequiredStandards`),
  flags on them `tender.icepStandardFlags`; a cancellation carries a `cancellationDetails` document.
- awards and contracts, with delivery milestones under `contracts.implementation.milestones`
  (scheduled / met / notMet). A framework contract lists its call-offs' processes in its own
  `relatedProcesses` (scheme `ocid`, without a `relationship`: the relatedProcess codelist has no code
  for a framework pointing to its call-offs; the call-off's release carries `framework`).

The snapshots are built so that nothing once published disappears from a later one (OCDS merging cannot
remove an array entry): hence the compiled release of an ocid equals its latest snapshot. Arrays inside
ICEP's own `icep*` fields merge as whole lists.

No releasability filtering happens here: callers export only what the reader may see."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from icep.procurement.initiatives.model import Initiative
from icep.procurement.initiatives.parts import (
    ACTIVE,
    FIRM,
    MIN_AGGREGATE_PARTICIPANTS,
    Award,
    CallOff,
    Contract,
    Disclosure,
    InitiativeStatus,
    Lot,
    Milestone,
    MilestoneStatus,
)
from icep.procurement.ocds.formats import Release, Suppliers, aware, day_end, day_start, money, timestamp
from icep.procurement.ocds.parties import (
    Parties,
    collect_parties,
    country_of,
    initiative_country,
    initiative_parties,
    name_of,
    party_id_of,
    party_ref,
    supplier_party_id,
)
from icep.procurement.ocds.tags import RELEASE_TAGS, tags_for
from icep.procurement.rules import Change

_PLANNING_STATES = frozenset(
    {InitiativeStatus.PROPOSED, InitiativeStatus.OPEN, InitiativeStatus.PARTICIPATION_CLOSED}
)


def release(
    initiative: Initiative,
    tags: Sequence[str],
    *,
    release_id: str,
    date: datetime,
    suppliers: Suppliers | None = None,
    min_contributors: int = MIN_AGGREGATE_PARTICIPANTS,
) -> Release:
    """One complete OCDS release of the initiative's process as it is now: a full snapshot, published to
    every reader of the initiative, so its demand is the published one (`Disclosure`: none until the
    tender is published, then the firm demand of each year at least `min_contributors` nations commit to).

    `suppliers` maps a supplier id to its (name, scale) where known: names and scales of bidders and
    awarded suppliers (an award carries its supplier's name already)."""
    out: Release = _header(initiative.ocid, tags, release_id, date)
    out["parties"] = initiative_parties(initiative, suppliers or {})
    buyer = _single_buyer(initiative)
    if buyer is not None:
        out["buyer"] = party_ref(buyer)
    out["planning"] = _planning(initiative, min_contributors)
    out["tender"] = _tender(initiative, suppliers or {})
    if initiative.awards:
        out["awards"] = [_award(initiative, a) for a in initiative.awards]
    if initiative.contracts:
        out["contracts"] = [_contract(initiative, c) for c in initiative.contracts]
    return out


def latest_release(
    initiative: Initiative,
    *,
    suppliers: Suppliers | None = None,
    min_contributors: int = MIN_AGGREGATE_PARTICIPANTS,
) -> Release:
    """The release for the initiative's latest change: tagged by its action, dated when it happened, with
    the id `<ocid>-<version>` (unique across processes, as every change bumps the version)."""
    last = initiative.history[-1]
    return release(
        initiative,
        tags_for(last.action, initiative),
        release_id=f"{initiative.ocid}-{initiative.version}",
        date=aware(last.at),
        suppliers=suppliers,
        min_contributors=min_contributors,
    )


def call_off_release(
    initiative: Initiative,
    call_off: CallOff,
    *,
    release_id: str,
    date: datetime,
    suppliers: Suppliers | None = None,
) -> Release:
    """The first release of a call-off's own process (its `ocid`): the call-off is awarded to the
    framework contract's supplier and is a contract for one buyer nation, linked to the framework
    initiative's process by `relatedProcesses` with the relationship `framework`."""
    contract = next((c for c in initiative.contracts if c.id == call_off.contract_id), None)
    if contract is None:
        raise ValueError(f"no contract {call_off.contract_id} in initiative {initiative.id}")
    award = next((a for a in initiative.awards if a.id == contract.award_id), None)
    if award is None:
        raise ValueError(f"no award {contract.award_id} in initiative {initiative.id}")
    known = suppliers or {}
    supplier_name, scale = known.get(contract.supplier_id, (award.supplier_name, ""))
    procuring = party_id_of(initiative.procuring_entity)
    buyer = party_id_of(call_off.buyer)
    supplier = supplier_party_id(contract.supplier_id)

    parties = Parties()
    parties.add(
        procuring, name_of(initiative.procuring_entity), "procuringEntity", initiative_country(initiative)
    )
    parties.add(buyer, name_of(call_off.buyer), "buyer", country_of(call_off.buyer))
    parties.add(supplier, supplier_name, "supplier", scale=scale)

    title = call_off_title(initiative, call_off)
    value = money(call_off.value, call_off.currency)
    item = _item(initiative, "1", call_off.quantity)
    out: Release = _header(call_off.ocid, ("award", "contract"), release_id, date)
    out["parties"] = parties.build()
    out["buyer"] = parties.ref(buyer)
    out["tender"] = {
        "id": call_off.ocid,
        "title": title,
        "status": "complete",
        "procuringEntity": parties.ref(procuring),
        "items": [item],
        "mainProcurementCategory": "goods",
    }
    out["awards"] = [
        {
            "id": call_off.id,
            "title": title,
            "status": "active",
            "date": timestamp(call_off.placed_at),
            "value": value,
            "suppliers": [parties.ref(supplier)],
            "items": [item],
        }
    ]
    out["contracts"] = [
        {
            "id": call_off.id,
            "awardID": call_off.id,
            "title": title,
            "description": f"Call-off under framework contract {contract.id} of {initiative.ocid}.",
            "status": "active",
            "period": {"startDate": timestamp(call_off.placed_at), "endDate": day_end(call_off.delivery_by)},
            "value": value,
            "dateSigned": timestamp(call_off.placed_at),
            "items": [item],
            "implementation": {
                "milestones": [
                    {
                        "id": "delivery",
                        "title": "Delivery",
                        "type": "delivery",
                        "description": f"Delivery of {call_off.quantity} (unit: {initiative.item.unit}).",
                        "dueDate": day_end(call_off.delivery_by),
                        "status": "scheduled",
                    }
                ]
            },
        }
    ]
    out["relatedProcesses"] = [
        {
            "id": "framework",
            "relationship": ["framework"],
            "title": initiative.title,
            "scheme": "ocid",
            "identifier": initiative.ocid,
        }
    ]
    return out


def call_off_title(initiative: Initiative, call_off: CallOff) -> str:
    """A call-off process's title (its `tender.title`, and the title the framework's link to it shows)."""
    return f"{initiative.title}: call-off {call_off.id} for {name_of(call_off.buyer)}"


def _header(ocid: str, tags: Sequence[str], release_id: str, date: datetime) -> Release:
    if not tags:
        raise ValueError("a release has at least one tag")
    wrong = [t for t in tags if t not in RELEASE_TAGS]
    if wrong:
        raise ValueError(f"not release tags: {wrong}")
    if not release_id:
        raise ValueError("a release has an id")
    return {
        "ocid": ocid,
        "id": release_id,
        "date": timestamp(aware(date, strict=True)),
        "tag": list(dict.fromkeys(tags)),
        "initiationType": "tender",
        "language": "en",
    }


def _single_buyer(initiative: Initiative) -> dict[str, Any] | None:
    """The one buyer of a single-buyer process, once its buyers are settled (participation can no longer
    change from tendering on); None otherwise (a joint procurement's buyers are its `buyer` parties)."""
    if initiative.status in _PLANNING_STATES:
        return None
    active = [p for p in initiative.participations if p.status in ACTIVE]
    if len(active) != 1:
        return None
    return {"id": party_id_of(active[0].nation), "name": name_of(active[0].nation)}


def _planning(initiative: Initiative, min_contributors: int) -> dict[str, Any]:
    shown = initiative.demand_for(None, min_contributors)
    demand = shown.demand
    years = sorted(set(demand.indicative) | set(demand.firm) | set(demand.funded))
    unit = initiative.item.unit
    lead, procuring = name_of(initiative.lead_nation), name_of(initiative.procuring_entity)
    by = f"led and procured by {lead}" if lead == procuring else f"led by {lead}, procured by {procuring}"
    rationale = (
        f"Joint procurement of {initiative.item.product} ({initiative.capability_area}), {by}. "
        f"Participating nations: {demand.participants}. "
    )
    icep_demand: dict[str, Any] = {
        "unit": unit,
        "participants": demand.participants,
        "committed": sum(1 for p in initiative.participations if p.status in FIRM),
        "disclosure": shown.disclosure.value,
    }
    if shown.disclosure is Disclosure.WITHHELD:
        rationale += "The aggregated demand is published once it is settled, when the tender is published."
    elif not demand.firm:
        rationale += (
            f"No year has firm commitments of at least {min_contributors} nations: no demand figure is"
            " published."
        )
    else:
        firm = sum(demand.firm.values())
        rationale += (
            f"Firm demand in {unit}: {firm} (a year counted only when at least {min_contributors} nations"
            " commit to it)."
        )
        icep_demand["totals"] = {"firm": firm}
        icep_demand["years"] = [{"year": y, "firm": demand.firm[y]} for y in years]
    if initiative.description:
        rationale = f"{initiative.description} {rationale}"
    deadline: dict[str, Any] = {
        "id": "participation-deadline",
        "title": "Participation deadline",
        "type": "preProcurement",
        "description": "Nations join with indicative quantities and commit firm and funded ones until then.",
        "dueDate": day_end(initiative.participation_deadline),
        "status": "scheduled",
    }
    closed = _last_change(initiative, "close_participation")
    if closed is not None:
        deadline.update(status="met", dateMet=timestamp(closed.at), dateModified=timestamp(closed.at))
    return {"rationale": rationale, "milestones": [deadline], "icepDemand": icep_demand}


def _tender_status(initiative: Initiative) -> str:
    s = initiative.status
    if s is InitiativeStatus.CANCELLED:
        return "cancelled"
    if s in _PLANNING_STATES:
        return "planning"
    if s is InitiativeStatus.TENDERING:
        return "active"
    return "complete"


def _item(
    initiative: Initiative, item_id: str, quantity: int | None, lot_id: str | None = None
) -> dict[str, Any]:
    it = initiative.item
    out: dict[str, Any] = {
        "id": item_id,
        "description": f"{it.product}: {it.description}" if it.description else it.product,
    }
    if it.classification_id:
        out["classification"] = {
            "scheme": it.classification_scheme,
            "id": it.classification_id,
            "description": it.product,
        }
    if quantity is not None:
        out["quantity"] = quantity
    out["unit"] = {"name": it.unit}
    if lot_id is not None:
        out["relatedLot"] = lot_id
    return out


def _lot_status(initiative: Initiative, lot: Lot) -> str:
    status = _tender_status(initiative)
    if status == "complete" and not any(a.lot_id == lot.id for a in initiative.awards):
        return "unsuccessful"
    return status


def _tender(initiative: Initiative, suppliers: Suppliers) -> dict[str, Any]:
    parties = collect_parties(initiative, suppliers)
    tender: dict[str, Any] = {"id": initiative.ocid, "title": initiative.title}
    if initiative.description:
        tender["description"] = initiative.description
    tender["status"] = _tender_status(initiative)
    tender["procuringEntity"] = parties.ref(party_id_of(initiative.procuring_entity))
    t = initiative.tender
    if t is None:
        # The planned quantity is the aggregated demand, withheld until the tender is published (then the
        # items are the lots): see `Disclosure`.
        tender["items"] = [_item(initiative, "1", None)]
    else:
        tender["items"] = [_item(initiative, str(n), lot.quantity, lot.id) for n, lot in enumerate(t.lots, 1)]
        value = _lots_value(t.lots)
        if value is not None:
            tender["value"] = value
    tender["mainProcurementCategory"] = "goods"
    if initiative.required_standards:
        tender["eligibilityCriteria"] = "Verified, unexpired conformance with " + ", ".join(
            s.label for s in initiative.required_standards
        )
    if t is not None:
        tender["tenderPeriod"] = {"startDate": timestamp(t.published_at), "endDate": day_end(t.period_end)}
        tenderers = sorted({b.supplier_id for b in initiative.bids})
        tender["numberOfTenderers"] = len(tenderers)
        if tenderers:
            tender["tenderers"] = [parties.ref(supplier_party_id(s)) for s in tenderers]
        tender["lots"] = [_lot(initiative, lot) for lot in t.lots]
    if initiative.status is InitiativeStatus.CANCELLED:
        cancelled = _last_change(initiative, "cancel")
        document: dict[str, Any] = {
            "id": "cancellation",
            "documentType": "cancellationDetails",
            "title": "Cancellation",
            "description": initiative.cancellation_reason or (cancelled.note if cancelled else ""),
        }
        if cancelled is not None:
            document["datePublished"] = timestamp(cancelled.at)
        tender["documents"] = [document]
    if initiative.required_standards:
        tender["icepRequiredStandards"] = [
            {"number": s.number, "edition": s.edition} for s in initiative.required_standards
        ]
    if initiative.flags:
        tender["icepStandardFlags"] = [
            {
                "number": f.standard.number,
                "edition": f.standard.edition,
                "standardStatus": f.standard_status,
                "reason": f.reason,
                "date": timestamp(f.at),
            }
            for f in initiative.flags
        ]
    return tender


def _lots_value(lots: Sequence[Lot]) -> dict[str, Any] | None:
    currencies = {lot.currency for lot in lots}
    if any(lot.estimated_value is None for lot in lots) or len(currencies) != 1 or None in currencies:
        return None
    return money(sum(lot.estimated_value or 0.0 for lot in lots), str(currencies.pop()))


def _lot(initiative: Initiative, lot: Lot) -> dict[str, Any]:
    out: dict[str, Any] = {"id": lot.id, "title": lot.title, "status": _lot_status(initiative, lot)}
    if lot.estimated_value is not None and lot.currency:
        out["value"] = money(lot.estimated_value, lot.currency)
    return out


def _award(initiative: Initiative, award: Award) -> dict[str, Any]:
    lot = _find_lot(initiative, award.lot_id)
    supplier = supplier_party_id(award.supplier_id)
    return {
        "id": award.id,
        "title": lot.title if lot else f"Lot {award.lot_id}",
        "status": "cancelled" if initiative.status is InitiativeStatus.CANCELLED else "active",
        "date": timestamp(award.date),
        "value": money(award.value, award.currency),
        "suppliers": [{"id": supplier, "name": award.supplier_name}],
        "items": [_item(initiative, "1", award.quantity, award.lot_id)],
        "relatedLots": [award.lot_id],
    }


def _contract(initiative: Initiative, contract: Contract) -> dict[str, Any]:
    award = next((a for a in initiative.awards if a.id == contract.award_id), None)
    out: dict[str, Any] = {"id": contract.id, "awardID": contract.award_id}
    if contract.framework:
        out["description"] = (
            "Framework agreement: each call-off under it is a contracting process of its own."
        )
    out["status"] = "terminated" if initiative.status is InitiativeStatus.CLOSED else "active"
    out["period"] = {"startDate": day_start(contract.period_start), "endDate": day_end(contract.period_end)}
    out["value"] = money(contract.value, contract.currency)
    out["dateSigned"] = timestamp(contract.signed_at)
    if award is not None:
        out["items"] = [_item(initiative, "1", award.quantity, award.lot_id)]
    if contract.milestones:
        out["implementation"] = {"milestones": [_milestone(initiative, m) for m in contract.milestones]}
    call_offs = [c for c in initiative.call_offs if c.contract_id == contract.id]
    if call_offs:
        out["relatedProcesses"] = [
            {"id": c.id, "title": call_off_title(initiative, c), "scheme": "ocid", "identifier": c.ocid}
            for c in call_offs
        ]
    return out


_MILESTONE_STATUS = {
    MilestoneStatus.SCHEDULED: "scheduled",
    MilestoneStatus.MET: "met",
    MilestoneStatus.MISSED: "notMet",
}


def _milestone(initiative: Initiative, m: Milestone) -> dict[str, Any]:
    out: dict[str, Any] = {"id": m.id, "title": m.title, "type": "delivery"}
    description = (
        f"Delivery of {m.quantity} (unit: {initiative.item.unit})." if m.quantity is not None else ""
    )
    if m.status is MilestoneStatus.MISSED and m.reason:
        description = f"{description} Not met: {m.reason}".strip()
    if description:
        out["description"] = description
    out["dueDate"] = day_end(m.due)
    out["status"] = _MILESTONE_STATUS[m.status]
    if m.met_on is not None:
        out["dateMet"] = day_start(m.met_on)
    if m.status is not MilestoneStatus.SCHEDULED:
        recorded = _last_change(initiative, f"milestone_{m.status.value}", note=m.id)
        if recorded is not None:
            out["dateModified"] = timestamp(recorded.at)
    return out


def _find_lot(initiative: Initiative, lot_id: str) -> Lot | None:
    if initiative.tender is None:
        return None
    return next((lot for lot in initiative.tender.lots if lot.id == lot_id), None)


def _last_change(initiative: Initiative, action: str, note: str | None = None) -> Change | None:
    return next(
        (c for c in reversed(initiative.history) if c.action == action and (note is None or c.note == note)),
        None,
    )
