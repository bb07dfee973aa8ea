"""`icep seed` (procurement part): a clearly labelled sample of joint procurement initiatives, suppliers and
demand signals, loaded through the API.

Everything goes through the gateway's public API with the development procurement clients
(deploy/dev-clients.toml), as a partner system would: NATO's procurement staff (for NSPA) lead the
initiatives; each nation's own procurement staff join, commit and publish its demand; Germany's register
the suppliers. Idempotent: it looks up what exists first (a supplier by its registering nation and
organisation id; an initiative by its lead, product and title; a nation's participation; the tender, bid,
award, contract and call-off of an initiative) and creates or advances only what is missing, so a second
run changes nothing. A record that exists but is not a sample (the same organisation id, or the same title
without the `[SAMPLE]` label) is left alone, and so is everything that would build on it.

Demand signals cannot be looked up (the API has no list of them), so they are published once, in the run
that proposes the sample 155 mm initiative they go with, and left alone afterwards.

*Sourced* (public reporting): NSPA's GEM-T contract with COMLOG for up to 1,000 missiles for DEU, NLD, ROU
and ESP, about USD 5.5 billion (Defense News, Jan 2024); NSPA's 155 mm frameworks of EUR 1.1 billion with
Nexter (KNDS) and Junghans for CAESAR and PzH 2000 ammunition, about 220,000 rounds, requested by 3 Allies
and open to the 9 that use those guns, lead times 24-36 months. Everything else is *synthetic* and says
so: the per-nation splits, years, prices, milestones, dates (relative to the day the seed runs), the
suppliers' records and the demand signals. Sample titles and names start with `[SAMPLE]`; invented details
carry `(synthetic)`. The supplier needing adjudication is left as a potential match for a person.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import httpx

from icep.platform.seeding import SeedReport, checked, gateway_client, if_match, today

LABEL = "[SAMPLE]"
SYNTHETIC = "(synthetic)"

#: Development-only secrets, published in deploy/dev-clients.toml; never valid in production.
DEV_SECRETS = {
    f"{n}-procurement": f"{n}-procurement-dev-secret" for n in ("nato", "deu", "fra", "pol", "nld", "ukr")
}
STAFF = {n.upper(): f"{n}-procurement" for n in ("deu", "fra", "pol", "nld", "ukr")}
NSPA = "nato-procurement"
NATO = "NATO"

GEMT = "GEM-T interceptor"
SHELL_155 = "155mm artillery round"

#: Sourced: up to 1,000 GEM-T for about USD 5.5 billion, so about USD 5.5 million a missile.
GEMT_UNIT_PRICE_USD = 5_500_000


def _wire(quantities: dict[int, int]) -> dict[str, int]:
    return {str(y): q for y, q in sorted(quantities.items())}


# --- suppliers ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleSupplier:
    key: str
    #: Who registers it: a nation's procurement staff (its client id).
    registrar: str
    body: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.body["name"])


SUPPLIERS: list[SampleSupplier] = [
    SampleSupplier(
        # Sourced: COMLOG holds NSPA's GEM-T contract. Its record here (ids, products) is a sample.
        "comlog",
        STAFF["DEU"],
        {
            "organisation_id": "SAMPLE-DE-COMLOG",
            "name": f"{LABEL} COMLOG (sample record)",
            "scale": "large",
            "country_of_incorporation": "DEU",
            "products": ["GEM-T"],
        },
    ),
    SampleSupplier(
        # Sourced: KNDS (Nexter) holds one of NSPA's 155 mm frameworks. Its record here is a sample.
        "knds",
        STAFF["DEU"],
        {
            "organisation_id": "SAMPLE-DE-KNDS",
            "name": f"{LABEL} KNDS Deutschland (sample record)",
            "scale": "large",
            "country_of_incorporation": "DEU",
            "products": ["SAMPLE-155-HE"],
        },
    ),
    SampleSupplier(
        "fuze",
        STAFF["DEU"],
        {
            "organisation_id": "SAMPLE-DE-FUZE-1",
            "name": f"{LABEL} Sample Zuender GmbH, fuze maker {SYNTHETIC}",
            "scale": "sme",
            "country_of_incorporation": "DEU",
            "ownership_chain": [
                {"name": f"Sample Familienholding {SYNTHETIC}", "country": "DEU", "share_percent": 100}
            ],
            "products": ["SAMPLE-FUZE-1"],
        },
    ),
    SampleSupplier(
        # Incorporated in DEU with an owner in a country of the service's default restricted countries:
        # a potential match, left for a person to adjudicate (clear with a mitigation, or block).
        "adjudication",
        STAFF["DEU"],
        {
            "organisation_id": "SAMPLE-DE-ENERGETICS-1",
            "name": f"{LABEL} Sample Energetik GmbH, propellant maker {SYNTHETIC}",
            "scale": "sme",
            "country_of_incorporation": "DEU",
            "ownership_chain": [
                {"name": f"Sample Beteiligungs AG {SYNTHETIC}", "country": "DEU", "share_percent": 65},
                {
                    "name": f"Sample Minsk Industrial Holding {SYNTHETIC}",
                    "country": "BLR",
                    "share_percent": 35,
                },
            ],
            "products": ["SAMPLE-PROPELLANT-M"],
        },
    ),
]


# --- initiatives ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleParticipant:
    """A nation's own procurement staff join with `indicative`, then commit `firm` (of which `funded`)."""

    nation: str
    indicative: dict[int, int]
    firm: dict[int, int] = field(default_factory=dict)
    funded: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SampleSignal:
    nation: str
    firmness: str
    quantities: dict[int, int]


