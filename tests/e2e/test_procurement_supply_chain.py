"""Supply-chain security and procurement's read models through the gateway, on real Kafka.

Suppliers are screened at registration (a person adjudicates every potential match); an award needs a
clear or cleared supplier whose product holds verified conformance with the required standard edition,
as the standards service announced it; a superseded edition flags the open initiatives requiring it; and
demand is set against the capacity of accepted national plans, as the plans service announced it, within
what the caller may see. Every company, product and figure here is synthetic.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from icep.platform.events import ReceivedEvent, decode
from icep.platform.testing import consumer_caught_up, read_records, wait_for

PROBLEM = "application/problem+json"
Clients = dict[str, httpx.AsyncClient]


def today() -> dt.date:
    """The date now, asked at each use (a run may cross midnight, UTC)."""
    return dt.datetime.now(dt.UTC).date()


NEXT_YEAR = today().year + 1


@pytest.fixture(scope="module")
async def people(platform: Any) -> AsyncIterator[Clients]:
    made = {
        name: await platform.as_client(client_id)
        for name, client_id in {
            "deu": "deu-procurement",
            "fra": "fra-procurement",
            "pol": "pol-procurement",
            "nato": "nato-procurement",
            "ukr": "ukr-procurement",
            "nato_std": "nato-standards",
            "deu_std": "deu-standards",
            "fra_std": "fra-standards",
            "deu_planner": "deu-planner",
            "pol_planner": "pol-planner",
            "nato_reviewer": "nato-reviewer",
        }.items()
    }
    try:
        yield made
    finally:
        for c in made.values():
            await c.aclose()


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    return dict(r.json())


async def ok(r: Any, status: int = 200) -> dict[str, Any]:
    response = await r
    assert response.status_code == status, response.text
    return dict(response.json())


async def events(platform: Any, topic: str, subject: str, *types: str) -> list[ReceivedEvent]:
    """The subject's events on a topic, in order, once every type named has arrived."""

    async def arrived() -> list[ReceivedEvent] | None:
        records = await read_records(platform.bootstrap, platform.topic(topic))
        mine = [e for e in (decode(r.key, r.value, r.headers) for r in records) if e.subject == subject]
        mine.sort(key=lambda e: (e.time, e.id))
        seen = [e.type for e in mine]
        return mine if all(seen.count(t) >= types.count(t) for t in set(types)) else None

    found = await wait_for(arrived, timeout=30, interval=0.2, what=f"events {types} of {subject}")
    assert found is not None
    return found


async def caught_up(platform: Any, topic: str) -> None:
    """Procurement's consumer has handled everything on `topic` so far."""
    group = f"{platform.namespace}icep-procurement"
    await wait_for(
        lambda: consumer_caught_up(platform.bootstrap, group, platform.topic(topic)),
        timeout=30,
        interval=0.2,
        what=f"procurement to catch up on {topic}",
    )


# --- suppliers ------------------------------------------------------------------------------------------


def supplier_body(name: str, country: str = "DEU", **extra: Any) -> dict[str, Any]:
    return {
        "organisation_id": f"HRB-{uuid.uuid4().hex[:10]}",
        "name": name,
        "scale": "sme",
        "country_of_incorporation": country,
        **extra,
    }


FAR = {"ultimate_parent": "Far Holdings (synthetic)", "ultimate_parent_country": "BLR"}
FAR_MATCH = "ultimate parent Far Holdings (synthetic) in BLR"


#: A change that does not care which version it changes (If-Match: * is the explicit "any").
ANY = {"If-Match": "*"}


def seen(record: dict[str, Any]) -> dict[str, str]:
    """If-Match: the version a person read (an adjudication names the matches it saw)."""
    return {"If-Match": f'"{record["version"]}"'}


async def adjudicate(
    client: httpx.AsyncClient, record: dict[str, Any], action: str, body: dict[str, Any]
) -> httpx.Response:
    return await client.post(f"/v1/suppliers/{record['id']}/{action}", json=body, headers=seen(record))


