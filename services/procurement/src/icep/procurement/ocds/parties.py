"""OCDS parties of a process: nations and organisations by stable ids (`nation-DEU`, `org-NSPA`,
`supplier-<id>`), each with its roles in codelist order."""

from __future__ import annotations

from typing import Any

from icep.contracts.nations import ALLIES, PARTNERS
from icep.procurement.initiatives.model import Initiative
from icep.procurement.initiatives.parts import (
    ACTIVE,
)
from icep.procurement.ocds.formats import Suppliers

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


class Parties:
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


def party_id_of(code: str) -> str:
    return (
        f"nation-{code}"
        if code in _NATIONS or (code in ALLIES | PARTNERS and code != "EU")
        else f"org-{code}"
    )


def supplier_party_id(supplier_id: str) -> str:
    return f"supplier-{supplier_id}"


def name_of(code: str) -> str:
    return _NATIONS.get(code) or _ORGANISATIONS.get(code) or code


def country_of(code: str) -> str | None:
    return _NATIONS.get(code)


def initiative_country(initiative: Initiative) -> str | None:
    return country_of(initiative.procuring_entity)


def party_ref(party: dict[str, Any]) -> dict[str, Any]:
    return {"id": party["id"], **({"name": party["name"]} if "name" in party else {})}


def collect_parties(initiative: Initiative, suppliers: Suppliers) -> Parties:
    parties = Parties()
    pe = initiative.procuring_entity
    parties.add(party_id_of(pe), name_of(pe), "procuringEntity", country_of(pe))
    for p in sorted(initiative.participations, key=lambda x: x.nation):
        role = "buyer" if p.status in ACTIVE else "interestedParty"
        parties.add(party_id_of(p.nation), name_of(p.nation), role, country_of(p.nation))
    awarded = {a.supplier_id: a.supplier_name for a in initiative.awards}
    bidders = {b.supplier_id for b in initiative.bids}
    for supplier_id in sorted(awarded.keys() | bidders):
        name, scale = suppliers.get(supplier_id, (awarded.get(supplier_id, ""), ""))
        party = supplier_party_id(supplier_id)
        if supplier_id in bidders:
            parties.add(party, name, "tenderer", scale=scale)
        if supplier_id in awarded:
            parties.add(party, name, "supplier", scale=scale)
    return parties


def initiative_parties(initiative: Initiative, suppliers: Suppliers) -> list[dict[str, Any]]:
    return collect_parties(initiative, suppliers).build()
