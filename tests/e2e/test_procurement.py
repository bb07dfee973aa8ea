"""Joint procurement through the gateway: an initiative's life from proposal to closure with every event
read back from Kafka, the illegal steps, who may do what, the participation and demand arithmetic, demand
signals, demand against capacity, and the OCDS export."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from icep.platform.events import ReceivedEvent, decode
from icep.platform.testing import WebhookReceiver, read_records, wait_for

PROBLEM = "application/problem+json"
Clients = dict[str, httpx.AsyncClient]


def today() -> dt.date:
    """The date now, asked at each use (a run may cross midnight, UTC)."""
    return dt.datetime.now(dt.UTC).date()


DEADLINE = (today() + dt.timedelta(days=60)).isoformat()
Y1, Y2 = today().year + 1, today().year + 2
EV = "icep.procurement."


@pytest.fixture(scope="module")
async def staff(platform: Any) -> AsyncIterator[Clients]:
    """Procurement staff of DEU, FRA, POL, NLD, NATO (NSPA) and UKR (a partner); planners and NATO's
    reviewer (for plans with capacity); a DEU planner has no procurement role."""
    made = {
        **{
            n: await platform.as_client(f"{n}-procurement")
            for n in ("deu", "fra", "pol", "nld", "nato", "ukr")
        },
        "deu_planner": await platform.as_client("deu-planner"),
        "nato_reviewer": await platform.as_client("nato-reviewer"),
    }
    try:
        yield made
    finally:
        for c in made.values():
            await c.aclose()


Events = Callable[..., Awaitable[list[ReceivedEvent]]]


@pytest.fixture(scope="module")
def events(platform: Any) -> Events:
    async def read(subject: str, *types: str) -> list[ReceivedEvent]:
        """The subject's events on Kafka in the order they were published, once every type named (as many
        times as named) has arrived."""

        async def arrived() -> list[ReceivedEvent] | None:
            records = await read_records(platform.bootstrap, platform.topic("icep.procurement.events"))
            mine = sorted(
                (
                    e
                    for e in (
                        decode(r.key, r.value, r.headers, partition=r.partition, offset=r.offset)
                        for r in records
                    )
                    if e.subject == subject
                ),
                key=lambda e: (e.partition, e.offset),
            )
            seen = [e.type for e in mine]
            return mine if all(seen.count(t) >= types.count(t) for t in set(types)) else None

        found = await wait_for(arrived, timeout=30, interval=0.2, what=f"events {types} of {subject}")
        assert found is not None
        return found

    return read


def new_product() -> str:
    return f"155mm round {uuid.uuid4().hex[:8]} (synthetic)"


def initiative_body(product: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "title": "155mm ammunition for PzH 2000 and CAESAR (synthetic)",
        "description": "Synthetic joint buy for tests.",
        "item": {
            "product": product or new_product(),
            "unit": "rounds",
            "classification_scheme": "CPV",
            "classification_id": "35321000",
        },
        "capability_area": "munitions",
        "required_standards": [],
        "participation_deadline": DEADLINE,
        **extra,
    }


async def act(
    client: httpx.AsyncClient, path: str, body: Any = None, version: int | str = "*"
) -> httpx.Response:
    """POST an action; `version` is what If-Match names: a version read, or `*` (the default here, where
    the test is about something else than concurrent changes)."""
    return await client.post(path, json=body, headers={"If-Match": "*" if version == "*" else f'"{version}"'})


async def ok(client: httpx.AsyncClient, path: str, body: Any = None, status: int = 200) -> dict[str, Any]:
    r = await act(client, path, body)
    assert r.status_code == status, r.text
    return dict(r.json())


async def ok_get(client: httpx.AsyncClient, path: str) -> dict[str, Any]:
    r = await client.get(path)
    assert r.status_code == 200, r.text
    return dict(r.json())


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    return dict(r.json())


async def proposed(lead: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    r = await lead.post("/v1/initiatives", json=initiative_body(**extra))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def opened(lead: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    i = await proposed(lead, **extra)
    return await ok(lead, f"/v1/initiatives/{i['id']}/open")


async def clean_supplier(client: httpx.AsyncClient) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    r = await client.post(
        "/v1/suppliers",
        json={
            "organisation_id": f"DE-HRB-{tag}",
            "name": f"Example Munitions {tag} GmbH (synthetic)",
            "scale": "sme",
            "country_of_incorporation": "DEU",
            "ultimate_parent": "Example Defence Holding AG (synthetic)",
            "ultimate_parent_country": "DEU",
            "ownership_chain": [
                {"name": "Example Defence Holding AG (synthetic)", "country": "DEU", "share_percent": 100}
            ],
            "products": [f"EX-155-{tag}"],
        },
    )
    assert r.status_code == 201, r.text
    supplier = dict(r.json())
    assert supplier["screening"] == "clear" and supplier["matches"] == [] and supplier["awardable"]
    assert r.headers["location"] == f"/v1/suppliers/{supplier['id']}"
    return supplier


def y(quantities: dict[int, int]) -> dict[str, int]:
    return {str(k): v for k, v in quantities.items()}


# --- the whole life -------------------------------------------------------------------------------------


async def test_an_initiative_from_proposal_to_closure_with_every_event(
    staff: Clients, events: Events, platform: Any
) -> None:
    deu, fra, pol = staff["deu"], staff["fra"], staff["pol"]
    r = await deu.post("/v1/initiatives", json=initiative_body())
    assert r.status_code == 201, r.text
    i = r.json()
    iid = i["id"]
    assert r.headers["location"] == f"/v1/initiatives/{iid}" and r.headers["etag"] == '"1"'
    assert i["status"] == "proposed" and i["ocid"] == f"ocds-icep01-{iid}"
    assert (i["lead_nation"], i["procuring_entity"]) == ("DEU", "DEU")
    assert i["releasability"]["marking"] == "ALLIES" and i["demand"]["participants"] == 0

    # A stale If-Match is refused; the current one is taken.
    problem(await act(deu, f"/v1/initiatives/{iid}/open", version=5), 412)
    r = await act(deu, f"/v1/initiatives/{iid}/open", version=1)
    assert r.status_code == 200 and r.json()["status"] == "open" and r.headers["etag"] == '"2"'

    await ok(fra, f"/v1/initiatives/{iid}/join", {"indicative": y({Y1: 1000, Y2: 2000})})
    await ok(pol, f"/v1/initiatives/{iid}/join", {"indicative": y({Y1: 500})})
    await ok(deu, f"/v1/initiatives/{iid}/join", {"indicative": y({Y2: 300})})
    await ok(fra, f"/v1/initiatives/{iid}/commit", {"firm": y({Y1: 800, Y2: 1500}), "funded": y({Y1: 800})})
    i = await ok(pol, f"/v1/initiatives/{iid}/commit", {"firm": y({Y1: 500}), "funded": y({Y1: 250})})
    # A participant sees no aggregate while the demand may change; the lead nation sees it as it stands.
    assert i["demand"] == {
        "participants": 3,
        "disclosure": "withheld",
        "indicative": {},
        "firm": {},
        "funded": {},
    }
    assert (await ok_get(deu, f"/v1/initiatives/{iid}"))["demand"] == {
        "participants": 3,
        "disclosure": "full",
        "indicative": y({Y1: 1500, Y2: 2300}),
        "firm": y({Y1: 1300, Y2: 1500}),
        "funded": y({Y1: 1050}),
    }
    assert [(p["nation"], p["status"]) for p in i["participations"]] == [
        ("DEU", "joined"),
        ("FRA", "committed"),
        ("POL", "committed"),
    ]

    i = await ok(deu, f"/v1/initiatives/{iid}/close-participation")
    assert i["status"] == "participation_closed"
    tender = {
        "lots": [
            {
                "id": "lot-1",
                "title": "HE rounds",
                "quantity": 2000,
                "estimated_value": 8e6,
                "currency": "EUR",
            },
            {"id": "lot-2", "title": "Practice rounds", "quantity": 500},
        ],
        "tender_period_end": (today() + dt.timedelta(days=30)).isoformat(),
    }
    i = await ok(deu, f"/v1/initiatives/{iid}/tender", tender)
    assert i["status"] == "tendering" and [x["id"] for x in i["tender"]["lots"]] == ["lot-1", "lot-2"]

    supplier = await clean_supplier(deu)
    sid = supplier["id"]
    found = await deu.get(
        "/v1/suppliers", params={"organisation_id": supplier["organisation_id"], "nation": "DEU"}
    )
    assert [x["id"] for x in found.json()["items"]] == [sid]
    bid = {"lot_id": "lot-1", "supplier_id": sid, "quantity": 2000, "value": 7.4e6, "currency": "EUR"}
    i = await ok(deu, f"/v1/initiatives/{iid}/bids", bid)
    assert i["bids"][0]["supplier_id"] == sid and i["status"] == "tendering"
    # Inside the initiative: the lead nation sees every nation's quantities and the bids; a participant
    # its own quantities and the aggregate; another reader who takes part, and how, and the aggregate.
    as_lead = (await deu.get(f"/v1/initiatives/{iid}")).json()
    as_fra = (await fra.get(f"/v1/initiatives/{iid}")).json()
    as_nld = (await staff["nld"].get(f"/v1/initiatives/{iid}")).json()
    assert {p["nation"]: p["firm"] for p in as_lead["participations"]} == {
        "DEU": {},
        "FRA": y({Y1: 800, Y2: 1500}),
        "POL": y({Y1: 500}),
    }
    assert [len(v["bids"]) for v in (as_lead, as_fra, as_nld)] == [1, 0, 0]
    assert {p["nation"]: p["firm"] for p in as_fra["participations"]} == {
        "DEU": None,
        "FRA": y({Y1: 800, Y2: 1500}),
        "POL": None,
    }
    assert {p["nation"]: (p["status"], p["indicative"]) for p in as_nld["participations"]} == {
        "DEU": ("joined", None),
        "FRA": ("committed", None),
        "POL": ("committed", None),
    }
    # Settled: published to the others, but no year has three nations' commitments (FRA's and POL's only).
    assert (
        as_nld["demand"]
        == as_fra["demand"]
        == {
            "participants": 3,
            "disclosure": "published",
            "indicative": {},
            "firm": {},
            "funded": {},
        }
    )
    assert as_lead["demand"]["disclosure"] == "full" and as_lead["demand"]["firm"] == y({Y1: 1300, Y2: 1500})
    # The list shows the same.
    listed = (await staff["nld"].get("/v1/initiatives", params={"product": i["item"]["product"]})).json()
    assert [(x["bids"], x["participations"][1]["firm"]) for x in listed["items"]] == [([], None)]
    # Another nation neither records bids nor awards.
    problem(await act(fra, f"/v1/initiatives/{iid}/bids", bid), 403)
    awards = {
        "awards": [
            {"lot_id": "lot-1", "supplier_id": sid, "quantity": 2000, "value": 7.5e6, "currency": "EUR"}
        ]
    }
    problem(await act(fra, f"/v1/initiatives/{iid}/award", awards), 403)
    i = await ok(deu, f"/v1/initiatives/{iid}/award", awards)
    assert i["status"] == "awarded"
    [award] = i["awards"]
    assert (award["supplier_id"], award["supplier_name"], award["quantity"]) == (sid, supplier["name"], 2000)

    contract = {
        "award_id": award["id"],
        "framework": True,
        "value": 7.5e6,
        "currency": "EUR",
        "period_start": today().isoformat(),
        "period_end": (today() + dt.timedelta(days=730)).isoformat(),
        "milestones": [
            {
                "id": "m1",
                "title": "First batch",
                "due": (today() + dt.timedelta(days=90)).isoformat(),
                "quantity": 1000,
            },
            {
                "id": "m2",
                "title": "Second batch",
                "due": (today() + dt.timedelta(days=180)).isoformat(),
                "quantity": 1000,
            },
        ],
    }
    r = await act(deu, f"/v1/initiatives/{iid}/contracts", contract)
    assert r.status_code == 201, r.text
    cid = r.json()["contract_id"]
    assert r.json()["status"] == "contracted"
    assert r.headers["location"] == f"/v1/initiatives/{iid}/contracts/{cid}"
    read = await deu.get(r.headers["location"])
    got = read.json()
    assert got["framework"] is True and [m["status"] for m in got["milestones"]] == ["scheduled"] * 2
    # A contract changes with its initiative: its read carries the initiative's ETag, which a milestone names.
    assert read.headers["etag"] == r.headers["etag"] == f'"{r.json()["version"]}"'
    # One contract per award; and once contracted, the initiative can no longer be cancelled.
    problem(await act(deu, f"/v1/initiatives/{iid}/contracts", contract), 409)
    p = problem(await act(deu, f"/v1/initiatives/{iid}/cancel", {"reason": "too late"}), 409)
    assert "contracted" in p["detail"]

    call_off = {
        "contract_id": cid,
        "buyer": "FRA",
        "quantity": 500,
        "value": 1.9e6,
        "currency": "EUR",
        "delivery_by": (today() + dt.timedelta(days=120)).isoformat(),
    }
    problem(await act(deu, f"/v1/initiatives/{iid}/call-offs", call_off | {"buyer": "NLD"}), 422)
    problem(await act(deu, f"/v1/initiatives/{iid}/call-offs", call_off | {"currency": "USD"}), 422)
    # Delivered by a day to come.
    p = problem(
        await act(deu, f"/v1/initiatives/{iid}/call-offs", call_off | {"delivery_by": today().isoformat()}),
        422,
    )
    assert p["errors"][0]["location"] == "body.delivery_by"
    # The framework covers the 2,000 awarded: no call-off beyond it.
    p = problem(await act(deu, f"/v1/initiatives/{iid}/call-offs", call_off | {"quantity": 2001}), 422)
    assert "2000 left" in p["detail"] or "2000 are left" in p["detail"]
    r = await act(deu, f"/v1/initiatives/{iid}/call-offs", call_off)
    assert r.status_code == 201, r.text
    call_off_ocid = r.json()["call_off_ocid"]
    assert call_off_ocid.startswith("ocds-icep01-") and call_off_ocid != i["ocid"]
    read = await deu.get(r.headers["location"])
    assert read.json()["ocid"] == call_off_ocid and read.headers["etag"] == r.headers["etag"]
    # The call-off's own OCDS process, for whoever reads the initiative.
    call_off_path = f"{r.headers['location']}/ocds"
    package = await ok_get(staff["nld"], call_off_path)
    [release] = package["releases"]
    assert (release["ocid"], release["id"], release["tag"]) == (
        call_off_ocid,
        f"{call_off_ocid}-0001",
        ["award", "contract"],
    )
    assert release["relatedProcesses"][0]["identifier"] == i["ocid"]
    validate_ocds(package, "release-package")
    record = await ok_get(staff["nld"], f"{call_off_path}/record")
    assert record["records"][0]["ocid"] == call_off_ocid
    validate_ocds(record, "record-package")
    problem(await staff["ukr"].get(call_off_path), 404)
    problem(await deu.get(f"/v1/initiatives/{iid}/call-offs/nope/ocds"), 404)

    i = await ok(deu, f"/v1/initiatives/{iid}/start-delivery")
    assert i["status"] == "delivering"
    milestones = f"/v1/initiatives/{iid}/contracts/{cid}/milestones"
    problem(await act(deu, f"{milestones}/m1", {"met_on": today().isoformat(), "missed": True}), 422)
    await ok(deu, f"{milestones}/m1", {"met_on": today().isoformat()})
    # Open milestones keep it from closing.
    p = problem(await act(deu, f"/v1/initiatives/{iid}/close"), 409)
    assert "m2" in p["detail"]
    i = await ok(deu, f"{milestones}/m2", {"missed": True, "reason": "propellant shortage (synthetic)"})
    assert [m["status"] for m in i["contracts"][0]["milestones"]] == ["met", "missed"]
    p = problem(await act(deu, f"{milestones}/m2", {"met_on": today().isoformat()}), 409)
    assert "missed" in p["detail"]
    problem(await act(fra, f"/v1/initiatives/{iid}/close"), 403)
    i = await ok(deu, f"/v1/initiatives/{iid}/close")
    assert i["status"] == "closed"
    assert [h["action"] for h in i["history"]] == [
        "proposed",
        "open",
        "join",
        "join",
        "join",
        "commit",
        "commit",
        "close_participation",
        "publish_tender",
        "record_bid",
        "award",
        "sign_contract",
        "place_call_off",
        "start_delivery",
        "milestone_met",
        "milestone_missed",
        "close",
    ]

    expected = [
        "initiative.proposed",
        "initiative.opened",
        "initiative.joined",
        "initiative.demand_aggregated",
        "initiative.joined",
        "initiative.demand_aggregated",
        "initiative.joined",
        "initiative.demand_aggregated",
        "initiative.committed",
        "initiative.demand_aggregated",
        "initiative.committed",
        "initiative.demand_aggregated",
        "initiative.participation_closed",
        "initiative.demand_aggregated",  # published to every reader once settled
        "tender.published",
        "bid.recorded",
        "award.made",
        "contract.signed",
        "call_off.placed",
        "initiative.delivering",
        "milestone.met",
        "milestone.missed",
        "initiative.closed",
    ]
    got_events = await events(iid, *(f"{EV}{t}.v1" for t in expected))
    assert [e.type.removeprefix(EV).removesuffix(".v1") for e in got_events] == expected
    # One nation's quantities go to the lead nation, that nation and NATO staff; a bid to the lead
    # nation alone; the aggregate as it stands to the lead nation and NATO staff, as published once
    # settled to the initiative's readers; everything else to the initiative's readers.
    assert all(e.nation == "DEU" for e in got_events)
    assert [
        (e.data.get("nation"), e.releasable_to)
        for e in got_events
        if e.type.endswith(("joined.v1", "committed.v1", "bid.recorded.v1"))
    ] == [
        ("FRA", "DEU,FRA,NATO"),
        ("POL", "DEU,NATO,POL"),
        ("DEU", "DEU,NATO"),
        ("FRA", "DEU,FRA,NATO"),
        ("POL", "DEU,NATO,POL"),
        (None, "DEU"),
    ]
    assert all(
        e.releasable_to == "ALLIES"
        for e in got_events
        if not e.type.endswith(("joined.v1", "committed.v1", "bid.recorded.v1", "demand_aggregated.v1"))
    )
    assert [e.releasable_to for e in got_events if e.type.endswith("demand_aggregated.v1")] == [
        *["DEU,NATO"] * 5,
        "ALLIES",
    ]
    bid_event = next(e.data for e in got_events if e.type.endswith("bid.recorded.v1"))
    assert (bid_event["supplier_id"], bid_event["value"], bid_event["lot_id"]) == (sid, 7.4e6, "lot-1")
    assert all(e.data["ocid"] == i["ocid"] for e in got_events)
    versions = [e.data["version"] for e in got_events]
    assert versions == sorted(versions) and versions[-1] == i["version"]
    # DemandAggregated with every join and commit, with the sums at that moment (to the lead nation and
    # NATO); the published one: the firm demand of years three nations commit to (none here).
    sums = [
        (e.data["participants"], e.data["indicative"], e.data["firm"], e.data["funded"])
        for e in got_events
        if e.type.endswith("demand_aggregated.v1")
    ]
    assert sums == [
        (1, y({Y1: 1000, Y2: 2000}), {}, {}),
        (2, y({Y1: 1500, Y2: 2000}), {}, {}),
        (3, y({Y1: 1500, Y2: 2300}), {}, {}),
        (3, y({Y1: 1500, Y2: 2300}), y({Y1: 800, Y2: 1500}), y({Y1: 800})),
        (3, y({Y1: 1500, Y2: 2300}), y({Y1: 1300, Y2: 1500}), y({Y1: 1050})),
        (3, {}, {}, {}),
    ]
    by_type = {e.type.removeprefix(EV).removesuffix(".v1"): e.data for e in got_events}
    assert by_type["initiative.proposed"]["procuring_entity"] == "DEU"
    assert by_type["award.made"]["awards"][0]["supplier_id"] == sid
    assert (
        by_type["contract.signed"]["framework"] is True and by_type["contract.signed"]["supplier_id"] == sid
    )
    assert by_type["call_off.placed"]["call_off_ocid"] == call_off_ocid
    assert by_type["milestone.missed"]["reason"] == "propellant shortage (synthetic)"

    # The OCDS export: one release per change, tagged by stage, and the record compiling them.
    r = await deu.get(f"/v1/initiatives/{iid}/ocds")
    assert r.status_code == 200, r.text
    package = r.json()
    releases = package["releases"]
    assert package["uri"].endswith(f"/v1/initiatives/{iid}/ocds") and package["version"] == "1.1"
    assert [x["id"] for x in releases] == [f"{i['ocid']}-{n:04d}" for n in range(1, len(i["history"]) + 1)]
    assert all(x["ocid"] == i["ocid"] for x in releases)
    # The export shows the aggregate demand and the buyers' names: no nation's own quantities, no bids.
    assert "7400000" not in json.dumps(package).replace(".0", "")  # the bid's value (the award's is public)
    assert all("bids" not in x for x in releases)
    assert all(
        set(p) <= {"id", "name", "roles", "address", "details"} for x in releases for p in x["parties"]
    )
    assert all(
        set(x["planning"]["icepDemand"]) == {"unit", "participants", "committed", "disclosure"}
        for x in releases
    )
    assert [x["planning"]["icepDemand"]["disclosure"] for x in releases] == [
        *["withheld"] * 8,
        *["published"] * (len(releases) - 8),
    ]
    assert [x["tag"] for x in releases] == [
        ["planning"],
        *[["planningUpdate"]] * 7,
        ["tender"],
        ["tenderUpdate"],
        ["award"],
        ["contract"],
        ["implementation"],
        ["implementation"],
        ["implementationUpdate"],
        ["implementationUpdate"],
        ["contractTermination"],
    ]
    last = releases[-1]
    assert {p["id"]: p["roles"] for p in last["parties"]} == {
        "nation-DEU": ["buyer", "procuringEntity"],
        "nation-FRA": ["buyer"],
        "nation-POL": ["buyer"],
        f"supplier-{sid}": ["supplier", "tenderer"],
    }
    assert last["contracts"][0]["relatedProcesses"][0]["identifier"] == call_off_ocid
    r = await deu.get(f"/v1/initiatives/{iid}/ocds/record")
    assert r.status_code == 200, r.text
    [record] = r.json()["records"]
    assert record["ocid"] == i["ocid"] and len(record["releases"]) == len(releases)
    assert record["compiledRelease"]["tag"] == ["compiled"]
    assert record["compiledRelease"]["tender"]["status"] == "complete"
    validate_ocds(package, "release-package")
    validate_ocds(r.json(), "record-package")
    # A nation the initiative is not released to sees no export either.
    problem(await staff["ukr"].get(f"/v1/initiatives/{iid}/ocds"), 404)
    problem(await staff["ukr"].get(f"/v1/initiatives/{iid}/ocds/record"), 404)
    # The package's uri is the configured public URL's, whatever Host the caller sends.
    r = await deu.get(f"/v1/initiatives/{iid}/ocds", headers={"Host": "attacker.invalid"})
    assert r.status_code == 200, r.text
    assert r.json()["uri"] == f"{platform.gateway}/v1/initiatives/{iid}/ocds"


OCDS_URL = "https://standard.open-contracting.org/schema/1__1__5/"
OCDS_SCHEMAS = (
    "release-schema.json",
    "release-package-schema.json",
    "record-package-schema.json",
    "versioned-release-validation-schema.json",
)
REPO = Path(__file__).resolve().parents[2]


@cache
def ocds_validators() -> dict[str, Draft4Validator]:
    """The OCDS 1.1.5 schemas beside the repository (../shared/ocds-1.1.5, as CI has it), else the copy
    the ocds module's tests cache under ./var (downloaded once from the standard's URLs)."""
    folder = REPO.parent / "shared" / "ocds-1.1.5"
    if not folder.is_dir():
        folder = REPO / "var" / "ocds-1.1.5"
        with httpx.Client(timeout=30, follow_redirects=True) as client:
            for name in OCDS_SCHEMAS:
                if not (folder / name).is_file():
                    response = client.get(OCDS_URL + name)
                    response.raise_for_status()
                    folder.mkdir(parents=True, exist_ok=True)
                    (folder / name).write_bytes(response.content)
    schemas = {name: json.loads((folder / name).read_text(encoding="utf-8")) for name in OCDS_SCHEMAS}
    registry: Registry[Any] = Registry().with_resources(
        (OCDS_URL + name, Resource.from_contents(schema, default_specification=DRAFT4))
        for name, schema in schemas.items()
    )
    return {
        kind: Draft4Validator(
            schemas[f"{kind}-schema.json"], registry=registry, format_checker=Draft4Validator.FORMAT_CHECKER
        )
        for kind in ("release-package", "record-package")
    }


def validate_ocds(document: dict[str, Any], kind: str) -> None:
    errors = sorted(ocds_validators()[kind].iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


# --- illegal steps --------------------------------------------------------------------------------------


async def _drive(staff: Clients, steps: list[str]) -> str:
    """A new DEU initiative taken through `steps` (FRA joins and commits where needed)."""
    deu, fra = staff["deu"], staff["fra"]
    iid = (await proposed(deu))["id"]
    for s in steps:
        match s:
            case "join":
                await ok(fra, f"/v1/initiatives/{iid}/join", {"indicative": y({Y1: 100})})
            case "commit":
                await ok(fra, f"/v1/initiatives/{iid}/commit", {"firm": y({Y1: 100})})
            case "cancel":
                await ok(deu, f"/v1/initiatives/{iid}/cancel", {"reason": "test"})
            case "tender":
                await ok(
                    deu,
                    f"/v1/initiatives/{iid}/tender",
                    {
                        "lots": [{"id": "lot-1", "title": "All", "quantity": 100}],
                        "tender_period_end": (today() + dt.timedelta(days=10)).isoformat(),
                    },
                )
            case _:
                await ok(deu, f"/v1/initiatives/{iid}/{s}")
    return str(iid)


@pytest.mark.parametrize(
    ("steps", "who", "action", "body", "current"),
    [
        ([], "fra", "join", {"indicative": {str(Y1): 1}}, "proposed"),
        ([], "deu", "close-participation", None, "proposed"),
        (["open"], "deu", "open", None, "open"),
        (["open"], "deu", "close-participation", None, "nobody joined"),
        (["open"], "fra", "commit", {"firm": {str(Y1): 1}}, "not joined"),
        (["open"], "fra", "withdraw", {"reason": "no"}, "not joined"),
        (["open", "join"], "deu", "tender", None, "open"),
        (
            ["open", "join", "close-participation"],
            "pol",
            "join",
            {"indicative": {str(Y1): 1}},
            "participation_closed",
        ),
        (["open", "join", "close-participation"], "deu", "start-delivery", None, "participation_closed"),
        (
            ["open", "join", "commit", "close-participation", "tender"],
            "fra",
            "commit",
            {"firm": {str(Y1): 1}},
            "tendering",
        ),
        (["open", "join", "commit", "close-participation", "tender"], "deu", "close", None, "tendering"),
        (["cancel"], "deu", "open", None, "cancelled"),
        (["cancel"], "deu", "cancel", {"reason": "again"}, "cancelled"),
        (["open", "join", "commit"], "fra", "join", {"indicative": {str(Y1): 1}}, "committed"),
    ],
)
async def test_illegal_steps_are_409_naming_the_state(
    staff: Clients, steps: list[str], who: str, action: str, body: Any, current: str
) -> None:
    iid = await _drive(staff, steps)
    if action == "tender":
        body = {
            "lots": [{"id": "lot-1", "title": "All", "quantity": 1}],
            "tender_period_end": (today() + dt.timedelta(days=10)).isoformat(),
        }
    p = problem(await act(staff[who], f"/v1/initiatives/{iid}/{action}", body), 409)
    assert current in p["detail"], p


# --- who may do what ------------------------------------------------------------------------------------


async def test_only_the_lead_nation_runs_the_initiative(staff: Clients) -> None:
    deu, fra = staff["deu"], staff["fra"]
    problem(await staff["deu_planner"].post("/v1/initiatives", json=initiative_body()), 403)
    problem(await staff["ukr"].post("/v1/initiatives", json=initiative_body()), 403)
    # A blank capability area or procuring entity is no name.
    for blank in ({"capability_area": "  "}, {"procuring_entity": " "}):
        p = problem(await deu.post("/v1/initiatives", json=initiative_body(**blank)), 422)
        assert p["errors"][0]["location"] == f"body.{next(iter(blank))}"
    iid = (await proposed(deu))["id"]
    for action in ("open", "cancel"):
        problem(
            await act(
                fra, f"/v1/initiatives/{iid}/{action}", {"reason": "x"} if action == "cancel" else None
            ),
            403,
        )
    await ok(deu, f"/v1/initiatives/{iid}/open")
    await ok(fra, f"/v1/initiatives/{iid}/join", {"indicative": y({Y1: 10})})
    await ok(fra, f"/v1/initiatives/{iid}/commit", {"firm": y({Y1: 10})})
    problem(await act(fra, f"/v1/initiatives/{iid}/close-participation"), 403)
    problem(await act(staff["deu_planner"], f"/v1/initiatives/{iid}/join", {"indicative": y({Y1: 1})}), 403)
    await ok(deu, f"/v1/initiatives/{iid}/close-participation")
    tender = {
        "lots": [{"id": "lot-1", "title": "All", "quantity": 10}],
        "tender_period_end": (today() + dt.timedelta(days=10)).isoformat(),
    }
    problem(await act(fra, f"/v1/initiatives/{iid}/tender", tender), 403)
    # More than the firm demand is not tendered.
    p = problem(
        await act(
            deu, f"/v1/initiatives/{iid}/tender", tender | {"lots": [tender["lots"][0] | {"quantity": 11}]}
        ),
        422,
    )
    assert p["errors"][0]["location"] == "body.lots"
    await ok(deu, f"/v1/initiatives/{iid}/tender", tender)

    # NATO leads through NSPA, and runs initiatives rather than joining them.
    nato = staff["nato"]
    n = await opened(nato)
    assert (n["lead_nation"], n["procuring_entity"]) == ("NATO", "NSPA")
    problem(await act(nato, f"/v1/initiatives/{n['id']}/join", {"indicative": y({Y1: 1})}), 403)
    await ok(deu, f"/v1/initiatives/{n['id']}/join", {"indicative": y({Y1: 1})})
    problem(await act(deu, f"/v1/initiatives/{n['id']}/close-participation"), 403)
    assert (await ok(nato, f"/v1/initiatives/{n['id']}/close-participation"))[
        "status"
    ] == "participation_closed"


async def test_partners_join_only_where_allowed_and_see_only_what_is_released(staff: Clients) -> None:
    deu, ukr, nld, fra = staff["deu"], staff["ukr"], staff["nld"], staff["fra"]
    product = new_product()
    # Open to UKR: it reads and joins.
    open_to_ukr = await opened(deu, product=product, open_to_partners=["UKR"])
    assert open_to_ukr["releasability"]["marking"] == "ALLIES,UKR"
    i = await ok(ukr, f"/v1/initiatives/{open_to_ukr['id']}/join", {"indicative": y({Y1: 70})})
    assert i["participations"][0]["nation"] == "UKR"
    # Released to UKR but not open to it: it reads, but may not join.
    readable = await opened(
        deu, product=product, releasability={"scope": "allies_partners", "nations": ["UKR"]}
    )
    assert (await ukr.get(f"/v1/initiatives/{readable['id']}")).status_code == 200
    p = problem(await act(ukr, f"/v1/initiatives/{readable['id']}/join", {"indicative": y({Y1: 1})}), 403)
    assert "UKR" in p["detail"]
    # Allies only: UKR cannot even read it.
    allies_only = await opened(deu, product=product)
    problem(await ukr.get(f"/v1/initiatives/{allies_only['id']}"), 404)
    problem(await act(ukr, f"/v1/initiatives/{allies_only['id']}/join", {"indicative": y({Y1: 1})}), 404)
    # Partners who may join must be able to read it.
    p = problem(
        await deu.post(
            "/v1/initiatives",
            json=initiative_body(open_to_partners=["UKR"], releasability={"scope": "allies"}),
        ),
        422,
    )
    assert p["errors"][0]["location"] == "body.releasability"
    problem(await deu.post("/v1/initiatives", json=initiative_body(open_to_partners=["FRA"])), 422)

    # DEU and FRA only: NLD gets 404, does not see it in lists, and its demand counts nowhere for NLD.
    private = await opened(deu, product=product, releasability={"scope": "nations", "nations": ["FRA"]})
    await ok(fra, f"/v1/initiatives/{private['id']}/join", {"indicative": y({Y1: 5000})})
    problem(await nld.get(f"/v1/initiatives/{private['id']}"), 404)
    problem(await act(nld, f"/v1/initiatives/{private['id']}/join", {"indicative": y({Y1: 1})}), 404)
    assert (await fra.get(f"/v1/initiatives/{private['id']}")).status_code == 200

    async def listed(client: httpx.AsyncClient) -> set[str]:
        r = await client.get("/v1/initiatives", params={"product": product, "limit": 2})
        assert r.status_code == 200, r.text
        page = r.json()
        ids = {x["id"] for x in page["items"]}
        while page["next"]:
            page = (await client.get(page["next"])).json()
            ids |= {x["id"] for x in page["items"]}
        return ids

    everyone = {open_to_ukr["id"], readable["id"], allies_only["id"]}
    assert await listed(nld) == everyone
    assert await listed(fra) == everyone | {private["id"]}
    assert await listed(ukr) == {open_to_ukr["id"], readable["id"]}
    r = await nld.get("/v1/initiatives", params={"product": product, "status": "open", "lead_nation": "DEU"})
    assert {x["id"] for x in r.json()["items"]} == everyone

    async def demand(client: httpx.AsyncClient) -> list[dict[str, Any]]:
        r = await client.get("/v1/demand", params={"product": product})
        assert r.status_code == 200, r.text
        return list(r.json()["items"])

    # The lead nation sees the demand of both (DEU leads them); while they are open nobody else sees a
    # figure of them (disclosure control), UKR's own 70 in the aggregate included.
    [line] = await demand(deu)
    assert line["years"][str(Y1)]["indicative"] == 5070 and line["initiatives"] == 2
    assert await demand(fra) == await demand(nld) == await demand(ukr) == []


# --- participation arithmetic ---------------------------------------------------------------------------


async def test_participation_and_the_aggregated_demand(staff: Clients, events: Events) -> None:
    deu, fra, pol, nld = staff["deu"], staff["fra"], staff["pol"], staff["nld"]
    iid = (await opened(deu))["id"]
    path = f"/v1/initiatives/{iid}"
    # Year keys and quantities are checked, naming the field.
    p = problem(await act(fra, f"{path}/join", {"indicative": {"20x6": 5}}), 422)
    assert any(e["location"].startswith("body.indicative") for e in p["errors"])
    p = problem(await act(fra, f"{path}/join", {"indicative": {"2099": 5}}), 422)
    assert p["errors"][0]["location"] == "body.indicative"
    problem(await act(fra, f"{path}/join", {"indicative": {str(Y1): -1}}), 422)
    problem(await act(fra, f"{path}/join", {"indicative": {}}), 422)

    await ok(fra, f"{path}/join", {"indicative": y({Y1: 1000, Y2: 1000})})
    await ok(pol, f"{path}/join", {"indicative": y({Y1: 400})})
    await ok(nld, f"{path}/join", {"indicative": y({Y2: 250})})
    # Funded beyond firm is refused.
    p = problem(await act(fra, f"{path}/commit", {"firm": y({Y1: 500}), "funded": y({Y1: 600})}), 422)
    assert p["errors"][0]["location"] == "body.funded"
    p = problem(await act(fra, f"{path}/commit", {"firm": y({Y1: 500}), "funded": y({Y2: 1})}), 422)
    assert p["errors"][0]["location"] == "body.funded"
    await ok(fra, f"{path}/commit", {"firm": y({Y1: 900, Y2: 600}), "funded": y({Y1: 900, Y2: 100})})
    await ok(pol, f"{path}/commit", {"firm": y({Y1: 400}), "funded": y({Y1: 200})})
    i = await ok(nld, f"{path}/commit", {"firm": y({Y2: 250})})
    assert i["demand"]["disclosure"] == "withheld"  # a participant: no aggregate while it may change
    i = await ok_get(deu, path)
    assert i["demand"] == {
        "participants": 3,
        "disclosure": "full",
        "indicative": y({Y1: 1400, Y2: 1250}),
        "firm": y({Y1: 1300, Y2: 850}),
        "funded": y({Y1: 1100, Y2: 100}),
    }

    # After committing, a withdrawal is a request for the lead nation: the demand still counts it.
    i = await ok(pol, f"{path}/withdraw", {"reason": "budget cut (synthetic)"})
    pol_p = next(p for p in i["participations"] if p["nation"] == "POL")
    assert (
        pol_p["status"] == "withdrawal_requested" and pol_p["withdrawal_reason"] == "budget cut (synthetic)"
    )
    assert (await ok_get(deu, path))["demand"]["firm"] == y({Y1: 1300, Y2: 850})
    # While it waits for a decision, participation does not close (the request would be stuck).
    p = problem(await act(deu, f"{path}/close-participation"), 409)
    assert "POL" in p["detail"] and p["pending_withdrawals"] == ["POL"]
    problem(await act(fra, f"{path}/withdrawals/POL/approve"), 403)
    problem(await act(pol, f"{path}/withdrawals/POL/approve"), 403)
    problem(await act(deu, f"{path}/withdrawals/FRA/approve"), 409)
    i = await ok(deu, f"{path}/withdrawals/POL/approve")
    assert next(p for p in i["participations"] if p["nation"] == "POL")["status"] == "withdrawn"
    assert i["demand"] == {
        "participants": 2,
        "disclosure": "full",
        "indicative": y({Y1: 1000, Y2: 1250}),
        "firm": y({Y1: 900, Y2: 850}),
        "funded": y({Y1: 900, Y2: 100}),
    }
    # Refused: committed again, nothing changed in the demand.
    await ok(nld, f"{path}/withdraw", {"reason": "reprioritised (synthetic)"})
    i = await ok(deu, f"{path}/withdrawals/NLD/refuse")
    assert next(p for p in i["participations"] if p["nation"] == "NLD")["status"] == "committed"
    assert i["demand"]["participants"] == 2 and i["demand"]["firm"] == y({Y1: 900, Y2: 850})
    # Only joined: gone at once, no amendment.
    await ok(pol, f"{path}/join", {"indicative": y({Y1: 50})})
    await ok(pol, f"{path}/withdraw", {"reason": "not needed (synthetic)"})
    assert (await ok_get(deu, path))["demand"]["indicative"] == y({Y1: 1000, Y2: 1250})

    types = [
        "initiative.joined",
        "initiative.joined",
        "initiative.joined",
        "initiative.committed",
        "initiative.committed",
        "initiative.committed",
        "initiative.withdrawal_requested",
        "initiative.participant_withdrawn",
        "initiative.withdrawal_requested",
        "initiative.withdrawal_refused",
        "initiative.joined",
        "initiative.participant_withdrawn",
    ]
    got = await events(iid, *(f"{EV}{t}.v1" for t in types), *[f"{EV}initiative.demand_aggregated.v1"] * 9)
    names = [e.type.removeprefix(EV).removesuffix(".v1") for e in got]
    # Every join, commit and withdrawal is followed by the new aggregate; a request or a refusal is not.
    moving = ("initiative.joined", "initiative.committed", "initiative.participant_withdrawn")
    assert names[2:] == [
        x for t in types for x in ((t, "initiative.demand_aggregated") if t in moving else (t,))
    ]
    # A request and a refusal go to the lead nation, the nation that asked and NATO staff.
    asked = [
        (e.type.removeprefix(EV), e.data["nation"], e.releasable_to) for e in got if "withdrawal_" in e.type
    ]
    assert asked == [
        ("initiative.withdrawal_requested.v1", "POL", "DEU,NATO,POL"),
        ("initiative.withdrawal_requested.v1", "NLD", "DEU,NATO,NLD"),
        ("initiative.withdrawal_refused.v1", "NLD", "DEU,NATO,NLD"),
    ]
    assert got[names.index("initiative.withdrawal_requested")].data["reason"] == "budget cut (synthetic)"
    withdrawn = [e.data for e in got if e.type.endswith("participant_withdrawn.v1")]
    assert (withdrawn[0]["nation"], withdrawn[0]["amendment"], withdrawn[0]["approved_by"]) == (
        "POL",
        True,
        "deu-procurement",
    )
    assert withdrawn[0]["reason"] == "budget cut (synthetic)"
    assert (withdrawn[1]["amendment"], withdrawn[1]["approved_by"]) == (False, None)
    aggregates = [e.data for e in got if e.type.endswith("demand_aggregated.v1")]
    assert [(a["participants"], a["firm"].get(str(Y1), 0)) for a in aggregates] == [
        (1, 0),
        (2, 0),
        (3, 0),
        (3, 900),
        (3, 1300),
        (3, 1300),
        (2, 900),
        (3, 900),
        (2, 900),
    ]
    assert aggregates[-1]["funded"] == y({Y1: 900, Y2: 100}) and aggregates[-1]["unit"] == "rounds"
    r = await deu.get(path)
    assert r.headers["etag"] == f'"{r.json()["version"]}"'
    assert [h["action"] for h in r.json()["history"]][-7:] == [
        "commit",
        "request_withdrawal",
        "approve_withdrawal",
        "request_withdrawal",
        "refuse_withdrawal",
        "join",
        "withdraw",
    ]


async def test_cancelled_before_contract_with_a_reason(staff: Clients, events: Events) -> None:
    deu, fra = staff["deu"], staff["fra"]
    iid = await _drive(staff, ["open", "join", "commit", "close-participation", "tender"])
    problem(await act(deu, f"/v1/initiatives/{iid}/cancel", {"reason": ""}), 422)
    problem(await act(fra, f"/v1/initiatives/{iid}/cancel", {"reason": "mine"}), 403)
    i = await ok(deu, f"/v1/initiatives/{iid}/cancel", {"reason": "requirement withdrawn (synthetic)"})
    assert i["status"] == "cancelled" and i["cancellation_reason"] == "requirement withdrawn (synthetic)"
    # join, commit (to the lead and NATO), published at the tender, and two at the cancellation.
    got = await events(iid, f"{EV}initiative.cancelled.v1", *[f"{EV}initiative.demand_aggregated.v1"] * 5)
    assert [e.type.removeprefix(EV) for e in got[-3:]] == [
        "initiative.cancelled.v1",
        "initiative.demand_aggregated.v1",
        "initiative.demand_aggregated.v1",
    ]
    assert got[-3].data["reason"] == "requirement withdrawn (synthetic)"
    # Its demand leaves the picture for consumers too: zeros, to the lead nation and NATO staff; and to
    # every reader zeros for what was published (nothing here: one nation committed).
    gone, published_gone = got[-2], got[-1]
    assert (gone.data["participants"], gone.data["firm"], gone.data["indicative"]) == (
        0,
        y({Y1: 0}),
        y({Y1: 0}),
    )
    assert gone.releasable_to == "DEU,NATO"
    assert (published_gone.data["participants"], published_gone.data["firm"]) == (0, {})
    assert published_gone.releasable_to == "ALLIES"
    package = (await deu.get(f"/v1/initiatives/{iid}/ocds")).json()
    assert package["releases"][-1]["tag"] == ["tenderCancellation"]
    assert package["releases"][-1]["tender"]["status"] == "cancelled"
    # Cancelled initiatives leave the demand picture.
    product = i["item"]["product"]
    assert (await deu.get("/v1/demand", params={"product": product})).json()["items"] == []


# --- demand signals, the demand picture and capacity ----------------------------------------------------


async def test_demand_signals_and_the_demand_picture(staff: Clients, events: Events) -> None:
    deu, fra, pol, nld = staff["deu"], staff["fra"], staff["pol"], staff["nld"]
    product = new_product()
    signal = {
        "product": product,
        "capability_area": "munitions",
        "unit": "rounds",
        "firmness": "planned",
        "quantities": y({Y1: 1000, Y2: 2000}),
    }
    r = await fra.post("/v1/demand/signals", json=signal)
    assert r.status_code == 201, r.text
    s = r.json()
    assert r.headers["location"] == f"/v1/demand/signals/{s['id']}" and r.headers["etag"] == '"1"'
    assert (s["nation"], s["firmness"], s["quantities"]) == ("FRA", "planned", y({Y1: 1000, Y2: 2000}))
    assert (await nld.get(r.headers["location"])).json()["id"] == s["id"]
    r = await pol.post(
        "/v1/demand/signals", json=signal | {"firmness": "indicative", "quantities": y({Y1: 300})}
    )
    assert r.status_code == 201, r.text
    # Released to DEU only: NLD counts it nowhere.
    r = await pol.post(
        "/v1/demand/signals",
        json=signal
        | {
            "firmness": "funded",
            "quantities": y({Y1: 7}),
            "releasability": {"scope": "nations", "nations": ["DEU"]},
        },
    )
    hidden = r.json()
    problem(await nld.get(f"/v1/demand/signals/{hidden['id']}"), 404)
    # Each nation finds its signals again (to revise them); the hidden one stays hidden in lists too.
    mine = (await pol.get("/v1/demand/signals", params={"nation": "POL", "product": product})).json()
    assert len(mine["items"]) == 2 and {x["nation"] for x in mine["items"]} == {"POL"}
    seen = (await nld.get("/v1/demand/signals", params={"product": product})).json()["items"]
    assert hidden["id"] not in {x["id"] for x in seen} and len(seen) == 2
    problem(await fra.post("/v1/demand/signals", json=signal | {"quantities": {}}), 422)
    p = problem(await fra.post("/v1/demand/signals", json=signal | {"quantities": {"next": 1}}), 422)
    assert any(e["location"].startswith("body.quantities") for e in p["errors"])
    problem(await fra.post("/v1/demand/signals", json=signal | {"firmness": "certain"}), 422)
    problem(await staff["deu_planner"].post("/v1/demand/signals", json=signal), 403)

    # An initiative for the same product: FRA joined with 400, committed 200 firm of which 100 funded.
    iid = (await opened(deu, product=product))["id"]
    await ok(fra, f"/v1/initiatives/{iid}/join", {"indicative": y({Y1: 400})})
    await ok(fra, f"/v1/initiatives/{iid}/commit", {"firm": y({Y1: 200}), "funded": y({Y1: 100})})

    async def picture(client: httpx.AsyncClient) -> dict[str, Any]:
        r = await client.get("/v1/demand", params={"product": product})
        assert r.status_code == 200, r.text
        [line] = r.json()["items"]
        return dict(line)

    # NLD: the signals released to it; of the open initiative nothing (disclosure control).
    line = await picture(nld)
    assert (line["product"], line["unit"], line["signals"], line["initiatives"]) == (product, "rounds", 2, 0)
    assert line["years"][str(Y1)] == {
        "indicative": 300,
        "planned": 1000,
        "funded": 0,
        "contracted": 0,
        "firm": 1000,
        "total": 1300,
    }
    assert line["years"][str(Y2)] == {
        "indicative": 0,
        "planned": 2000,
        "funded": 0,
        "contracted": 0,
        "firm": 2000,
        "total": 2000,
    }
    # DEU, the lead nation: every signal released to it, and the initiative's demand as it stands.
    seen_by_deu = await picture(deu)
    assert (seen_by_deu["signals"], seen_by_deu["initiatives"]) == (3, 1)
    assert seen_by_deu["years"][str(Y1)] == {
        "indicative": 300 + 200,
        "planned": 1000 + 100,
        "funded": 7 + 100,
        "contracted": 0,
        "firm": 1207,
        "total": 1707,
    }
    # Without a product: every product the caller may see, this one among them.
    r = await nld.get("/v1/demand")
    assert product in {x["product"] for x in r.json()["items"]}

    # Revising a signal needs If-Match; only its nation revises it.
    change = {"firmness": "funded", "quantities": y({Y1: 1200})}
    url = f"/v1/demand/signals/{s['id']}"
    problem(await fra.put(url, json=change), 428)
    problem(await fra.put(url, json=change, headers={"If-Match": '"9"'}), 412)
    problem(await pol.put(url, json=change, headers={"If-Match": '"1"'}), 403)
    r = await fra.put(url, json=change, headers={"If-Match": '"1"'})
    assert r.status_code == 200, r.text
    assert (r.json()["version"], r.json()["firmness"], r.headers["etag"]) == (2, "funded", '"2"')
    line = await picture(deu)
    assert line["years"][str(Y1)]["funded"] == 1200 + 7 + 100 and line["years"][str(Y1)]["planned"] == 100
    assert str(Y2) not in line["years"]
    line = await picture(nld)
    assert line["years"][str(Y1)]["funded"] == 1200 and line["years"][str(Y1)]["planned"] == 0

    got = await events(s["id"], *[f"{EV}demand_signal.published.v1"] * 2)
    assert [(e.data["version"], e.data["firmness"], e.data["quantities"]) for e in got] == [
        (1, "planned", y({Y1: 1000, Y2: 2000})),
        (2, "funded", y({Y1: 1200})),
    ]
    assert got[0].nation == "FRA" and got[0].releasable_to == "ALLIES"


async def test_demand_against_committed_capacity(staff: Clients) -> None:
    deu, fra = staff["deu"], staff["fra"]
    product = new_product()
    year = 2026
    # DEU's accepted plan: 10,000 a month through 2025 and 2026, its capacity released to Allies.
    plan = {
        "title": f"Capacity {uuid.uuid4().hex[:6]} (synthetic)",
        "period_start": "2025-01-01",
        "period_end": "2026-12-31",
        "capability_areas": ["munitions"],
        "releasability": {"scope": "allies"},
        "content": {
            "commitments": [
                {
                    "key": "deu-a",
                    "product": product,
                    "capability_area": "munitions",
                    "site": "Site A (synthetic)",
                    "site_country": "DEU",
                    "unit": "rounds",
                    "baseline_per_month": 10_000,
                    "current_per_month": 10_000,
                    "target_per_month": 10_000,
                    "operator": {"company": "Synthetic Munitions GmbH", "sme": True},
                }
            ]
        },
    }
    r = await staff["deu_planner"].post("/v1/plans", json=plan)
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    for who, action in (
        ("deu_planner", "submit"),
        ("nato_reviewer", "start-review"),
        ("nato_reviewer", "accept"),
    ):
        assert (
            await staff[who].post(f"/v1/plans/{pid}/{action}", headers={"If-Match": "*"})
        ).status_code == 200
    # Demand: FRA's funded signal for the year.
    r = await fra.post(
        "/v1/demand/signals",
        json={
            "product": product,
            "capability_area": "munitions",
            "unit": "rounds",
            "firmness": "funded",
            "quantities": {str(year): 150_000},
        },
    )
    assert r.status_code == 201, r.text

    async def balance() -> dict[str, Any] | None:
        r = await fra.get("/v1/demand-capacity", params={"product": product})
        assert r.status_code == 200, r.text
        body = r.json()
        years = {b["year"]: b for b in body["years"]}
        return body if years.get(year, {}).get("capacity") == 120_000 else None

    body = await wait_for(balance, timeout=30, interval=0.3, what="capacity of the accepted plan")
    assert body is not None and body["product"] == product and body["unit"] == "rounds"
    years = {b["year"]: b for b in body["years"]}
    assert years[year]["demand"]["funded"] == 150_000
    assert (years[year]["gap"], years[year]["firm_gap"]) == (30_000, 30_000)
    assert years[2025]["capacity"] == 120_000 and years[2025]["gap"] == -120_000
    assert body["other_units"] == [] and all(b["shortfall_reported"] == 0 for b in body["years"])
    # Partners see neither the Allies-only plan nor the signal.
    r = await staff["ukr"].get("/v1/demand-capacity", params={"product": product})
    assert r.status_code == 200 and r.json()["years"] == [] and r.json()["unit"] is None
    problem(await deu.get("/v1/demand-capacity"), 422)
    # A blank product is refused, not read as "any product".
    for path in ("/v1/demand-capacity", "/v1/demand"):
        p = problem(await deu.get(path, params={"product": " "}), 422)
        assert p["errors"][0]["location"] == "query.product"

    # Demand in another unit is never added to rounds: the answer is in the capacity's unit, naming the
    # other.
    r = await fra.post(
        "/v1/demand/signals",
        json={
            "product": product,
            "capability_area": "munitions",
            "unit": "thousand rounds",
            "firmness": "funded",
            "quantities": {str(year): 5},
        },
    )
    assert r.status_code == 201, r.text
    body = (await fra.get("/v1/demand-capacity", params={"product": product})).json()
    assert (body["unit"], body["other_units"]) == ("rounds", ["thousand rounds"])
    assert {b["year"]: b for b in body["years"]}[year]["demand"]["funded"] == 150_000
    lines = (await fra.get("/v1/demand", params={"product": product})).json()["items"]
    assert [(x["unit"], x["years"][str(year)]["funded"]) for x in lines] == [
        ("rounds", 150_000),
        ("thousand rounds", 5),
    ]

    # DEU reports March short of the ramp, then reports March again: the later report counts.
    for actual in (6_000, 7_000):
        r = await staff["deu_planner"].post(
            f"/v1/plans/{pid}/commitments/deu-a/progress",
            json={"month": f"{year}-03-01", "actual_output": actual},
            headers={"If-Match": "*"},
        )
        assert r.status_code == 200 and r.json()["shortfall"], r.text

    async def reported() -> dict[str, Any] | None:
        r = await fra.get("/v1/demand-capacity", params={"product": product})
        years = {b["year"]: b for b in r.json()["years"]}
        return r.json() if years[year]["shortfall_reported"] == 3_000 else None

    body = await wait_for(reported, timeout=30, interval=0.3, what="the shortfall of the plan")
    assert body is not None and {b["year"]: b["shortfall_reported"] for b in body["years"]} == {
        2025: 0,
        year: 3_000,
    }


# --- disclosure control on aggregated demand ------------------------------------------------------------

#: Each nation's firm figure for Y1 (FRA also for Y2), chosen so that no sum of some of them equals
#: another: any of them (or a partial sum) seen by someone else would be a disclosure.
FIGURES = {"FRA": 11011, "POL": 20202, "NLD": 30303}
FRA_Y2 = 7007
TOTAL = sum(FIGURES.values())


def numbers_in(value: Any) -> set[int]:
    """Every whole number in a JSON value: its numbers and the digit runs of its strings (a figure in an
    OCDS rationale is text)."""
    if isinstance(value, bool):
        return set()
    if isinstance(value, int):
        return {value}
    if isinstance(value, str):
        return {int(run) for run in re.findall(r"\d+", value)}
    if isinstance(value, dict):
        return set().union(*(numbers_in(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(numbers_in(v) for v in value)) if value else set()
    return set()


def forbidden_for(nation: str, settled: bool) -> set[int]:
    """The figures `nation` must not see: every other nation's and every partial sum naming another
    nation, and the total until the demand is settled (then it is published: 3 nations commit to Y1)."""
    others = {n: q for n, q in FIGURES.items() if n != nation}
    partial = {a + b for a, b in itertools.combinations(FIGURES.values(), 2)}
    out = set(others.values()) | partial | ({FRA_Y2} if nation != "FRA" else set())
    return out if settled else out | {TOTAL}


async def test_aggregated_demand_reaches_others_only_settled_and_of_three_nations(
    staff: Clients, platform: Any, receiver: WebhookReceiver
) -> None:
    """With 1, 2 and 3 participants, a non-lead participant (FRA, and POL) and a partner (UKR) read every
    channel: the API, /v1/demand, /v1/demand-capacity, the OCDS release and record, webhooks, the feed and
    the stream; none of them ever carries another nation's figure, nor the total before it is settled
    (then only the firm demand of the year three nations commit to)."""
    deu, nato, ukr = staff["deu"], staff["nato"], staff["ukr"]
    product = new_product()
    subscribers = {"FRA": staff["fra"], "UKR": ukr}
    subs = {}
    for nation, client in subscribers.items():
        r = await client.post(
            "/v1/subscriptions",
            json={"url": f"{receiver.url}/{nation}", "products": [product], "description": "disclosure"},
        )
        assert r.status_code == 201, r.text
        subs[nation] = r.json()

    async with contextlib.AsyncExitStack() as stack:
        streams = {
            nation: await stack.enter_async_context(
                client.stream("GET", "/v1/events/stream", params={"products": product}, timeout=60)
            )
            for nation, client in subscribers.items()
        }
        for response in streams.values():
            assert response.status_code == 200
        lines = {nation: response.aiter_lines() for nation, response in streams.items()}
        i = await opened(
            deu,
            product=product,
            open_to_partners=["UKR"],
            releasability={"scope": "allies_partners", "nations": ["UKR"]},
        )
        iid = i["id"]
        readers = {"FRA": staff["fra"], "POL": staff["pol"], "UKR": ukr}

        async def everything_seen_by(client: httpx.AsyncClient) -> list[Any]:
            """The initiative, the demand, the demand against capacity and the OCDS release and record."""
            paths = (
                f"/v1/initiatives/{iid}",
                f"/v1/demand?product={product}",
                f"/v1/demand-capacity?product={product}",
                f"/v1/initiatives/{iid}/ocds",
                f"/v1/initiatives/{iid}/ocds/record",
            )
            answers = await asyncio.gather(*(client.get(p) for p in paths))
            for path, r in zip(paths, answers, strict=True):
                assert r.status_code == 200, (path, r.text)
            return [r.json() for r in answers]

        async def check(settled: bool) -> None:
            seen = await asyncio.gather(*(everything_seen_by(c) for c in readers.values()))
            for nation, got in zip(readers, seen, strict=True):
                leaked = numbers_in(got) & forbidden_for(nation, settled)
                assert not leaked, (nation, leaked)
                initiative = got[0]
                assert initiative["demand"]["disclosure"] == ("published" if settled else "withheld")
            # The lead nation and NATO staff see the aggregate as it stands.
            lead, nato_view = await asyncio.gather(
                ok_get(deu, f"/v1/initiatives/{iid}"), ok_get(nato, f"/v1/initiatives/{iid}")
            )
            assert lead["demand"] == nato_view["demand"] and lead["demand"]["disclosure"] == "full"

        # One, two, three participants: each joins and commits; nobody but the lead and NATO sees sums.
        for count, nation in enumerate(FIGURES, 1):
            client = staff[nation.lower()]
            figures = {Y1: FIGURES[nation], **({Y2: FRA_Y2} if nation == "FRA" else {})}
            await ok(client, f"/v1/initiatives/{iid}/join", {"indicative": y(figures)})
            await ok(client, f"/v1/initiatives/{iid}/commit", {"firm": y(figures), "funded": {}})
            await check(settled=False)
            lead = await ok_get(deu, f"/v1/initiatives/{iid}")
            assert lead["demand"]["participants"] == count
            assert lead["demand"]["firm"][str(Y1)] == sum(list(FIGURES.values())[:count])
            own = next(
                p
                for p in (await ok_get(client, f"/v1/initiatives/{iid}"))["participations"]
                if p["nation"] == nation
            )
            assert own["firm"][str(Y1)] == FIGURES[nation]  # a nation sees its own figure

        # Settled: participation closed (still withheld: figures may change), then the tender published.
        await ok(deu, f"/v1/initiatives/{iid}/close-participation")
        await check(settled=False)
        tender = {"lots": [{"id": "L1", "title": "all", "quantity": TOTAL}], "tender_period_end": DEADLINE}
        await ok(deu, f"/v1/initiatives/{iid}/tender", tender)
        await check(settled=True)
        published = (await ok_get(ukr, f"/v1/initiatives/{iid}"))["demand"]
        assert (published["firm"], published["indicative"], published["funded"]) == ({str(Y1): TOTAL}, {}, {})
        ocds_demand = (await ok_get(ukr, f"/v1/initiatives/{iid}/ocds"))["releases"][-1]["planning"][
            "icepDemand"
        ]
        assert ocds_demand["years"] == [{"year": Y1, "firm": TOTAL}]

        # The events each subscriber got, on the stream, the feed and its webhooks: the published aggregate
        # is the last of them (one aggregate's events keep their order); nothing before it carries a sum.
        def is_published(event: dict[str, Any]) -> bool:
            return event["type"] == f"{EV}initiative.demand_aggregated.v1" and event["subject"] == iid

        async def streamed(nation: str) -> list[dict[str, Any]]:
            got: list[dict[str, Any]] = []
            async for line in lines[nation]:
                if line.startswith("data:"):
                    got.append(json.loads(line.removeprefix("data:").strip()))
                    if is_published(got[-1]):
                        return got
            raise AssertionError("the stream ended")

        on_stream = dict(
            zip(
                subscribers,
                await asyncio.wait_for(asyncio.gather(*(streamed(n) for n in subscribers)), 60),
                strict=True,
            )
        )

    async def feed_and_hooks() -> dict[str, list[list[dict[str, Any]]]] | None:
        feeds = await asyncio.gather(
            *(c.get("/v1/events", params={"products": product, "limit": 200}) for c in subscribers.values())
        )
        out = {}
        for nation, page in zip(subscribers, feeds, strict=True):
            items = [e for e in page.json()["items"] if e["subject"] == iid]
            hooks = [h.json() for h in receiver.received() if h.path == f"/hooks/{nation}"]
            hooks = [e for e in hooks if e.get("subject") == iid]
            if not (any(map(is_published, items)) and any(map(is_published, hooks))):
                return None
            out[nation] = [items, hooks]
        return out

    channels = await wait_for(feed_and_hooks, timeout=60, interval=0.3, what="the feed and the webhooks")
    assert channels is not None
    for nation in subscribers:
        for got in (*channels[nation], on_stream[nation]):
            mine = [e for e in got if e["subject"] == iid]
            aggregates = [e for e in mine if is_published(e)]
            assert len(aggregates) == 1, (nation, [e["type"] for e in mine])  # published once, settled
            assert (
                aggregates[0]["data"]["firm"] == {str(Y1): TOTAL}
                and aggregates[0]["releasableto"] == "ALLIES,UKR"
            )
            at = next(n for n, e in enumerate(mine) if is_published(e))
            before, since = mine[:at], mine[at:]  # since: the published aggregate and the tender
            leaked = numbers_in([e["data"] for e in before]) & forbidden_for(nation, settled=False)
            assert not leaked, (nation, leaked)
            assert not numbers_in([e["data"] for e in since]) & forbidden_for(nation, settled=True)
            assert before, nation  # the participation's events came first (FRA's own, UKR's none)