async def register(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    r = await client.post("/v1/suppliers", json=body)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v1/suppliers/{r.json()['id']}"
    return dict(r.json())


async def test_screening_clear_match_cleared_blocked(people: Clients, platform: Any) -> None:
    deu, fra, nato, ukr = people["deu"], people["fra"], people["nato"], people["ukr"]
    owners = [{"name": "Synthetic Holding AG", "country": "DEU", "share_percent": 100}]
    clean = await register(deu, supplier_body(unique("Synthetic Shells GmbH"), ownership_chain=owners))
    assert (clean["screening"], clean["matches"], clean["awardable"]) == ("clear", [], True)
    assert clean["lists_version"] and [h["action"] for h in clean["history"]] == ["registered", "screened"]
    assert clean["nation"] == "DEU" and clean["releasability"]["marking"] == "ALLIES"

    # Controlled from a restricted country: a potential match, for a person to adjudicate.
    eastern = await register(deu, supplier_body(unique("Eastern Alloys BV (synthetic)"), "NLD", **FAR))
    assert eastern["screening"] == "potential_match" and eastern["matches"] == [FAR_MATCH]
    assert eastern["awardable"] is False and eastern["adjudicator"] is None
    sid = eastern["id"]
    nora = {"adjudicator": "Nora Example"}
    problem(await adjudicate(fra, eastern, "clear", {"mitigation": "not mine", **nora}), 403)
    problem(await adjudicate(deu, eastern, "clear", {"mitigation": " ", **nora}), 422)
    # A named person adjudicates, having read the matches: without a name, or without If-Match, refused.
    p = problem(await adjudicate(nato, eastern, "clear", {"mitigation": "x"}), 422)
    assert p["errors"][0]["location"] == "body.adjudicator"
    problem(await adjudicate(nato, eastern, "clear", {"mitigation": "x", "adjudicator": "  "}), 422)
    p = problem(await nato.post(f"/v1/suppliers/{sid}/clear", json={"mitigation": "x", **nora}), 428)
    assert "If-Match" in p["detail"]
    problem(await nato.post(f"/v1/suppliers/{sid}/block", json={"reason": "x", **nora}), 428)
    stale = {"If-Match": '"1"'}
    r = await nato.post(f"/v1/suppliers/{sid}/clear", json={"mitigation": "x", **nora}, headers=stale)
    problem(r, 412)
    mitigation = "voting trust; parent excluded from the board and from classified work (synthetic)"
    r = await adjudicate(nato, eastern, "clear", {"mitigation": mitigation, **nora})
    assert r.status_code == 200, r.text
    cleared = r.json()
    # The person is on record, with the client they acted through.
    assert (cleared["screening"], cleared["mitigation"], cleared["adjudicator"]) == (
        "cleared",
        mitigation,
        "Nora Example (nato-procurement)",
    )
    assert cleared["history"][-1]["by"] == "Nora Example (nato-procurement)"
    assert cleared["adjudicated"] == [FAR_MATCH] and cleared["awardable"] is True
    assert r.headers["etag"] == f'"{cleared["version"]}"'
    # Adjudicated once: not again.
    second = {"reason": "second thoughts", "adjudicator": "Dieter Example"}
    problem(await adjudicate(deu, cleared, "block", second), 409)

    # Owned by a restricted party: blocked by the registering nation.
    owned = [{"name": "Sample Sanctioned Holdings (synthetic)", "country": "CYP", "share_percent": 60}]
    shady = await register(deu, supplier_body(unique("Harbour Fuzes Ltd"), "GBR", ownership_chain=owned))
    assert shady["matches"] == ["Sample Sanctioned Holdings (synthetic) is a restricted party"]
    reason = "majority owner is a restricted party; no mitigation offered (synthetic)"
    blocked = await ok(adjudicate(deu, shady, "block", {"reason": reason, "adjudicator": "Dieter Example"}))
    assert (blocked["screening"], blocked["blocked_reason"], blocked["adjudicator"]) == (
        "blocked",
        reason,
        "Dieter Example (deu-procurement)",
    )

    # The same organisation twice for one nation is a conflict that says so.
    again = {**supplier_body(clean["name"]), "organisation_id": clean["organisation_id"]}
    p = problem(await deu.post("/v1/suppliers", json=again), 409)
    assert clean["organisation_id"] in p["detail"] and "already registered" in p["detail"]
    # ...while another nation may register the same company for itself.
    assert (await fra.post("/v1/suppliers", json=again)).status_code == 201

    # Released to Allies: a partner finds nothing; an Ally lists what it may see.
    problem(await ukr.get(f"/v1/suppliers/{clean['id']}"), 404)
    assert (await fra.get(f"/v1/suppliers/{sid}")).json()["screening"] == "cleared"
    listed = await ok(fra.get("/v1/suppliers", params={"screening": "blocked", "limit": 200}))
    assert shady["id"] in [s["id"] for s in listed["items"]]
    assert all(s["screening"] == "blocked" for s in listed["items"])

    # Every step on Kafka, marked as the record is; a clean supplier is never flagged.
    topic = "icep.procurement.events"
    got = await events(
        platform,
        topic,
        sid,
        "icep.procurement.supplier.registered.v1",
        "icep.procurement.supplier.screened.v1",
        "icep.procurement.supplier.flagged.v1",
        "icep.procurement.supplier.cleared.v1",
    )
    by_type = {e.type.split(".")[3]: e for e in got}
    assert by_type["flagged"].data["matches"] == [FAR_MATCH]
    assert by_type["cleared"].data["adjudicator"] == "Nora Example (nato-procurement)"
    assert by_type["cleared"].data["mitigation"] == mitigation
    assert all(e.releasable_to == "ALLIES" and e.nation == "DEU" for e in got)
    got = await events(platform, topic, shady["id"], "icep.procurement.supplier.blocked.v1")
    assert got[-1].data["reason"] == reason
    assert got[-1].data["adjudicator"] == "Dieter Example (deu-procurement)"
    got = await events(platform, topic, clean["id"], "icep.procurement.supplier.screened.v1")
    assert [e.type.split(".")[3] for e in got] == ["registered", "screened"]
    assert got[-1].data["screening"] == "clear" and got[-1].data["matches"] == []


async def test_a_block_follows_the_organisation_to_every_nations_record(
    people: Clients, platform: Any
) -> None:
    deu, fra, pol = people["deu"], people["fra"], people["pol"]
    org = f"HRB-{uuid.uuid4().hex[:10]}"
    name = unique("Harbour Fuzes Ltd")
    owned = [{"name": "Sample Sanctioned Holdings (synthetic)", "country": "CYP", "share_percent": 60}]
    # POL registered the organisation first, without the owner: clear.
    early = await register(pol, {**supplier_body(name, "GBR"), "organisation_id": org})
    assert early["screening"] == "clear"
    # DEU registers it with its restricted owner, and a person blocks it.
    shady = await register(deu, {**supplier_body(name, "GBR", ownership_chain=owned), "organisation_id": org})
    person = {"adjudicator": "Dieter Example"}
    await ok(adjudicate(deu, shady, "block", {"reason": "restricted owner (synthetic)", **person}))
    blocked_by_deu = f"organisation {org} is blocked by DEU"
    # The block is a match on POL's record at once: a person must look again; no award meanwhile.
    now_pol = await ok(pol.get(f"/v1/suppliers/{early['id']}"))
    assert now_pol["screening"] == "potential_match" and now_pol["matches"] == [blocked_by_deu]
    assert now_pol["awardable"] is False
    flagged = await events(
        platform, "icep.procurement.events", early["id"], "icep.procurement.supplier.flagged.v1"
    )
    assert flagged[-1].data["matches"] == [blocked_by_deu]
    # FRA registers the same organisation again, owner left out: a potential match, saying why.
    again = await register(fra, {**supplier_body(name, "GBR"), "organisation_id": org})
    assert again["screening"] == "potential_match" and again["matches"] == [blocked_by_deu]
    # Clearing it is a person's decision on that match, recorded as such.
    cleared = await ok(
        adjudicate(fra, again, "clear", {"mitigation": "DEU's block concerns another site", **person})
    )
    assert (
        cleared["adjudicated"] == [blocked_by_deu]
        and cleared["adjudicator"] == "Dieter Example (fra-procurement)"
    )


async def test_screening_reads_names_as_a_person_would(people: Clients) -> None:
    deu = people["deu"]
    for variant in (
        "  Sample  Sanctioned Holdings (synthetic) ",
        "SAMPLE SANCTIONED HOLDINGS (SYNTHETIC)",
        "Sample\u00a0Sanctioned Holdings (synthetic)",
        "\uff33ample Sanctioned Holdings (synthetic)",
        "Sample Sanc\u200btioned Holdings (synthetic)",
    ):
        owned = [{"name": variant, "country": "CYP", "share_percent": 60}]
        s = await register(deu, supplier_body(unique("Harbour Fuzes Ltd"), "GBR", ownership_chain=owned))
        assert s["screening"] == "potential_match", variant
        assert s["matches"] == [f"{variant.strip()} is a restricted party"], s["matches"]
    parent = await register(
        deu,
        supplier_body(
            unique("Rhine Optics GmbH"),
            ultimate_parent=" Parent AG (synthetic) ",
            ultimate_parent_country="DEU",
        ),
    )
    assert parent["ultimate_parent"] == "Parent AG (synthetic)"


async def test_what_a_supplier_registration_takes(people: Clients) -> None:
    deu, nato, ukr = people["deu"], people["nato"], people["ukr"]
    for wrong, location in (
        ({"country_of_incorporation": "ABC"}, "body.country_of_incorporation"),
        ({"ultimate_parent": "P AG", "ultimate_parent_country": "XYZ"}, "body.ultimate_parent_country"),
        (
            {"ownership_chain": [{"name": "F", "country": "QQQ", "share_percent": 10}]},
            "body.ownership_chain.0.country",
        ),
        (
            {"ownership_chain": [{"name": "F", "country": "DEU", "share_percent": True}]},
            "body.ownership_chain.0.share_percent",
        ),
        (
            {
                "ownership_chain": [
                    {"name": "A", "country": "DEU", "share_percent": 60},
                    {"name": "B", "country": "FRA", "share_percent": 50},
                ]
            },
            "body.ownership_chain",
        ),
    ):
        p = problem(await deu.post("/v1/suppliers", json={**supplier_body(unique("Odd GmbH")), **wrong}), 422)
        assert p["errors"][0]["location"] == location, p
    # A partner registers a supplier, but NATO adjudicates its potential match.
    ukr_owned = [{"name": "Minor Fund (synthetic)", "country": "RUS", "share_percent": 5}]
    s = await register(ukr, supplier_body(unique("Dnipro Optics"), "UKR", ownership_chain=ukr_owned))
    assert s["screening"] == "potential_match" and s["nation"] == "UKR"
    body = {"mitigation": "minor stake, no control (synthetic)", "adjudicator": "Olena Example"}
    p = problem(await adjudicate(ukr, s, "clear", body), 403)
    assert "NATO's procurement staff" in p["detail"]
    cleared = await ok(adjudicate(nato, s, "clear", {**body, "adjudicator": "Nora Example"}))
    assert cleared["screening"] == "cleared"


# --- awards, on the standards service's events ----------------------------------------------------------


def standard_body(number: str, edition: int, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "STANAG",
        "number": number,
        "edition": edition,
        "title": "Ammunition interchangeability, 155 mm (synthetic)",
        "domain": "land",
        "capability_areas": ["munitions"],
        "levels": ["1", "2"],
        **extra,
    }


async def promulgate(nato_std: httpx.AsyncClient, number: str, edition: int, **extra: Any) -> str:
    created = await ok(nato_std.post("/v1/standards", json=standard_body(number, edition, **extra)), 201)
    await ok(nato_std.post(f"/v1/standards/{created['id']}/circulate", headers=ANY))
    done = await ok(nato_std.post(f"/v1/standards/{created['id']}/promulgate", headers=ANY))
    assert done["status"] == "promulgated"
    return str(created["id"])


def initiative_body(product: str, number: str, edition: int) -> dict[str, Any]:
    return {
        "title": f"Joint buy of {product} (synthetic)",
        "item": {"product": product, "unit": "rounds"},
        "capability_area": "munitions",
        "required_standards": [{"number": number, "edition": edition}],
        "participation_deadline": (today() + dt.timedelta(days=60)).isoformat(),
    }


async def tendering(
    c: Clients, product: str, number: str, edition: int, lead: str = "deu", joins: str = "fra"
) -> dict[str, Any]:
    """An initiative led by DEU (`lead`), FRA (`joins`) committed to 1,000 rounds, tendered in one lot."""
    deu, fra = c[lead], c[joins]
    i = await ok(deu.post("/v1/initiatives", json=initiative_body(product, number, edition)), 201)
    iid = i["id"]
    await ok(deu.post(f"/v1/initiatives/{iid}/open", headers=ANY))
    await ok(
        fra.post(f"/v1/initiatives/{iid}/join", json={"indicative": {str(NEXT_YEAR): 1200}}, headers=ANY)
    )
    commit = {"firm": {str(NEXT_YEAR): 1000}, "funded": {str(NEXT_YEAR): 800}}
    await ok(fra.post(f"/v1/initiatives/{iid}/commit", json=commit, headers=ANY))
    await ok(deu.post(f"/v1/initiatives/{iid}/close-participation", headers=ANY))
    tender = {
        "lots": [{"id": "L1", "title": f"{product}, lot 1", "quantity": 1000}],
        "tender_period_end": (today() + dt.timedelta(days=90)).isoformat(),
    }
    done = await ok(deu.post(f"/v1/initiatives/{iid}/tender", json=tender, headers=ANY))
    assert done["status"] == "tendering"
    return done


def award_body(supplier_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "awards": [
            {
                "lot_id": "L1",
                "supplier_id": supplier_id,
                "quantity": 1000,
                "value": 4.2e6,
                "currency": "EUR",
                **extra,
            }
        ]
    }


async def test_award_needs_clearance_and_verified_conformance_then_a_new_edition_flags(
    people: Clients, platform: Any
) -> None:
    deu, nato_std, deu_std = people["deu"], people["nato_std"], people["deu_std"]
    number = f"47{uuid.uuid4().int % 10**8:08d}"
    ed1 = await promulgate(nato_std, number, 1)
    product = unique("155mm HE round")
    code = f"SM155-{uuid.uuid4().hex[:8]}"
    i = await tendering(people, product, number, 1)
    iid = i["id"]

    # A potential match nobody adjudicated: refused, saying why.
    eastern = await register(
        deu, supplier_body(unique("Eastern Alloys BV (synthetic)"), "NLD", products=[code], **FAR)
    )
    p = problem(
        await deu.post(f"/v1/initiatives/{iid}/award", json=award_body(eastern["id"]), headers=ANY), 409
    )
    assert p["type"].endswith("/award-refused") and p["title"] == "Award refused"
    assert "potential match" in p["detail"] and eastern["name"] in p["detail"]
    assert (p["supplier_id"], p["screening"]) == (eastern["id"], "potential_match")

    # A clear supplier whose product holds no verified conformance yet: refused, naming the edition.
    clean = await register(deu, supplier_body(unique("Synthetic Shells GmbH"), products=[code]))
    p = problem(
        await deu.post(f"/v1/initiatives/{iid}/award", json=award_body(clean["id"]), headers=ANY), 409
    )
    assert p["type"].endswith("/award-refused")
    assert f"holds no verified conformance with {number} Ed. 1" in p["detail"]
    assert p["missing_standards"] == [f"{number} Ed. 1"] and p["product_code"] == code

    # A bid or award names only a supplier whose record everyone who may read the initiative may read.
    national = await register(
        deu, supplier_body(unique("Quiet Optics GmbH"), products=[code], releasability={"scope": "national"})
    )
    bid = {"lot_id": "L1", "supplier_id": national["id"], "quantity": 1000, "value": 4.2e6, "currency": "EUR"}
    p = problem(await deu.post(f"/v1/initiatives/{iid}/bids", json=bid, headers=ANY), 422)
    assert p["errors"][0]["location"] == "body.supplier_id"
    assert "not released to ALLIES" in p["detail"] and "as widely as the initiative" in p["detail"]
    p = problem(
        await deu.post(f"/v1/initiatives/{iid}/award", json=award_body(national["id"]), headers=ANY), 422
    )
    assert p["errors"][0]["location"] == "body.awards.0.supplier_id"
    # A currency is an ISO 4217 code, a quantity a number.
    bid = {**bid, "supplier_id": clean["id"]}
    for wrong in ({"currency": "ABC"}, {"currency": "XCG"}, {"quantity": True}):
        problem(await deu.post(f"/v1/initiatives/{iid}/bids", json={**bid, **wrong}, headers=ANY), 422)
        wrong_award = award_body(clean["id"], **wrong)
        problem(await deu.post(f"/v1/initiatives/{iid}/award", json=wrong_award, headers=ANY), 422)

    # The standards service: DEU claims conformance for the product, NATO tests and verifies it.
    product_in_claim = {"manufacturer": clean["name"], "product_code": code, "name": product}
    claim = await ok(
        deu_std.post(
            "/v1/standards/conformance", json={"product": product_in_claim, "standard_id": ed1, "level": "2"}
        ),
        201,
    )
    # Claimed is not verified.
    await events(platform, "icep.standards.events", claim["id"], "icep.standards.conformance.claimed.v1")
    await caught_up(platform, "icep.standards.events")
    p = problem(
        await deu.post(f"/v1/initiatives/{iid}/award", json=award_body(clean["id"]), headers=ANY), 409
    )
    assert p["missing_standards"] == [f"{number} Ed. 1"]
    await ok(nato_std.post(f"/v1/standards/conformance/{claim['id']}/start-test", headers=ANY))
    expires = (today() + dt.timedelta(days=365)).isoformat()
    verified = await ok(
        nato_std.post(
            f"/v1/standards/conformance/{claim['id']}/verify",
            json={"expires_on": expires, "evidence": ["firing trial report (synthetic)"]},
            headers=ANY,
        )
    )
    assert verified["status"] == "verified"
    await events(platform, "icep.standards.events", claim["id"], "icep.standards.conformance.verified.v1")
    await caught_up(platform, "icep.standards.events")

    # The product offered, if named, is one of the supplier's.
    p = problem(
        await deu.post(
            f"/v1/initiatives/{iid}/award", json=award_body(clean["id"], product_code="NOPE"), headers=ANY
        ),
        422,
    )
    assert p["errors"][0]["location"] == "body.awards.0.product_code"
    awarded = await ok(
        deu.post(f"/v1/initiatives/{iid}/award", json=award_body(clean["id"], product_code=code), headers=ANY)
    )
    assert awarded["status"] == "awarded"
    [a] = awarded["awards"]
    assert (a["supplier_id"], a["supplier_name"], a["quantity"]) == (clean["id"], clean["name"], 1000)

    # Another initiative requires Ed. 1 and is only proposed; a third requires another number.
    proposed = await ok(deu.post("/v1/initiatives", json=initiative_body(unique("155mm"), number, 1)), 201)
    other = await ok(deu.post("/v1/initiatives", json=initiative_body(unique("155mm"), number + "9", 1)), 201)

    # Ed. 2 is promulgated: Ed. 1 is superseded, and the initiatives requiring it are flagged.
    await promulgate(nato_std, number, 2, supersedes=ed1)
    await events(platform, "icep.standards.events", ed1, "icep.standards.standard.superseded.v1")
    flagged_events = await events(
        platform, "icep.procurement.events", iid, "icep.procurement.initiative.flagged.v1"
    )
    flag = flagged_events[-1]
    assert (flag.data["standard_number"], flag.data["standard_edition"], flag.data["standard_status"]) == (
        number,
        1,
        "superseded",
    )
    assert flag.data["reason"] == f"required standard {number} Ed. 1 is superseded"
    assert flag.data["status"] == "awarded" and flag.releasable_to == "ALLIES"
    await events(
        platform, "icep.procurement.events", proposed["id"], "icep.procurement.initiative.flagged.v1"
    )
    await caught_up(platform, "icep.standards.events")

    now = await ok(deu.get(f"/v1/initiatives/{iid}"))
    [f] = now["flags"]
    assert f["standard"] == {"number": number, "edition": 1, "label": f"{number} Ed. 1"}
    assert f["standard_status"] == "superseded" and now["status"] == "awarded"
    assert now["history"][-1]["action"] == "flagged" and now["version"] == awarded["version"] + 1
    assert len((await ok(deu.get(f"/v1/initiatives/{proposed['id']}")))["flags"]) == 1
    assert (await ok(deu.get(f"/v1/initiatives/{other['id']}")))["flags"] == []
    # Flagged once: the event is not repeated.
    got = await events(platform, "icep.procurement.events", iid, "icep.procurement.initiative.flagged.v1")
    assert [e.type for e in got].count("icep.procurement.initiative.flagged.v1") == 1


async def claim_verified(
    c: Clients, manufacturer: str, code: str, standard_id: str, releasability: dict[str, Any]
) -> dict[str, Any]:
    """DEU's standards staff claim conformance of the product, NATO tests and verifies it."""
    product = {"manufacturer": manufacturer, "product_code": code, "name": "155mm HE round (synthetic)"}
    body = {"product": product, "standard_id": standard_id, "level": "2", "releasability": releasability}
    claim = await ok(c["deu_std"].post("/v1/standards/conformance", json=body), 201)
    await ok(c["nato_std"].post(f"/v1/standards/conformance/{claim['id']}/start-test", headers=ANY))
    expires = (today() + dt.timedelta(days=365)).isoformat()
    verify = {"expires_on": expires, "evidence": ["firing trial report (synthetic)"]}
    done = await ok(
        c["nato_std"].post(f"/v1/standards/conformance/{claim['id']}/verify", json=verify, headers=ANY)
    )
    assert done["status"] == "verified"
    return done


async def test_an_award_counts_only_claims_every_reader_may_see_that_name_the_product(
    people: Clients, platform: Any
) -> None:
    fra = people["fra"]
    number = f"48{uuid.uuid4().int % 10**8:08d}"
    ed1 = await promulgate(people["nato_std"], number, 1)
    code = f"FR155-{uuid.uuid4().hex[:8]}"
    i = await tendering(people, unique("155mm HE round"), number, 1, lead="fra", joins="deu")
    iid = i["id"]
    french = await register(fra, supplier_body(unique("Obus de Synthese SA"), "FRA", products=[code]))
    award = award_body(french["id"])

    async def refusal() -> httpx.Response:
        r = await fra.post(f"/v1/initiatives/{iid}/award", json=award, headers=ANY)
        problem(r, 409)
        return r

    no_claim = await refusal()

    # A DEU national claim (DEU and NATO only) for exactly this product, verified by NATO: FRA cannot read
    # it, so it does not count, and the refusal is the very one of no claim at all (no oracle).
    national = await claim_verified(people, french["name"], code, ed1, {"scope": "national"})
    problem(await fra.get(f"/v1/standards/conformance/{national['id']}"), 404)
    # The same code by another manufacturer, released to all Allies: another product, not counted.
    other_maker = await claim_verified(people, "Other Works GmbH (synthetic)", code, ed1, {"scope": "allies"})
    for claim in (national, other_maker):
        await events(platform, "icep.standards.events", claim["id"], "icep.standards.conformance.verified.v1")
    await caught_up(platform, "icep.standards.events")
    refused = await refusal()
    assert refused.content == no_claim.content
    assert refused.json()["missing_standards"] == [f"{number} Ed. 1"]
    assert national["id"] not in refused.text and "DEU" not in refused.text

    # A claim every reader of the initiative may read (all Allies), naming the supplier as manufacturer
    # (as screening compares names: case and spacing aside): the award is made.
    readable = await claim_verified(people, f"  {french['name'].upper()} ", code, ed1, {"scope": "allies"})
    await events(platform, "icep.standards.events", readable["id"], "icep.standards.conformance.verified.v1")
    await caught_up(platform, "icep.standards.events")
    awarded = await ok(fra.post(f"/v1/initiatives/{iid}/award", json=award, headers=ANY))
    assert awarded["status"] == "awarded" and awarded["awards"][0]["supplier_id"] == french["id"]


async def test_conformance_is_verified_independently_unless_the_setting_allows_self_verification(
    people: Clients, platform: Any
) -> None:
    deu_std, fra_std, nato_std = people["deu_std"], people["fra_std"], people["nato_std"]
    number = f"49{uuid.uuid4().int % 10**8:08d}"
    std = await promulgate(nato_std, number, 1)
    expires = (today() + dt.timedelta(days=365)).isoformat()
    verify = {"expires_on": expires, "evidence": ["trial report (synthetic)"]}

    async def under_test(releasability: dict[str, Any]) -> str:
        product = {"manufacturer": "Synthetic Works", "product_code": unique("SW"), "name": "Round"}
        body = {"product": product, "standard_id": std, "level": "1", "releasability": releasability}
        claim = await ok(deu_std.post("/v1/standards/conformance", json=body), 201)
        await ok(deu_std.post(f"/v1/standards/conformance/{claim['id']}/start-test", headers=ANY))
        return str(claim["id"])

    own, by_fra, later = [await under_test({"scope": "allies"}) for _ in range(3)]
    p = problem(await deu_std.post(f"/v1/standards/conformance/{own}/verify", json=verify, headers=ANY), 403)
    assert "independently" in p["detail"]
    # Another nation's test centre (the claim is released to FRA), or NATO, verifies.
    done = await ok(fra_std.post(f"/v1/standards/conformance/{by_fra}/verify", json=verify, headers=ANY))
    assert done["status"] == "verified" and done["history"][-1]["by"].startswith("fra-standards")
    # A deployment that allows self-verification (ICEP_STANDARDS_ALLOW_SELF_VERIFICATION).
    platform.restart("standards", {"ICEP_STANDARDS_ALLOW_SELF_VERIFICATION": "true"})
    try:
        done = await ok(deu_std.post(f"/v1/standards/conformance/{own}/verify", json=verify, headers=ANY))
        assert done["status"] == "verified"
    finally:
        platform.restart("standards")
    problem(await deu_std.post(f"/v1/standards/conformance/{later}/verify", json=verify, headers=ANY), 403)


# --- demand against capacity, on the plans service's events ---------------------------------------------


def commitment(key: str, product: str, current: int, ramp: list[tuple[str, int]]) -> dict[str, Any]:
    return {
        "key": key,
        "product": product,
        "capability_area": "munitions",
        "site": f"{key} works (synthetic)",
        "site_country": "DEU",
        "unit": "rounds",
        "baseline_per_month": current,
        "current_per_month": current,
        "target_per_month": max([current, *(o for _, o in ramp)]),
        "ramp": [{"on": on, "output_per_month": o} for on, o in ramp],
        "operator": {"company": "Synthetic Munitions GmbH", "sme": True},
        "bottlenecks": [],
    }


def plan_body(commitments: list[dict[str, Any]], scope: str = "allies") -> dict[str, Any]:
    return {
        "title": f"Capacity {uuid.uuid4().hex[:6]} (synthetic)",
        "period_start": "2025-01-01",
        "period_end": "2026-12-31",
        "capability_areas": ["munitions"],
        "releasability": {"scope": scope},
        "content": {"commitments": commitments},
    }


async def accepted_plan(c: Clients, planner: str, body: dict[str, Any]) -> str:
    pid = str((await ok(c[planner].post("/v1/plans", json=body), 201))["id"])
    for who, action in ((planner, "submit"), ("nato_reviewer", "start-review"), ("nato_reviewer", "accept")):
        await ok(c[who].post(f"/v1/plans/{pid}/{action}", headers=ANY))
    return pid


async def balance(client: httpx.AsyncClient, product: str) -> dict[int, dict[str, Any]]:
    found = await ok(client.get("/v1/demand-capacity", params={"product": product}))
    assert found["product"] == product
    return {line["year"]: line for line in found["years"]}


async def capacity_of(client: httpx.AsyncClient, product: str) -> dict[int, int]:
    return {y: line["capacity"] for y, line in (await balance(client, product)).items() if line["capacity"]}


async def settle(platform: Any, client: httpx.AsyncClient, product: str, want: dict[int, int]) -> None:
    async def there() -> bool:
        return await capacity_of(client, product) == want

    await wait_for(there, timeout=30, interval=0.2, what=f"capacity {want} of {product}")


async def test_demand_against_the_capacity_each_caller_may_see(people: Clients, platform: Any) -> None:
    fra, pol, ukr = people["fra"], people["pol"], people["ukr"]
    product = unique("155mm capacity round")
    # DEU: 10,000 a month, 20,000 from July 2026; released to Allies.
    deu_plan = await accepted_plan(
        people, "deu_planner", plan_body([commitment("deu-a", product, 10_000, [("2026-07-01", 20_000)])])
    )
    # Demand: POL's funded signal for 2026, FRA's indicative one for 2025.
    signal = {"product": product, "capability_area": "munitions", "unit": "rounds"}
    await ok(
        pol.post("/v1/demand/signals", json=signal | {"firmness": "funded", "quantities": {"2026": 250_000}}),
        201,
    )
    await ok(
        fra.post(
            "/v1/demand/signals", json=signal | {"firmness": "indicative", "quantities": {"2025": 50_000}}
        ),
        201,
    )

    deu_2025, deu_2026 = 12 * 10_000, 6 * 10_000 + 6 * 20_000  # planned_in_year of the ramp
    await settle(platform, fra, product, {2025: deu_2025, 2026: deu_2026})
    lines = await balance(fra, product)
    assert lines[2025]["demand"]["total"] == 50_000 and lines[2025]["demand"]["firm"] == 0
    assert (lines[2025]["gap"], lines[2025]["firm_gap"]) == (50_000 - deu_2025, -deu_2025)
    assert lines[2026]["demand"]["funded"] == 250_000
    assert (lines[2026]["gap"], lines[2026]["firm_gap"]) == (250_000 - deu_2026, 250_000 - deu_2026)
    # A partner sees neither the Allies' demand nor capacity released to Allies only.
    assert await capacity_of(ukr, product) == {}

    # POL's plan is national: counted for POL alone.
    pol_plan = await accepted_plan(
        people, "pol_planner", plan_body([commitment("pol-a", product, 5_000, [])], scope="national")
    )
    await settle(platform, pol, product, {2025: deu_2025 + 60_000, 2026: deu_2026 + 60_000})
    await caught_up(platform, "icep.plans.events")
    assert await capacity_of(fra, product) == {2025: deu_2025, 2026: deu_2026}
    assert await capacity_of(ukr, product) == {}

    # POL releases its capacity figures (not the plan) to Allies and UKR: now FRA and UKR count them.
    release = {
        "releasability": {"scope": "national"},
        "capacity_releasability": {"scope": "allies_partners", "nations": ["UKR"]},
    }
    await ok(people["pol_planner"].post(f"/v1/plans/{pol_plan}/release", json=release, headers=ANY))
    await settle(platform, fra, product, {2025: deu_2025 + 60_000, 2026: deu_2026 + 60_000})
    await settle(platform, ukr, product, {2025: 60_000, 2026: 60_000})
    ukr_lines = await balance(ukr, product)
    assert ukr_lines[2026]["demand"]["total"] == 0 and ukr_lines[2026]["gap"] == -60_000
    # ...and back to POL alone.
    await ok(
        people["pol_planner"].post(
            f"/v1/plans/{pol_plan}/release", json={"releasability": {"scope": "national"}}, headers=ANY
        )
    )
    await settle(platform, ukr, product, {})
    await settle(platform, fra, product, {2025: deu_2025, 2026: deu_2026})

    # DEU's newer plan for the same period supersedes the first: only its figures count.
    await accepted_plan(people, "deu_planner", plan_body([commitment("deu-b", product, 12_000, [])]))
    await settle(platform, fra, product, {2025: 144_000, 2026: 144_000})
    superseded = await events(platform, "icep.plans.events", deu_plan, "icep.plans.plan.superseded.v1")
    assert superseded[-1].data["plan_id"] == deu_plan
    assert (await balance(fra, product))[2026]["gap"] == 250_000 - 144_000


# --- re-screening when the lists change -----------------------------------------------------------------


async def test_a_change_of_the_lists_rescreens_everyone_on_the_next_start(
    kafka_bootstrap: str, start_platform: Any
) -> None:
    running = await start_platform(kafka_bootstrap)
    deu = await running.as_client("deu-procurement")
    try:
        nld_owned = [{"name": "Polder Capital BV (synthetic)", "country": "NLD", "share_percent": 40}]
        plain = await register(
            deu, supplier_body("Rhine Propellants GmbH (synthetic)", ownership_chain=nld_owned)
        )
        eastern = await register(deu, supplier_body("Eastern Alloys BV (synthetic)", "NLD", **FAR))
        person = {"adjudicator": "Dieter Example"}
        cleared = await ok(
            adjudicate(deu, eastern, "clear", {"mitigation": "proxy board (synthetic)", **person})
        )
        blocked = await register(deu, supplier_body("Border Optics OOO (synthetic)", "RUS"))
        await ok(adjudicate(deu, blocked, "block", {"reason": "incorporated in RUS (synthetic)", **person}))
        assert plain["screening"] == "clear" and cleared["screening"] == "cleared"

        # The lists change: NLD is added and BLR stays; the service restarts with them.
        lists = '["RUS", "BLR", "NLD"]'
        running.restart("procurement", {"ICEP_PROCUREMENT_RESTRICTED_COUNTRIES": lists})

        async def rescreened() -> dict[str, Any] | None:
            got = await ok(deu.get(f"/v1/suppliers/{plain['id']}"))
            return got if got["lists_version"] != plain["lists_version"] else None

        now_plain = await wait_for(rescreened, timeout=30, interval=0.2, what="the re-screening")
        assert now_plain["screening"] == "potential_match"
        assert now_plain["matches"] == ["owner Polder Capital BV (synthetic) (40 %) in NLD"]
        # A new match for a cleared supplier: a person must look again. A block stands.
        now_eastern = await ok(deu.get(f"/v1/suppliers/{eastern['id']}"))
        assert now_eastern["screening"] == "potential_match"
        assert now_eastern["matches"] == ["incorporated in NLD", FAR_MATCH]
        now_blocked = await ok(deu.get(f"/v1/suppliers/{blocked['id']}"))
        assert (
            now_blocked["screening"] == "blocked"
            and now_blocked["lists_version"] == now_plain["lists_version"]
        )
        # Blocked at version 3 (registered, screened, blocked); the outcome stands: no new version.
        assert now_blocked["version"] == 3

        got = await events(
            running,
            "icep.procurement.events",
            plain["id"],
            "icep.procurement.supplier.screened.v1",
            "icep.procurement.supplier.screened.v1",
            "icep.procurement.supplier.flagged.v1",
        )
        assert got[-1].data["matches"] == now_plain["matches"]

        # Restarted with the same lists: nobody is screened again.
        running.restart("procurement", {"ICEP_PROCUREMENT_RESTRICTED_COUNTRIES": lists})
        await wait_for(
            lambda: _rescreen_ran(running),
            timeout=30,
            interval=0.1,
            what="the re-screening to run after the restart",
        )
        assert (await ok(deu.get(f"/v1/suppliers/{plain['id']}")))["version"] == now_plain["version"]
        records = await read_records(running.bootstrap, running.topic("icep.procurement.events"))
        screened = [
            e
            for e in (decode(r.key, r.value, r.headers) for r in records)
            if e.type == "icep.procurement.supplier.screened.v1" and e.subject == blocked["id"]
        ]
        assert len(screened) == 1  # at registration only
    finally:
        await deu.aclose()


async def _rescreen_ran(running: Any) -> bool:
    return (
        await running.metric("procurement", "icep_procurement_rescreen_runs_total", service="procurement")
        >= 1
    )