@dataclass(frozen=True)
class SampleAward:
    """The tender (one lot), a bid and its award to a sample supplier, the framework contract (dates in days
    from the day the seed runs) and call-offs under it."""

    lot: dict[str, Any]
    supplier: str
    quantity: int
    value: float
    currency: str
    contract_days: int
    milestones: tuple[dict[str, Any], ...]
    call_offs: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class SampleInitiative:
    key: str
    #: The proposal, less the participation deadline (set from the day the seed runs).
    body: dict[str, Any]
    participants: tuple[SampleParticipant, ...]
    close_participation: bool = False
    award: SampleAward | None = None
    #: Published in the run that proposes the initiative (they cannot be looked up later).
    signals: tuple[SampleSignal, ...] = ()

    @property
    def title(self) -> str:
        return str(self.body["title"])

    @property
    def product(self) -> str:
        return str(self.body["item"]["product"])


DEADLINE_DAYS = 180
TENDER_DAYS = 60

GEMT_DEU = {2026: 50, 2027: 80, 2028: 90, 2029: 80}  # 300 (synthetic)
GEMT_NLD = {2026: 20, 2027: 30, 2028: 30, 2029: 20}  # 100 (synthetic)
GEMT_TOTAL = sum(GEMT_DEU.values()) + sum(GEMT_NLD.values())
GEMT_CALL_OFF = 50

GEMT_INITIATIVE = SampleInitiative(
    "gemt",
    {
        "title": f"{LABEL} GEM-T interceptors through NSPA: the DEU and NLD share {SYNTHETIC}",
        "description": (
            "Sourced: NSPA's contract with COMLOG for up to 1,000 GEM-T missiles for DEU, NLD, ROU and ESP,"
            " about USD 5.5 billion (Defense News, Jan 2024). This sample carries only the DEU and NLD share:"
            f" the per-nation split, years, prices, dates and milestones are invented {SYNTHETIC}."
        ),
        "item": {"product": GEMT, "unit": "missiles"},
        "capability_area": "air_missile_defence",
        "required_standards": [],
    },
    (
        SampleParticipant("DEU", GEMT_DEU, GEMT_DEU, GEMT_DEU),
        SampleParticipant("NLD", GEMT_NLD, GEMT_NLD, {2026: 20, 2027: 30}),
    ),
    close_participation=True,
    award=SampleAward(
        lot={
            "id": "lot-1",
            "title": f"{LABEL} GEM-T interceptors for DEU and NLD {SYNTHETIC}",
            "quantity": GEMT_TOTAL,
            "estimated_value": float(GEMT_TOTAL * GEMT_UNIT_PRICE_USD),
            "currency": "USD",
        },
        supplier="comlog",
        quantity=GEMT_TOTAL,
        value=float(GEMT_TOTAL * GEMT_UNIT_PRICE_USD),
        currency="USD",
        contract_days=4 * 365,
        milestones=(
            {
                "id": "m1",
                "title": f"{LABEL} First 100 missiles delivered {SYNTHETIC}",
                "days": 730,
                "quantity": 100,
            },
            {
                "id": "m2",
                "title": f"{LABEL} Remaining {GEMT_TOTAL - 100} missiles delivered {SYNTHETIC}",
                "days": 1460,
                "quantity": GEMT_TOTAL - 100,
            },
        ),
        call_offs=(
            {
                "buyer": "DEU",
                "quantity": GEMT_CALL_OFF,
                "value": float(GEMT_CALL_OFF * GEMT_UNIT_PRICE_USD),
                "currency": "USD",
                "days": 730,
            },
        ),
    ),
)

