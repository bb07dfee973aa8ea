"""`icep seed` (standards part): a clearly labelled sample of NATO standards, national answers,
interchangeability clearances and conformance claims, loaded through the API.

Everything goes through the gateway's public API with the development standards clients
(deploy/dev-clients.toml), as a partner system would: NATO's standardization staff draft, circulate and
promulgate; each nation's own standards staff record its answers and clearances. Idempotent: it looks up
what exists first (a standard by kind, number and edition; a nation's answer; a clearance by its owner, item
and platform; a claim by nation, product code and standard) and creates or advances only what is missing,
so a second run changes nothing. A record that exists but is not a sample is left alone.

*Sourced*: the standard numbers, their public titles, AEP-55 as the covering publication of STANAG 4569, the
six protection levels of 4569 and the five levels of interoperability of 4586. Everything else is
*synthetic* and says so: edition histories, dates (promulgation happens when the seed runs), national
answers and reservations, clearances, products and claims. Sample titles start with `[SAMPLE]`; invented
details carry `(synthetic)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import httpx

from icep.platform.seeding import SeedReport, checked, gateway_client, if_match, today

LABEL = "[SAMPLE]"
SYNTHETIC = "(synthetic)"

#: Development-only secrets, published in deploy/dev-clients.toml; never valid in production.
DEV_SECRETS = {
    "deu-standards": "deu-standards-dev-secret",
    "fra-standards": "fra-standards-dev-secret",
    "pol-standards": "pol-standards-dev-secret",
    "nato-standards": "nato-standards-dev-secret",
}
STAFF = {"DEU": "deu-standards", "FRA": "fra-standards", "POL": "pol-standards"}
NATO_STAFF = "nato-standards"

#: The sample 155 mm round (a clearly sample name) and the platforms it is cleared for.
ITEM_155 = "155mm L15A1 HE round (sample)"
PZH_2000 = "PzH 2000"
CAESAR = "CAESAR"
KRAB = "AHS Krab"


@dataclass(frozen=True)
class SampleResponse:
    """What a nation's own standards staff answer: ratify (with reservations) or decline; then perhaps a
    forecast (days after promulgation) and the implementation (dated the day of promulgation)."""

    nation: str
    ratify: bool = True
    reservations: tuple[dict[str, str], ...] = ()
    forecast_days: int | None = None
    implemented: bool = False


@dataclass(frozen=True)
class SampleStandard:
    key: str
    body: dict[str, Any]
    #: Key of the sample edition this one supersedes.
    supersedes: str | None = None
    #: Nations not listed stay pending.
    responses: tuple[SampleResponse, ...] = ()

    @property
    def reference(self) -> str:
        return f"{self.body['kind']} {self.body['number']} Ed. {self.body['edition']}"


def _standard(
    kind: str,
    number: str,
    edition: int,
    title: str,
    domain: str,
    areas: list[str],
    *,
    publications: tuple[str, ...] = (),
    levels: tuple[str, ...] = (),
) -> dict[str, Any]:
    return {
        "kind": kind,
        "number": number,
        "edition": edition,
        "title": f"{LABEL} {title}",
        "covering_publications": list(publications),
        "domain": domain,
        "capability_areas": areas,
        "levels": list(levels),
    }


def _reservation(clause: str, kind: str, detail: str) -> dict[str, str]:
    return {"clause": clause, "kind": kind, "detail": f"{detail} {SYNTHETIC}"}


# Sourced: title, AEP-55 and the six protection levels. Synthetic: this edition history and its dates.
_4569_TITLE = "Protection levels for occupants of logistic and light armoured vehicles"


def _stanag_4569(edition: int) -> dict[str, Any]:
    return _standard(
        "STANAG",
        "4569",
        edition,
        _4569_TITLE,
        "land",
        ["protection"],
        publications=("AEP-55",),
        levels=tuple(str(n) for n in range(1, 7)),
    )


STANDARDS: list[SampleStandard] = [
    SampleStandard(
        "4569-2",
        _stanag_4569(2),
        responses=(
            SampleResponse("DEU", implemented=True),
            SampleResponse("FRA", implemented=True),
            SampleResponse("POL", forecast_days=365),
        ),
    ),
    SampleStandard(
        "4569-3",
        _stanag_4569(3),
        supersedes="4569-2",
        responses=(
            SampleResponse("DEU", implemented=True),
            SampleResponse(
                "FRA",
                reservations=(
                    _reservation(
                        "4.2", "limited", "Mine blast threat levels assessed with the national procedure only"
                    ),
                ),
                forecast_days=365,
            ),
            # POL: pending.
        ),
    ),
    SampleStandard(
        # Sourced: title and the five levels of interoperability. Synthetic: the edition and the answers.
        "4586-4",
        _standard(
            "STANAG",
            "4586",
            4,
            "Standard interfaces of UAV control system (UCS) for NATO UAV interoperability",
            "air",
            ["isr"],
            levels=tuple(str(n) for n in range(1, 6)),
        ),
        responses=(
            SampleResponse("DEU", forecast_days=540),
            SampleResponse("FRA", implemented=True),
            SampleResponse("POL", ratify=False),
        ),
    ),
    SampleStandard(
        # Sourced: the number's subject. Synthetic: the edition and the answers.
        "2459-1",
        _standard(
            "STANAG", "2459", 1, "NATO ammunition interchangeability procedures", "land", ["munitions"]
        ),
        responses=(
            SampleResponse("DEU", implemented=True),
            SampleResponse("FRA", forecast_days=270),
            SampleResponse("POL", implemented=True),
        ),
    ),
    SampleStandard(
        # Wholly synthetic: the basis of the sample 155 mm clearances.
        "155-sample",
        _standard(
            "AP",
            "155-SAMPLE",
            1,
            f"155 mm artillery ammunition interchangeability {SYNTHETIC}",
            "land",
            ["munitions"],
        ),
        responses=(
            SampleResponse("DEU", implemented=True),
            SampleResponse(
                "FRA",
                reservations=(_reservation("3.1", "limited", "Charge zones above 5 not cleared for CAESAR"),),
                forecast_days=180,
            ),
            SampleResponse(
                "POL",
                reservations=(_reservation("5.2", "will_not_implement", "National fuze interface retained"),),
                forecast_days=365,
            ),
        ),
    ),
]


@dataclass(frozen=True)
class SampleClearance:
    """Recorded by `nation`'s own standards staff, for itself. `basis_reference` is a sample standard's key
    when `basis_kind` is standard, else the (synthetic) firing trial's reference."""

    nation: str
    item: str
    platform: str
    status: str
    basis_kind: str
    basis_reference: str
    restrictions: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"clearance {self.item} on {self.platform} for {self.nation}"


