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
  (`domain.Disclosure`): no figures until the tender is published (`disclosure: withheld`), then the
  settled firm demand (`published`), a year only when at least k nations commit to it.
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

No releasability filtering happens here: callers export only what the reader may see.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time
from typing import Any

from icep.contracts.nations import ALLIES, PARTNERS
from icep.procurement.domain import (
    ACTIVE,
    FIRM,
    MIN_AGGREGATE_PARTICIPANTS,
    Award,
    CallOff,
    Change,
    Contract,
    Disclosure,
    Initiative,
    InitiativeStatus,
    Lot,
    Milestone,
    MilestoneStatus,
)

#: The OCDS version of every package (major.minor).
OCDS_VERSION = "1.1"
#: The lots extension (tender.lots, items.relatedLot, awards.relatedLots), declared in packages using it.
LOTS_EXTENSION = (
    "https://raw.githubusercontent.com/open-contracting-extensions/ocds_lots_extension/v1.1.5/extension.json"
)
#: The closed releaseTag codelist, less `compiled` (for compiled releases only).
RELEASE_TAGS = frozenset(
    {
        "planning",
        "planningUpdate",
        "tender",
        "tenderAmendment",
        "tenderUpdate",
        "tenderCancellation",
        "award",
        "awardUpdate",
        "awardCancellation",
        "contract",
        "contractUpdate",
        "contractAmendment",
        "implementation",
        "implementationUpdate",
        "contractTermination",
    }
)

_PLANNING_UPDATES = (
    "open",
    "join",
    "commit",
    "withdraw",
    "withdraw_amendment",
    "request_withdrawal",
    "approve_withdrawal",
    "refuse_withdrawal",
    "close_participation",
    "flagged",
)
#: Domain history action -> release tags (`tags_for` refines `flagged` and `cancel` by the initiative).
ACTION_TAGS: dict[str, tuple[str, ...]] = {
    "proposed": ("planning",),
    **{action: ("planningUpdate",) for action in _PLANNING_UPDATES},
    "publish_tender": ("tender",),
    "record_bid": ("tenderUpdate",),
    "award": ("award",),
    "sign_contract": ("contract",),
    "place_call_off": ("implementation",),
    "start_delivery": ("implementation",),
    "milestone_met": ("implementationUpdate",),
    "milestone_missed": ("implementationUpdate",),
    "close": ("contractTermination",),
    "cancel": ("tenderCancellation",),
}

_NATIONS = {
    "ALB": "Albania",
    "BEL": "Belgium",
    "BGR": "Bulgaria",
    "CAN": "Canada",
    "HRV": "Croatia",
    "CZE": "Czechia",
    "DNK": "Denmark",
    "EST": "Estonia",
    "FIN": "Finland",
    "FRA": "France",
    "DEU": "Germany",
    "GRC": "Greece",
    "HUN": "Hungary",
    "ISL": "Iceland",
    "ITA": "Italy",
    "LVA": "Latvia",
    "LTU": "Lithuania",
    "LUX": "Luxembourg",
    "MNE": "Montenegro",
    "NLD": "Netherlands",
    "MKD": "North Macedonia",
    "NOR": "Norway",
    "POL": "Poland",
    "PRT": "Portugal",
    "ROU": "Romania",
    "SVK": "Slovakia",
    "SVN": "Slovenia",
    "ESP": "Spain",
    "SWE": "Sweden",
    "TUR": "Türkiye",
    "GBR": "United Kingdom",
    "USA": "United States",
    "AUS": "Australia",
    "JPN": "Japan",
    "NZL": "New Zealand",
    "KOR": "Republic of Korea",
    "UKR": "Ukraine",
}
_ORGANISATIONS = {
    "NSPA": "NATO Support and Procurement Agency (NSPA)",
    "NATO": "North Atlantic Treaty Organization (NATO)",
    "EU": "European Union",
}
#: Roles in the partyRole codelist's order, so a party's roles come out the same every time.
_ROLE_ORDER = ("buyer", "procuringEntity", "supplier", "tenderer", "interestedParty")
_PLANNING_STATES = frozenset(
    {InitiativeStatus.PROPOSED, InitiativeStatus.OPEN, InitiativeStatus.PARTICIPATION_CLOSED}
)
_OMIT_WHEN_MERGED = frozenset({"id", "date", "tag"})
_WHOLE_LIST_MERGE = frozenset({"additionalIdentifiers", "additionalClassifications"})