#: Synthetic split of about 220,000 rounds (the sourced size of NSPA's frameworks) over four Allies, plus
#: Ukraine's indicative demand, over 2027-2029 (the sourced lead times are 24-36 months).
SHELLS = {
    "DEU": {2027: 20_000, 2028: 25_000, 2029: 25_000},
    "FRA": {2027: 15_000, 2028: 20_000, 2029: 25_000},
    "POL": {2027: 15_000, 2028: 15_000, 2029: 20_000},
    "NLD": {2027: 10_000, 2028: 15_000, 2029: 15_000},
    "UKR": {2027: 5_000, 2028: 7_500, 2029: 7_500},
}

SHELLS_INITIATIVE = SampleInitiative(
    "155",
    {
        "title": f"{LABEL} 155 mm ammunition for CAESAR and PzH 2000 through NSPA, quantities {SYNTHETIC}",
        "description": (
            "Sourced: NSPA's 155 mm frameworks of EUR 1.1 billion with Nexter (KNDS) and Junghans for CAESAR"
            " and PzH 2000 ammunition, about 220,000 rounds, requested by 3 Allies and open to the 9 that use"
            " those guns; lead times 24-36 months. The nations' quantities, years and dates here are"
            f" invented {SYNTHETIC}."
        ),
        "item": {"product": SHELL_155, "unit": "rounds"},
        "capability_area": "munitions",
        "required_standards": [],
        "open_to_partners": ["UKR"],
    },
    (
        SampleParticipant("DEU", SHELLS["DEU"], {2027: 20_000, 2028: 25_000}, {2027: 20_000}),
        SampleParticipant(
            "FRA",
            SHELLS["FRA"],
            {2027: 15_000, 2028: 20_000, 2029: 25_000},
            {2027: 15_000, 2028: 10_000},
        ),
        SampleParticipant("POL", SHELLS["POL"]),
        SampleParticipant("NLD", SHELLS["NLD"]),
        SampleParticipant("UKR", SHELLS["UKR"]),
    ),
    signals=(
        SampleSignal("POL", "planned", {2027: 30_000, 2028: 40_000, 2029: 40_000}),
        SampleSignal("FRA", "funded", {2027: 25_000, 2028: 25_000}),
    ),
)

INITIATIVES: list[SampleInitiative] = [GEMT_INITIATIVE, SHELLS_INITIATIVE]

#: Where an initiative still takes participants' demand.
DEMAND_OPEN = ("open", "participation_closed")


def _on(days: int) -> str:
    return (today() + timedelta(days=days)).isoformat()