CLEARANCES: list[SampleClearance] = [
    SampleClearance("DEU", ITEM_155, PZH_2000, "verified", "standard", "155-sample"),
    SampleClearance(
        "FRA",
        ITEM_155,
        CAESAR,
        "restricted",
        "standard",
        "155-sample",
        (f"Charge zones 1 to 5 only {SYNTHETIC}", f"Fuze settings per national firing table {SYNTHETIC}"),
    ),
    SampleClearance(
        "POL",
        ITEM_155,
        KRAB,
        "not_interchangeable",
        "trial",
        f"POL firing trial SAMPLE-2025-03 {SYNTHETIC}",
        (f"Fuze well incompatible with the national fuze {SYNTHETIC}",),
    ),
]


@dataclass(frozen=True)
class SampleClaim:
    """Claimed by `nation`'s standards staff; assessed by NATO's (start-test, then verify for a year)."""

    nation: str
    standard: str
    product: dict[str, str]
    level: str | None
    evidence: tuple[str, ...]
    #: The state the seed brings it to: claimed, under_test or verified.
    state: str
    test_evidence: tuple[str, ...] = ()
    verify_evidence: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"claim {self.product['product_code']} ({self.nation}) level {self.level}"


CLAIMS: list[SampleClaim] = [
    SampleClaim(
        "DEU",
        "4569-3",
        {
            "manufacturer": f"Sample Fahrzeugwerke GmbH {SYNTHETIC}",
            "product_code": "SAMPLE-LAV-4",
            "name": f"{LABEL} Light armoured patrol vehicle",
        },
        "4",
        (f"Manufacturer ballistic and blast test report SAMPLE-4569-001 {SYNTHETIC}",),
        "verified",
        test_evidence=(f"National test centre firing programme SAMPLE-T-17 {SYNTHETIC}",),
        verify_evidence=(f"Verification report SAMPLE-V-17 {SYNTHETIC}",),
    ),
    SampleClaim(
        "FRA",
        "4586-4",
        {
            "manufacturer": f"Sample Drones SAS {SYNTHETIC}",
            "product_code": "SAMPLE-GCS-2",
            "name": f"{LABEL} UAV ground control station",
        },
        "3",
        (f"Interface conformance self-assessment SAMPLE-4586-002 {SYNTHETIC}",),
        "under_test",
        test_evidence=(f"Interoperability test event SAMPLE-IOT-5 {SYNTHETIC}",),
    ),
]