Release = dict[str, Any]
Suppliers = Mapping[str, tuple[str, str]]


# --- tags -----------------------------------------------------------------------------------------------


def tags_for(action: str, initiative: Initiative | None = None) -> list[str]:
    """The release tags for a domain history action. Given the initiative as it is after the change, a
    flag raised once the tender is published is a `tenderUpdate`, and a cancellation is a
    `planningUpdate` before any tender, a `tenderCancellation` after one, plus an `awardCancellation` when
    awards fall with it."""
    try:
        tags = list(ACTION_TAGS[action])
    except KeyError:
        raise ValueError(f"no OCDS release tags for the action {action!r}") from None
    if initiative is None:
        return tags
    if action == "flagged" and initiative.tender is not None:
        return ["tenderUpdate"]
    if action == "cancel":
        if initiative.tender is None:
            return ["planningUpdate"]
        if initiative.awards:
            return ["tenderCancellation", "awardCancellation"]
    return tags


# --- releases -------------------------------------------------------------------------------------------


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
    out["parties"] = _initiative_parties(initiative, suppliers or {})
    buyer = _single_buyer(initiative)
    if buyer is not None:
        out["buyer"] = _ref(buyer)
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
        date=_aware(last.at),
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
    procuring = _party_id(initiative.procuring_entity)
    buyer = _party_id(call_off.buyer)
    supplier = _supplier_party_id(contract.supplier_id)

    parties = _Parties()
    parties.add(procuring, _name(initiative.procuring_entity), "procuringEntity", _country(initiative))
    parties.add(buyer, _name(call_off.buyer), "buyer", _country_of(call_off.buyer))
    parties.add(supplier, supplier_name, "supplier", scale=scale)

    title = call_off_title(initiative, call_off)
    value = _value(call_off.value, call_off.currency)
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
            "date": _dt(call_off.placed_at),
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
            "period": {"startDate": _dt(call_off.placed_at), "endDate": _day_end(call_off.delivery_by)},
            "value": value,
            "dateSigned": _dt(call_off.placed_at),
            "items": [item],
            "implementation": {
                "milestones": [
                    {
                        "id": "delivery",
                        "title": "Delivery",
                        "type": "delivery",
                        "description": f"Delivery of {call_off.quantity} (unit: {initiative.item.unit}).",
                        "dueDate": _day_end(call_off.delivery_by),
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
    return f"{initiative.title}: call-off {call_off.id} for {_name(call_off.buyer)}"


# --- packages and records -------------------------------------------------------------------------------


def release_package(
    releases: Sequence[Release], *, uri: str, published_date: datetime, publisher: str = "ICEP"
) -> dict[str, Any]:
    """An OCDS release package of releases (of one or more processes)."""
    if not releases:
        raise ValueError("a release package holds at least one release")
    seen: set[tuple[str, str]] = set()
    for r in releases:
        key = (r["ocid"], r["id"])
        if key in seen:
            raise ValueError(f"release {r['id']} of {r['ocid']} is in the package twice")
        seen.add(key)
    return {
        **_package_header(releases, uri, published_date, publisher),
        "releases": [copy.deepcopy(r) for r in releases],
    }


def record_package(
    ocid: str,
    releases: Sequence[Release],
    *,
    uri: str,
    published_date: datetime,
    publisher: str = "ICEP",
) -> dict[str, Any]:
    """An OCDS record package with the one record of `ocid`: its releases, embedded in date order, and
    the compiled release."""
    if not releases:
        raise ValueError("a record holds at least one release")
    others = sorted({r["ocid"] for r in releases if r["ocid"] != ocid})
    if others:
        raise ValueError(f"releases of other processes {others} in the record of {ocid}")
    ordered = _in_date_order(releases)
    if len({r["id"] for r in ordered}) != len(ordered):
        raise ValueError(f"release ids repeat in the record of {ocid}")
    record = {
        "ocid": ocid,
        "releases": [copy.deepcopy(r) for r in ordered],
        "compiledRelease": compile_release(ordered),
    }
    return {**_package_header(ordered, uri, published_date, publisher), "records": [record]}


def compile_release(releases: Sequence[Release]) -> Release:
    """The compiled release of one process, by the OCDS merge rules: releases merged in date order;
    objects merged by key; arrays of objects with `id` merged by id; other arrays (and those marked
    `wholeListMerge`, and arrays inside ICEP's own `icep*` fields) replaced; a null removes a field.
    `id`, `date` and `tag` are not merged: the compiled release has the id `<ocid>-compiled`, the date of
    the latest release and the tag `compiled`."""
    if not releases:
        raise ValueError("nothing to compile")
    ordered = _in_date_order(releases)
    ocids = {r["ocid"] for r in ordered}
    if len(ocids) != 1:
        raise ValueError(f"a compiled release is of one process, not {sorted(ocids)}")
    merged: dict[str, Any] = {}
    for r in ordered:
        _merge(merged, {k: v for k, v in r.items() if k not in _OMIT_WHEN_MERGED}, icep=False)
    ocid = ordered[0]["ocid"]
    body = {k: v for k, v in merged.items() if k != "ocid"}
    return {"ocid": ocid, "id": f"{ocid}-compiled", "date": ordered[-1]["date"], "tag": ["compiled"], **body}


# --- building blocks ------------------------------------------------------------------------------------


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
        "date": _dt(_aware(date, strict=True)),
        "tag": list(dict.fromkeys(tags)),
        "initiationType": "tender",
        "language": "en",
    }


def _package_header(
    releases: Sequence[Release], uri: str, published_date: datetime, publisher: str
) -> dict[str, Any]:
    out: dict[str, Any] = {"uri": uri, "version": OCDS_VERSION}
    if any(_uses_lots(r) for r in releases):
        out["extensions"] = [LOTS_EXTENSION]
    out["publisher"] = {"name": publisher}
    out["publishedDate"] = _dt(_aware(published_date, strict=True))
    return out


def _uses_lots(r: Release) -> bool:
    return "lots" in r.get("tender", {}) or any("relatedLots" in a for a in r.get("awards", ()))


def _in_date_order(releases: Sequence[Release]) -> list[Release]:
    return sorted(releases, key=lambda r: datetime.fromisoformat(r["date"]))


def _merge(into: dict[str, Any], new: Mapping[str, Any], *, icep: bool) -> None:
    for key, value in new.items():
        in_icep = icep or key.startswith("icep")
        if value is None:
            into.pop(key, None)
        elif isinstance(value, Mapping):
            target = into.get(key)
            if not isinstance(target, dict):
                target = into[key] = {}
            _merge(target, value, icep=in_icep)
        elif isinstance(value, list):
            into[key] = _merge_list(into.get(key), value, whole=in_icep or key in _WHOLE_LIST_MERGE)
        else:
            into[key] = value


def _merge_list(old: Any, new: list[Any], *, whole: bool) -> list[Any]:
    if whole or not all(isinstance(x, Mapping) and "id" in x for x in new):
        return copy.deepcopy(new)
    by_id: dict[Any, dict[str, Any]] = {}
    if isinstance(old, list):
        for x in old:
            if isinstance(x, dict) and "id" in x:
                by_id[x["id"]] = x
    for x in new:
        target = by_id.setdefault(x["id"], {})
        _merge(target, x, icep=False)
    return list(by_id.values())


class _Parties:
    """Parties by id, each with its roles (in codelist order) and details."""

    def __init__(self) -> None:
        self._parties: dict[str, dict[str, Any]] = {}

    def add(
        self, party_id: str, name: str | None, role: str, country: str | None = None, scale: str = ""
    ) -> None:
        p = self._parties.setdefault(party_id, {"id": party_id, "roles": set()})
        if name and "name" not in p:
            p["name"] = name
        p["roles"].add(role)
        if country:
            p["country"] = country
        if scale:
            p["scale"] = scale

    def ref(self, party_id: str) -> dict[str, Any]:
        p = self._parties[party_id]
        return {"id": party_id, **({"name": p["name"]} if "name" in p else {})}

    def build(self) -> list[dict[str, Any]]:
        out = []
        for p in self._parties.values():
            party: dict[str, Any] = {"id": p["id"]}
            if "name" in p:
                party["name"] = p["name"]
            if "country" in p:
                party["address"] = {"countryName": p["country"]}
            party["roles"] = [r for r in _ROLE_ORDER if r in p["roles"]]
            if "scale" in p:
                party["details"] = {"scale": p["scale"]}
            out.append(party)
        return out


def _party_id(code: str) -> str:
    return (
        f"nation-{code}"
        if code in _NATIONS or (code in ALLIES | PARTNERS and code != "EU")
        else f"org-{code}"
    )


def _supplier_party_id(supplier_id: str) -> str:
    return f"supplier-{supplier_id}"


def _name(code: str) -> str:
    return _NATIONS.get(code) or _ORGANISATIONS.get(code) or code


def _country_of(code: str) -> str | None:
    return _NATIONS.get(code)


def _country(initiative: Initiative) -> str | None:
    return _country_of(initiative.procuring_entity)


def _ref(party: dict[str, Any]) -> dict[str, Any]:
    return {"id": party["id"], **({"name": party["name"]} if "name" in party else {})}


def _collect_parties(initiative: Initiative, suppliers: Suppliers) -> _Parties:
    parties = _Parties()
    pe = initiative.procuring_entity
    parties.add(_party_id(pe), _name(pe), "procuringEntity", _country_of(pe))
    for p in sorted(initiative.participations, key=lambda x: x.nation):
        role = "buyer" if p.status in ACTIVE else "interestedParty"
        parties.add(_party_id(p.nation), _name(p.nation), role, _country_of(p.nation))
    awarded = {a.supplier_id: a.supplier_name for a in initiative.awards}
    bidders = {b.supplier_id for b in initiative.bids}
    for supplier_id in sorted(awarded.keys() | bidders):
        name, scale = suppliers.get(supplier_id, (awarded.get(supplier_id, ""), ""))
        party = _supplier_party_id(supplier_id)
        if supplier_id in bidders:
            parties.add(party, name, "tenderer", scale=scale)
        if supplier_id in awarded:
            parties.add(party, name, "supplier", scale=scale)
    return parties


def _initiative_parties(initiative: Initiative, suppliers: Suppliers) -> list[dict[str, Any]]:
    return _collect_parties(initiative, suppliers).build()


def _single_buyer(initiative: Initiative) -> dict[str, Any] | None:
    """The one buyer of a single-buyer process, once its buyers are settled (participation can no longer
    change from tendering on); None otherwise (a joint procurement's buyers are its `buyer` parties)."""
    if initiative.status in _PLANNING_STATES:
        return None
    active = [p for p in initiative.participations if p.status in ACTIVE]
    if len(active) != 1:
        return None
    return {"id": _party_id(active[0].nation), "name": _name(active[0].nation)}


def _planning(initiative: Initiative, min_contributors: int) -> dict[str, Any]:
    shown = initiative.demand_for(None, min_contributors)
    demand = shown.demand
    years = sorted(set(demand.indicative) | set(demand.firm) | set(demand.funded))
    unit = initiative.item.unit
    lead, procuring = _name(initiative.lead_nation), _name(initiative.procuring_entity)
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
        "dueDate": _day_end(initiative.participation_deadline),
        "status": "scheduled",
    }
    closed = _last_change(initiative, "close_participation")
    if closed is not None:
        deadline.update(status="met", dateMet=_dt(closed.at), dateModified=_dt(closed.at))
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
    parties = _collect_parties(initiative, suppliers)
    tender: dict[str, Any] = {"id": initiative.ocid, "title": initiative.title}
    if initiative.description:
        tender["description"] = initiative.description
    tender["status"] = _tender_status(initiative)
    tender["procuringEntity"] = parties.ref(_party_id(initiative.procuring_entity))
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
        tender["tenderPeriod"] = {"startDate": _dt(t.published_at), "endDate": _day_end(t.period_end)}
        tenderers = sorted({b.supplier_id for b in initiative.bids})
        tender["numberOfTenderers"] = len(tenderers)
        if tenderers:
            tender["tenderers"] = [parties.ref(_supplier_party_id(s)) for s in tenderers]
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
            document["datePublished"] = _dt(cancelled.at)
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
                "date": _dt(f.at),
            }
            for f in initiative.flags
        ]
    return tender