async def _pages(client: httpx.AsyncClient, url: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    next_url: str | None = url
    next_params: dict[str, Any] | None = {**params, "limit": 200}
    while next_url:
        page = checked(await client.get(next_url, params=next_params))
        found.extend(page["items"])
        next_url, next_params = page["next"], None
    return found


class _Seeder:
    def __init__(self, clients: dict[str, httpx.AsyncClient], report: SeedReport) -> None:
        self.clients = clients
        self.nspa = clients[NSPA]
        self.report = report
        #: Sample key -> the supplier as last read (absent when left alone).
        self.suppliers: dict[str, dict[str, Any]] = {}

    # -- suppliers

    async def supplier(self, sample: SampleSupplier) -> None:
        staff = self.clients[sample.registrar]
        org = sample.body["organisation_id"]
        nation = sample.registrar.split("-", 1)[0].upper()
        found = next(
            (
                s
                for s in await _pages(staff, "/v1/suppliers", {})
                if (s["nation"], s["organisation_id"]) == (nation, org)
            ),
            None,
        )
        if found is not None and not found["name"].startswith(LABEL):
            self.report.skipped.append(f"supplier {org}: exists and is not a sample record, left alone")
            return
        if found is None:
            found = checked(await staff.post("/v1/suppliers", json=sample.body))
            self.report.created.append(f"{sample.name} (screening: {found['screening']})")
        else:
            self.report.unchanged.append(sample.name)
        self.suppliers[sample.key] = found

    # -- initiatives

    async def initiative(self, sample: SampleInitiative) -> None:
        title = sample.title
        bare = title.removeprefix(LABEL).strip()
        listed = await _pages(self.nspa, "/v1/initiatives", {"product": sample.product, "lead_nation": NATO})
        found = next((i for i in listed if i["title"] == title), None)
        if found is None and any(i["title"] == bare for i in listed):
            self.report.skipped.append(f"{bare}: exists and is not a sample record, left alone")
            return
        steps: list[str] = []
        if found is None:
            body = {**sample.body, "participation_deadline": _on(DEADLINE_DAYS)}
            found = checked(await self.nspa.post("/v1/initiatives", json=body))
            self.report.created.append(title)
            await self.signals(sample)
        elif sample.signals:
            self.report.unchanged.extend(self._signal_name(s, sample.product) for s in sample.signals)
        i = found
        #: The initiative's own line comes before its participants'.
        slot = len(self.report.advanced)
        if i["status"] in ("cancelled", "closed"):
            self.report.skipped.append(f"{title}: {i['status']}, left alone")
            return
        if i["status"] == "proposed":
            i = await self._act(i, "open")
            steps.append("open")
        for p in sample.participants:
            i = await self.participant(i, p)
        active = any(x["status"] in ("joined", "committed") for x in i["participations"])
        if sample.close_participation and i["status"] == "open" and active:
            i = await self._act(i, "close-participation")
            steps.append("participation closed")
        if sample.award is not None:
            i = await self.tender_to_call_off(i, sample.award, steps)
        if steps:
            self.report.advanced.insert(slot, f"{title} -> {', '.join(steps)}")
        elif title not in self.report.created:
            self.report.unchanged.append(title)

    async def _act(
        self, i: dict[str, Any], action: str, body: Any = None, client: httpx.AsyncClient | None = None
    ) -> dict[str, Any]:
        return checked(
            await (client or self.nspa).post(
                f"/v1/initiatives/{i['id']}/{action}", json=body, headers=if_match(i)
            )
        )

    async def participant(self, i: dict[str, Any], sample: SampleParticipant) -> dict[str, Any]:
        name = f"{sample.nation} in {i['title']}"
        staff = self.clients[STAFF[sample.nation]]
        current = next((p for p in i["participations"] if p["nation"] == sample.nation), None)
        steps: list[str] = []
        if current is None:
            if i["status"] != "open" or date.fromisoformat(i["participation_deadline"]) < today():
                self.report.skipped.append(f"{name}: the initiative no longer takes participants")
                return i
            i = await self._act(i, "join", {"indicative": _wire(sample.indicative)}, staff)
            steps.append("joined")
            current = next(p for p in i["participations"] if p["nation"] == sample.nation)
        if sample.firm and current["status"] == "joined" and i["status"] in DEMAND_OPEN:
            i = await self._act(
                i, "commit", {"firm": _wire(sample.firm), "funded": _wire(sample.funded)}, staff
            )
            steps.append("committed")
        if steps:
            self.report.advanced.append(f"{name} -> {', '.join(steps)}")
        else:
            self.report.unchanged.append(name)
        return i

    async def tender_to_call_off(
        self, i: dict[str, Any], sample: SampleAward, steps: list[str]
    ) -> dict[str, Any]:
        """Tender, bid, award, framework contract and call-offs: each only when missing."""
        title = i["title"]
        if i["status"] == "participation_closed":
            i = await self._act(i, "tender", {"lots": [sample.lot], "tender_period_end": _on(TENDER_DAYS)})
            steps.append("tender published")
        supplier = self.suppliers.get(sample.supplier)
        if supplier is None:
            if i["status"] == "tendering":
                self.report.skipped.append(f"{title}: its bidder is not a sample record, no bid or award")
            return i
        lot = sample.lot["id"]
        if i["status"] == "tendering":
            if not any((b["lot_id"], b["supplier_id"]) == (lot, supplier["id"]) for b in i["bids"]):
                bid = {
                    "lot_id": lot,
                    "supplier_id": supplier["id"],
                    "quantity": sample.quantity,
                    "value": sample.value,
                    "currency": sample.currency,
                }
                i = await self._act(i, "bids", bid)
                steps.append("bid recorded")
            if not supplier["awardable"]:
                self.report.skipped.append(
                    f"{title}: {supplier['name']} is {supplier['screening']}, not awarded"
                )
                return i
            award = {
                "lot_id": lot,
                "supplier_id": supplier["id"],
                "quantity": sample.quantity,
                "value": sample.value,
                "currency": sample.currency,
            }
            i = await self._act(i, "award", {"awards": [award]})
            steps.append("awarded")
        mine = next((a for a in i["awards"] if a["supplier_id"] == supplier["id"]), None)
        if mine is None:
            return i
        if i["status"] in ("awarded", "contracted") and not any(
            c["award_id"] == mine["id"] for c in i["contracts"]
        ):
            contract = {
                "award_id": mine["id"],
                "framework": True,
                "value": sample.value,
                "currency": sample.currency,
                "period_start": _on(0),
                "period_end": _on(sample.contract_days),
                "milestones": [
                    {"id": m["id"], "title": m["title"], "due": _on(m["days"]), "quantity": m["quantity"]}
                    for m in sample.milestones
                ],
            }
            r = await self.nspa.post(
                f"/v1/initiatives/{i['id']}/contracts", json=contract, headers=if_match(i)
            )
            i = checked(r)
            steps.append("framework contract signed")
        framework = next((c for c in i["contracts"] if c["award_id"] == mine["id"]), None)
        if framework is None or i["status"] not in ("contracted", "delivering"):
            return i
        for c in sample.call_offs:
            if any(x["contract_id"] == framework["id"] and x["buyer"] == c["buyer"] for x in i["call_offs"]):
                continue
            call_off = {
                "contract_id": framework["id"],
                "buyer": c["buyer"],
                "quantity": c["quantity"],
                "value": c["value"],
                "currency": c["currency"],
                "delivery_by": _on(c["days"]),
            }
            i = await self._act(i, "call-offs", call_off)
            steps.append(f"call-off for {c['buyer']}")
        return i

    # -- demand signals

    @staticmethod
    def _signal_name(s: SampleSignal, product: str) -> str:
        return f"{s.nation} {s.firmness} demand signal for {product}"

    async def signals(self, sample: SampleInitiative) -> None:
        for s in sample.signals:
            staff = self.clients[STAFF[s.nation]]
            body = {
                "product": sample.product,
                "capability_area": sample.body["capability_area"],
                "unit": sample.body["item"]["unit"],
                "firmness": s.firmness,
                "quantities": _wire(s.quantities),
            }
            checked(await staff.post("/v1/demand/signals", json=body))
            self.report.created.append(self._signal_name(s, sample.product))


async def seed(
    gateway: str, secrets: dict[str, str] | None = None, say: Callable[[str], object] = print
) -> SeedReport:
    secrets = {**DEV_SECRETS, **(secrets or {})}
    gateway = gateway.rstrip("/")
    report = SeedReport()
    async with httpx.AsyncClient(timeout=30) as http:
        clients: dict[str, httpx.AsyncClient] = {}
        try:
            for cid in (NSPA, *STAFF.values()):
                clients[cid] = await gateway_client(http, gateway, cid, secrets[cid])
            seeder = _Seeder(clients, report)
            # Suppliers first: an award names one.
            for supplier in SUPPLIERS:
                await seeder.supplier(supplier)
            for initiative in INITIATIVES:
                await seeder.initiative(initiative)
        finally:
            for c in clients.values():
                await c.aclose()
    report.tell(say, "sample procurement records")
    return report