STANDARD_ORDER = ["study", "ratification_draft", "promulgated", "superseded"]
STANDARD_STEPS = {"study": "circulate", "ratification_draft": "promulgate"}
CLAIM_ORDER = ["claimed", "under_test", "verified"]
RATIFIED = ("ratified", "ratified_with_reservations")
ANSWERABLE = ("ratification_draft", "promulgated")


async def _find_standard(nato: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any] | None:
    url: str | None = "/v1/standards"
    params: dict[str, Any] | None = {"number": body["number"], "limit": 200}
    while url:
        page = checked(await nato.get(url, params=params))
        for s in page["items"]:
            if (s["kind"], s["edition"]) == (body["kind"], body["edition"]):
                found: dict[str, Any] = s
                return found
        url, params = page["next"], None
    return None


class _Seeder:
    def __init__(self, clients: dict[str, httpx.AsyncClient], report: SeedReport) -> None:
        self.clients = clients
        self.nato = clients[NATO_STAFF]
        self.report = report
        #: Sample key -> the standard as last read (absent when left alone).
        self.standards: dict[str, dict[str, Any]] = {}

    async def standard(self, sample: SampleStandard) -> None:
        ref = sample.reference
        found = await _find_standard(self.nato, sample.body)
        if found is not None and not found["title"].startswith(LABEL):
            self.report.skipped.append(f"{ref}: exists and is not a sample record, left alone")
            return
        if found is None:
            body = dict(sample.body)
            if sample.supersedes is not None:
                older = self.standards.get(sample.supersedes)
                if older is None:
                    self.report.skipped.append(f"{ref}: the edition it supersedes is not a sample record")
                    return
                body["supersedes"] = older["id"]
            found = checked(await self.nato.post("/v1/standards", json=body))
            self.report.created.append(ref)
        moved = False
        while found["status"] in STANDARD_STEPS:
            action = STANDARD_STEPS[found["status"]]
            found = checked(
                await self.nato.post(f"/v1/standards/{found['id']}/{action}", headers=if_match(found))
            )
            moved = True
        if moved:
            self.report.advanced.append(f"{ref} -> {found['status']}")
        elif ref not in self.report.created:
            self.report.unchanged.append(ref)
        self.standards[sample.key] = found
        for answer in sample.responses:
            await self.response(found, answer)

    async def response(self, standard: dict[str, Any], answer: SampleResponse) -> None:
        nation = answer.nation
        name = f"{nation} on {standard['reference']}"
        staff = self.clients[STAFF[nation]]
        if standard["status"] not in ANSWERABLE:
            self.report.unchanged.append(name)  # superseded or cancelled: its answers are history
            return
        path = f"/v1/standards/{standard['id']}/responses/{nation}"
        current = checked(await staff.get(path))
        steps: list[str] = []
        if current["status"] == "pending":
            if answer.ratify:
                current = checked(
                    await staff.post(
                        f"{path}/ratify",
                        json={"reservations": list(answer.reservations)},
                        headers=if_match(current),
                    )
                )
            else:
                current = checked(await staff.post(f"{path}/decline", headers=if_match(current)))
            steps.append(current["status"])
        if current["status"] in RATIFIED and answer.ratify:
            promulgated = standard["promulgated_on"]
            start = date.fromisoformat(promulgated) if promulgated else today()
            if (
                answer.forecast_days is not None
                and current["implementation_forecast"] is None
                and current["implemented_on"] is None
            ):
                by = start + timedelta(days=answer.forecast_days)
                current = checked(
                    await staff.post(
                        f"{path}/implementation-forecast",
                        json={"implementation_forecast": by.isoformat()},
                        headers=if_match(current),
                    )
                )
                steps.append(f"forecast {by.isoformat()}")
            if answer.implemented and current["implemented_on"] is None and promulgated:
                # After promulgation and not in the future: the day it was promulgated.
                current = checked(
                    await staff.post(
                        f"{path}/implementation",
                        json={"implemented_on": promulgated},
                        headers=if_match(current),
                    )
                )
                steps.append(f"implemented {promulgated}")
        if steps:
            self.report.advanced.append(f"{name} -> {', '.join(steps)}")
        else:
            self.report.unchanged.append(name)

    async def clearance(self, sample: SampleClearance) -> None:
        staff = self.clients[STAFF[sample.nation]]
        listed = checked(
            await staff.get(
                "/v1/interchangeability/clearances", params={"item": sample.item, "platform": sample.platform}
            )
        )
        if any(c["releasability"]["owner"] == sample.nation for c in listed["items"]):
            self.report.unchanged.append(sample.name)
            return
        reference = sample.basis_reference
        if sample.basis_kind == "standard":
            basis = self.standards.get(reference)
            if basis is None:
                self.report.skipped.append(f"{sample.name}: its basis standard is not a sample record")
                return
            reference = basis["id"]
        checked(
            await staff.post(
                "/v1/interchangeability/clearances",
                json={
                    "item": sample.item,
                    "platform": sample.platform,
                    "nations": [sample.nation],
                    "status": sample.status,
                    "basis": {"kind": sample.basis_kind, "reference": reference},
                    "restrictions": list(sample.restrictions),
                },
            )
        )
        self.report.created.append(sample.name)

    async def claim(self, sample: SampleClaim) -> None:
        standard = self.standards.get(sample.standard)
        if standard is None:
            self.report.skipped.append(f"{sample.name}: its standard is not a sample record")
            return
        staff = self.clients[STAFF[sample.nation]]
        listed = checked(
            await staff.get(
                "/v1/standards/conformance",
                params={
                    "product_code": sample.product["product_code"],
                    "standard_id": standard["id"],
                    "nation": sample.nation,
                    "limit": 200,
                },
            )
        )
        claim = next((c for c in listed["items"] if c["level"] == sample.level), None)
        if claim is None:
            if standard["status"] != "promulgated":
                self.report.skipped.append(f"{sample.name}: {standard['reference']} is not in force")
                return
            claim = checked(
                await staff.post(
                    "/v1/standards/conformance",
                    json={
                        "product": sample.product,
                        "standard_id": standard["id"],
                        "level": sample.level,
                        "evidence": list(sample.evidence),
                    },
                )
            )
            self.report.created.append(sample.name)
        moved = False
        target = CLAIM_ORDER.index(sample.state)
        path = f"/v1/standards/conformance/{claim['id']}"
        if claim["status"] == "claimed" and target > CLAIM_ORDER.index("claimed"):
            claim = checked(
                await self.nato.post(
                    f"{path}/start-test",
                    json={"evidence": list(sample.test_evidence)},
                    headers=if_match(claim),
                )
            )
            moved = True
        if claim["status"] == "under_test" and target > CLAIM_ORDER.index("under_test"):
            expires = today() + timedelta(days=365)
            claim = checked(
                await self.nato.post(
                    f"{path}/verify",
                    json={"expires_on": expires.isoformat(), "evidence": list(sample.verify_evidence)},
                    headers=if_match(claim),
                )
            )
            moved = True
        if moved:
            self.report.advanced.append(f"{sample.name} -> {claim['status']}")
        elif sample.name not in self.report.created:
            self.report.unchanged.append(sample.name)


async def seed(
    gateway: str, secrets: dict[str, str] | None = None, say: Callable[[str], object] = print
) -> SeedReport:
    secrets = {**DEV_SECRETS, **(secrets or {})}
    gateway = gateway.rstrip("/")
    report = SeedReport()
    async with httpx.AsyncClient(timeout=30) as http:
        clients: dict[str, httpx.AsyncClient] = {}
        try:
            for cid in (*STAFF.values(), NATO_STAFF):
                clients[cid] = await gateway_client(http, gateway, cid, secrets[cid])
            seeder = _Seeder(clients, report)
            # In order: an edition's answers are recorded before the next edition supersedes it.
            for standard in STANDARDS:
                await seeder.standard(standard)
            for clearance in CLEARANCES:
                await seeder.clearance(clearance)
            for claim in CLAIMS:
                await seeder.claim(claim)
        finally:
            for c in clients.values():
                await c.aclose()
    report.tell(say, "sample standards records")
    return report