def _lots_value(lots: Sequence[Lot]) -> dict[str, Any] | None:
    currencies = {lot.currency for lot in lots}
    if any(lot.estimated_value is None for lot in lots) or len(currencies) != 1 or None in currencies:
        return None
    return _value(sum(lot.estimated_value or 0.0 for lot in lots), str(currencies.pop()))


def _lot(initiative: Initiative, lot: Lot) -> dict[str, Any]:
    out: dict[str, Any] = {"id": lot.id, "title": lot.title, "status": _lot_status(initiative, lot)}
    if lot.estimated_value is not None and lot.currency:
        out["value"] = _value(lot.estimated_value, lot.currency)
    return out


def _award(initiative: Initiative, award: Award) -> dict[str, Any]:
    lot = _find_lot(initiative, award.lot_id)
    supplier = _supplier_party_id(award.supplier_id)
    return {
        "id": award.id,
        "title": lot.title if lot else f"Lot {award.lot_id}",
        "status": "cancelled" if initiative.status is InitiativeStatus.CANCELLED else "active",
        "date": _dt(award.date),
        "value": _value(award.value, award.currency),
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
    out["period"] = {"startDate": _day_start(contract.period_start), "endDate": _day_end(contract.period_end)}
    out["value"] = _value(contract.value, contract.currency)
    out["dateSigned"] = _dt(contract.signed_at)
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
    out["dueDate"] = _day_end(m.due)
    out["status"] = _MILESTONE_STATUS[m.status]
    if m.met_on is not None:
        out["dateMet"] = _day_start(m.met_on)
    if m.status is not MilestoneStatus.SCHEDULED:
        recorded = _last_change(initiative, f"milestone_{m.status.value}", note=m.id)
        if recorded is not None:
            out["dateModified"] = _dt(recorded.at)
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


def _value(amount: float, currency: str) -> dict[str, Any]:
    return {"amount": amount, "currency": currency}


def _aware(value: datetime, *, strict: bool = False) -> datetime:
    """A timezone-aware datetime: a naive one from storage is taken as UTC; one given by a caller
    (`strict`) must carry its timezone."""
    if value.tzinfo is None or value.utcoffset() is None:
        if strict:
            raise ValueError("an OCDS date carries its timezone")
        return value.replace(tzinfo=UTC)
    return value


def _dt(value: datetime) -> str:
    return _aware(value).astimezone(UTC).isoformat().replace("+00:00", "Z")


def _day_start(day: date) -> str:
    return _dt(datetime.combine(day, time.min, UTC))


def _day_end(day: date) -> str:
    return _dt(datetime.combine(day, time(23, 59, 59), UTC))


__all__ = [
    "ACTION_TAGS",
    "LOTS_EXTENSION",
    "OCDS_VERSION",
    "RELEASE_TAGS",
    "call_off_release",
    "call_off_title",
    "compile_release",
    "latest_release",
    "record_package",
    "release",
    "release_package",
    "tags_for",
]
