"""Standards and interoperability through the gateway: the catalogue's life, who may record which national
answer, conformance, interchangeability, the answers people need, and every event read back from Kafka."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from icep.platform.events import ReceivedEvent, decode
from icep.platform.testing import WebhookReceiver, consumer_caught_up, read_records, wait_for

PROBLEM = "application/problem+json"
Clients = dict[str, httpx.AsyncClient]


def today() -> dt.date:
    """The date now, asked at each use: a run that crosses midnight (UTC) must not compare with the date
    the module was imported on."""
    return dt.datetime.now(dt.UTC).date()


@pytest.fixture(scope="module")
async def staff(platform: Any) -> AsyncIterator[Clients]:
    """Standards staff of DEU, FRA, POL and NATO; a DEU planner (no standards role); UKR, a partner."""
    made = {
        name: await platform.as_client(client_id)
        for name, client_id in {
            "deu": "deu-standards",
            "fra": "fra-standards",
            "pol": "pol-standards",
            "nato": "nato-standards",
            "deu_planner": "deu-planner",
            "ukr": "ukr-partner",
        }.items()
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
        """The subject's events on Kafka, in order, once every type named has arrived."""

        async def arrived() -> list[ReceivedEvent] | None:
            records = await read_records(platform.bootstrap, platform.topic("icep.standards.events"))
            mine = sorted(
                (e for e in (decode(r.key, r.value, r.headers) for r in records) if e.subject == subject),
                key=lambda e: e.id,
            )
            seen = [e.type for e in mine]
            return mine if all(seen.count(t) >= types.count(t) for t in set(types)) else None

        found = await wait_for(arrived, timeout=30, interval=0.2, what=f"events {types} of {subject}")
        assert found is not None
        return found

    return read


def standard_body(number: str | None = None, edition: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "STANAG",
        "number": number or f"9{uuid.uuid4().int % 10**8:08d}",
        "edition": edition,
        "title": "Protection levels for occupants of logistic and light armoured vehicles",
        "covering_publications": ["AEP-55"],
        "domain": "land",
        "capability_areas": ["protection"],
        "levels": ["1", "2", "3", "4", "5", "6"],
        **extra,
    }


async def act(
    client: httpx.AsyncClient, path: str, body: Any = None, version: int | str = "*"
) -> httpx.Response:
    """POST an action; `version` is what If-Match names: a version read, or `*` (the default here, where
    the test is about something else than concurrent changes)."""
    return await client.post(path, json=body, headers={"If-Match": "*" if version == "*" else f'"{version}"'})


def if_match(record: dict[str, Any]) -> dict[str, str]:
    return {"If-Match": f'"{record["version"]}"'}


#: A change that does not care which version it changes.
ANY = {"If-Match": "*"}


async def promulgated(nato: httpx.AsyncClient, **kw: Any) -> dict[str, Any]:
    r = await nato.post("/v1/standards", json=standard_body(**kw))
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert (await act(nato, f"/v1/standards/{sid}/circulate")).status_code == 200
    r = await act(nato, f"/v1/standards/{sid}/promulgate")
    assert r.status_code == 200, r.text
    return dict(r.json())


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    return dict(r.json())


# --- the catalogue --------------------------------------------------------------------------------------


async def test_a_standard_from_study_to_superseded_with_every_event(staff: Clients, events: Events) -> None:
    nato = staff["nato"]
    number = f"45{uuid.uuid4().int % 10**8:08d}"
    r = await nato.post("/v1/standards", json=standard_body(number, 2))
    assert r.status_code == 201, r.text
    ed2 = r.json()
    assert ed2["status"] == "study" and ed2["reference"] == f"STANAG {number} Ed. 2"
    assert r.headers["etag"] == '"1"' and r.headers["location"] == f"/v1/standards/{ed2['id']}"
    assert ed2["releasability"]["marking"] == "ALLIES"

    # A stale If-Match is refused; the current one is taken.
    problem(await act(nato, f"/v1/standards/{ed2['id']}/circulate", version=7), 412)
    r = await act(nato, f"/v1/standards/{ed2['id']}/circulate", version=1)
    assert r.status_code == 200 and r.json()["status"] == "ratification_draft"
    r = await act(nato, f"/v1/standards/{ed2['id']}/promulgate", version=2)
    assert r.json()["status"] == "promulgated" and r.json()["promulgated_on"] == today().isoformat()

    r = await nato.post("/v1/standards", json=standard_body(number, 3, supersedes=ed2["id"]))
    assert r.status_code == 201, r.text
    ed3 = r.json()
    # The same edition twice is a conflict, not a second record.
    p = problem(await nato.post("/v1/standards", json=standard_body(number, 3)), 409)
    assert p["detail"] == f"STANAG {number} Ed. 3 is already in the catalogue"
    await act(nato, f"/v1/standards/{ed3['id']}/circulate")
    r = await act(nato, f"/v1/standards/{ed3['id']}/promulgate")
    assert r.json()["status"] == "promulgated"

    # Promulgating Ed. 3 superseded Ed. 2 in the same transaction.
    old = (await nato.get(f"/v1/standards/{ed2['id']}")).json()
    assert old["status"] == "superseded" and old["superseded_by"] == ed3["id"]
    assert [h["action"] for h in old["history"]] == ["drafted", "circulate", "promulgate", "supersede"]

    got = await events(
        ed2["id"],
        "icep.standards.standard.drafted.v1",
        "icep.standards.standard.circulated.v1",
        "icep.standards.standard.promulgated.v1",
        "icep.standards.standard.superseded.v1",
    )
    assert [e.type.split(".")[3] for e in got] == ["drafted", "circulated", "promulgated", "superseded"]
    assert got[-1].data["superseded_by"] == ed3["id"] and got[-1].data["version"] == 4
    assert all(e.releasable_to == "ALLIES" and e.nation == "NATO" for e in got)
    promulgated_ed3 = await events(ed3["id"], "icep.standards.standard.promulgated.v1")
    assert promulgated_ed3[-1].data["supersedes"] == ed2["id"]

    # Cancelled, with a reason, from a live state; and the event says why.
    study = (await nato.post("/v1/standards", json=standard_body())).json()
    problem(await nato.post(f"/v1/standards/{study['id']}/cancel", json={"reason": " "}, headers=ANY), 422)
    r = await nato.post(
        f"/v1/standards/{study['id']}/cancel", json={"reason": "merged into AEP-55"}, headers=if_match(study)
    )
    assert r.json()["status"] == "cancelled"
    got = await events(study["id"], "icep.standards.standard.cancelled.v1")
    assert got[-1].data["reason"] == "merged into AEP-55"


@pytest.mark.parametrize(
    ("steps", "action", "current"),
    [
        ([], "promulgate", "study"),
        (["circulate"], "circulate", "ratification_draft"),
        (["circulate", "promulgate"], "promulgate", "promulgated"),
        (["cancel"], "circulate", "cancelled"),
        (["cancel"], "cancel", "cancelled"),
    ],
)
async def test_illegal_transitions_are_409_naming_the_state(
    staff: Clients, steps: list[str], action: str, current: str
) -> None:
    nato = staff["nato"]
    sid = (await nato.post("/v1/standards", json=standard_body())).json()["id"]
    for step in steps:
        body = {"reason": "test"} if step == "cancel" else None
        assert (await act(nato, f"/v1/standards/{sid}/{step}", body)).status_code == 200
    body = {"reason": "again"} if action == "cancel" else None
    p = problem(await act(nato, f"/v1/standards/{sid}/{action}", body), 409)
    assert current in p["detail"]


async def test_only_nato_standards_staff_run_the_catalogue(staff: Clients) -> None:
    for who in ("deu", "deu_planner"):
        problem(await staff[who].post("/v1/standards", json=standard_body()), 403)
    sid = (await staff["nato"].post("/v1/standards", json=standard_body())).json()["id"]
    problem(await act(staff["deu"], f"/v1/standards/{sid}/circulate"), 403)
    # Validation names the field.
    p = problem(await staff["nato"].post("/v1/standards", json=standard_body(edition=0)), 422)
    assert any("edition" in e["location"] for e in p["errors"])
    p = problem(
        await staff["nato"].post("/v1/standards", json=standard_body(releasability={"scope": "national"})),
        422,
    )
    assert any("releasability" in e["location"] for e in p["errors"])
    problem(await staff["nato"].get(f"/v1/standards/{uuid.uuid4()}"), 404)


async def test_search_by_number_text_capability_area_and_status(staff: Clients) -> None:
    nato = staff["nato"]
    tag = uuid.uuid4().hex[:8]
    a = await promulgated(
        nato, title=f"UAV control system interfaces {tag}", capability_areas=["isr"], levels=[]
    )
    b = (
        await nato.post(
            "/v1/standards",
            json=standard_body(title=f"Ammunition interchangeability {tag}", capability_areas=["munitions"]),
        )
    ).json()

    async def ids(**params: str) -> list[str]:
        r = await nato.get("/v1/standards", params={"limit": "200", **params})
        assert r.status_code == 200, r.text
        return [s["id"] for s in r.json()["items"]]

    assert set(await ids(q=tag)) == {a["id"], b["id"]}
    assert await ids(q=tag.upper(), capability_area="isr") == [a["id"]]
    assert await ids(q=tag, status="study") == [b["id"]]
    assert await ids(number=a["number"]) == [a["id"]]
    assert await ids(q="no such standard anywhere") == []
    # Pages follow the catalogue order and end.
    first = (await nato.get("/v1/standards", params={"q": tag, "limit": "1"})).json()
    second = (await nato.get(first["next"])).json()
    assert len(first["items"]) == 1 and len(second["items"]) == 1 and second["next"] is None
    assert {first["items"][0]["id"], second["items"][0]["id"]} == {a["id"], b["id"]}
    problem(await nato.get("/v1/standards", params={"status": "bogus"}), 422)


async def test_releasability_of_the_catalogue(staff: Clients) -> None:
    """A standard released to Allies is invisible to a partner; one released to Allies and UKR is not."""
    nato, ukr = staff["nato"], staff["ukr"]
    tag = uuid.uuid4().hex[:8]
    allies_only = await promulgated(nato, title=f"Allies only {tag}")
    with_ukr = await promulgated(
        nato,
        title=f"Allies and Ukraine {tag}",
        releasability={"scope": "allies_partners", "nations": ["UKR"]},
    )
    assert with_ukr["releasability"]["marking"] == "ALLIES,UKR"
    problem(await ukr.get(f"/v1/standards/{allies_only['id']}"), 404)
    problem(await ukr.get(f"/v1/standards/{allies_only['id']}/responses"), 404)
    assert (await ukr.get(f"/v1/standards/{with_ukr['id']}")).status_code == 200
    found = (await ukr.get("/v1/standards", params={"q": tag})).json()["items"]
    assert [s["id"] for s in found] == [with_ukr["id"]]
    r = await ukr.get("/v1/interoperability", params={"nations": "DEU,FRA", "standards": allies_only["id"]})
    problem(r, 422)


# --- national responses ---------------------------------------------------------------------------------


async def test_a_nations_answer_its_reservations_and_implementation(staff: Clients, events: Events) -> None:
    deu = staff["deu"]
    s = await promulgated(staff["nato"])
    base = f"/v1/standards/{s['id']}/responses/DEU"
    subject = f"{s['id']}:DEU"

    r = await deu.get(base)
    assert r.json()["status"] == "pending" and r.json()["version"] == 1
    reservation = {
        "clause": "4.2.1",
        "kind": "limited",
        "detail": "mine blast level 4a only on wheeled vehicles",
    }
    r = await act(deu, f"{base}/ratify", {"reservations": [reservation]}, version=1)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ratified_with_reservations" and r.headers["etag"] == '"2"'
    r = await deu.post(
        f"{base}/reservations",
        json={"clause": "5.1", "kind": "will_not_implement", "detail": "no artillery threat"},
        headers=if_match(r.json()),
    )
    assert [x["clause"] for x in r.json()["reservations"]] == ["4.2.1", "5.1"]
    r = await deu.delete(f"{base}/reservations/4.2.1", headers=if_match(r.json()))
    assert [x["clause"] for x in r.json()["reservations"]] == ["5.1"]
    problem(await deu.delete(f"{base}/reservations/9.9", headers=if_match(r.json())), 404)
    r = await deu.delete(f"{base}/reservations/5.1", headers=if_match(r.json()))
    assert r.json()["status"] == "ratified" and r.json()["reservations"] == []
    forecast = (today() + dt.timedelta(days=200)).isoformat()
    r = await deu.post(
        f"{base}/implementation-forecast",
        json={"implementation_forecast": forecast},
        headers=if_match(r.json()),
    )
    assert r.json()["implementation_forecast"] == forecast
    problem(
        await deu.post(
            f"{base}/implementation", json={"implemented_on": "2099-01-01"}, headers=if_match(r.json())
        ),
        422,
    )
    r = await deu.post(
        f"{base}/implementation", json={"implemented_on": today().isoformat()}, headers=if_match(r.json())
    )
    assert r.json()["implemented_on"] == today().isoformat()
    history = r.json()["history"]
    assert [h["action"] for h in history] == [
        "ratify",
        "record_reservation",
        "withdraw_reservation",
        "withdraw_reservation",
        "forecast_implementation",
        "record_implementation",
    ]
    assert all(h["by"] == "deu-standards" for h in history)
    # Declining afterwards is recorded too, and clears what no longer applies.
    r = await deu.post(f"{base}/decline", headers=if_match(r.json()))
    assert r.json()["status"] == "not_ratifying" and r.json()["implemented_on"] is None
    listed = (await deu.get(f"/v1/standards/{s['id']}/responses")).json()["items"]
    assert [(x["nation"], x["status"]) for x in listed] == [("DEU", "not_ratifying")]

    got = await events(
        subject,
        "icep.standards.response.ratified.v1",
        "icep.standards.response.reservation_recorded.v1",
        "icep.standards.response.reservation_withdrawn.v1",
        "icep.standards.response.reservation_withdrawn.v1",
        "icep.standards.response.implementation_forecast.v1",
        "icep.standards.response.implemented.v1",
        "icep.standards.response.recorded.v1",
    )
    assert [e.type.split(".")[3] for e in got] == [
        "ratified",
        "reservation_recorded",
        "reservation_withdrawn",
        "reservation_withdrawn",
        "implementation_forecast",
        "implemented",
        "recorded",
    ]
    assert got[0].data["reservations"] == [reservation]
    assert got[1].data["reservation"]["clause"] == "5.1"
    assert got[-1].data["status"] == "not_ratifying"
    assert [e.data["version"] for e in got] == list(range(2, 9))
    assert all(e.nation == "DEU" and e.releasable_to == "ALLIES" for e in got)
    assert {e.data["recorded_by_nation"] for e in got} == {"DEU"}


async def test_who_may_record_a_nations_answer(staff: Clients, events: Events) -> None:
    s = await promulgated(staff["nato"])
    fra = f"/v1/standards/{s['id']}/responses/FRA"
    # Another nation's staff, and a DEU planner without the standards role, may not.
    problem(await act(staff["deu"], f"{fra}/ratify"), 403)
    problem(await act(staff["deu_planner"], f"/v1/standards/{s['id']}/responses/DEU/ratify"), 403)
    problem(
        await act(staff["ukr"], f"/v1/standards/{s['id']}/responses/UKR/ratify"), 404
    )  # not released to UKR
    assert (await staff["fra"].get(fra)).json()["status"] == "pending"
    # NATO staff record the ratification for the record of a promulgation...
    r = await act(staff["nato"], f"{fra}/ratify")
    assert r.status_code == 200 and r.json()["status"] == "ratified"
    # ... but never whether or when a nation implemented.
    problem(
        await staff["nato"].post(
            f"{fra}/implementation", json={"implemented_on": today().isoformat()}, headers=if_match(r.json())
        ),
        403,
    )
    assert (
        await staff["fra"].post(
            f"{fra}/implementation", json={"implemented_on": today().isoformat()}, headers=if_match(r.json())
        )
    ).status_code == 200
    got = await events(
        f"{s['id']}:FRA", "icep.standards.response.ratified.v1", "icep.standards.response.implemented.v1"
    )
    assert [e.data["recorded_by_nation"] for e in got] == ["NATO", "FRA"]
    assert all(e.nation == "FRA" for e in got)
    # Only nations answer; an edition not yet circulated cannot be answered.
    problem(await act(staff["nato"], f"/v1/standards/{s['id']}/responses/XXX/ratify"), 422)
    study = (await staff["nato"].post("/v1/standards", json=standard_body())).json()
    p = problem(await act(staff["deu"], f"/v1/standards/{study['id']}/responses/DEU/ratify"), 409)
    assert "study" in p["detail"]


@pytest.mark.parametrize(
    ("setup", "path", "body"),
    [
        ([], "reservations", {"clause": "1", "kind": "limited", "detail": "x"}),
        ([], "implementation", {"implemented_on": today().isoformat()}),
        (["ratify"], "ratify", None),
        (["decline"], "decline", None),
        (["ratify"], "reservations/1", None),
        (["decline"], "implementation-forecast", {"implementation_forecast": "2030-01-01"}),
    ],
)
async def test_illegal_response_steps(staff: Clients, setup: list[str], path: str, body: Any) -> None:
    deu = staff["deu"]
    s = await promulgated(staff["nato"])
    base = f"/v1/standards/{s['id']}/responses/DEU"
    for step in setup:
        assert (await act(deu, f"{base}/{step}")).status_code == 200
    if path.startswith("reservations/"):
        problem(
            await deu.delete(f"{base}/{path}", headers=ANY), 409
        )  # ratified without reservations: none to withdraw
    else:
        problem(await act(deu, f"{base}/{path}", body), 409)


# --- interoperability and progress ----------------------------------------------------------------------


async def test_interoperability_verdicts_carry_the_reservations(staff: Clients) -> None:
    s = await promulgated(staff["nato"])
    base = f"/v1/standards/{s['id']}/responses"
    implemented = {"implemented_on": today().isoformat()}
    await act(staff["deu"], f"{base}/DEU/ratify")
    await staff["deu"].post(f"{base}/DEU/implementation", json=implemented, headers=ANY)
    reservation = {
        "clause": "6.3",
        "kind": "will_not_implement",
        "detail": "no 155 mm artillery threat tests",
    }
    await act(staff["fra"], f"{base}/FRA/ratify", {"reservations": [reservation]})
    await staff["fra"].post(f"{base}/FRA/implementation", json=implemented, headers=ANY)
    await act(staff["pol"], f"{base}/POL/decline")

    r = await staff["deu"].get(
        "/v1/interoperability", params={"nations": "DEU,FRA,POL,ITA", "standards": s["number"]}
    )
    assert r.status_code == 200, r.text
    report = r.json()
    [one] = report["standards"]
    assert one["reference"] == s["reference"]
    positions = {p["nation"]: p for p in one["positions"]}
    assert positions["FRA"]["reservations"] == [reservation]
    assert positions["POL"]["status"] == "not_ratifying" and positions["ITA"]["status"] == "pending"
    verdicts = {tuple(p["nations"]): p for p in report["pairs"]}
    assert verdicts[("DEU", "FRA")]["verdict"] == "limited"
    assert any("6.3" in reason and "FRA" in reason for reason in verdicts[("DEU", "FRA")]["reasons"])
    assert verdicts[("DEU", "POL")]["verdict"] == "not_interoperable"
    assert verdicts[("DEU", "ITA")]["verdict"] == "unknown"
    # After FRA withdraws its reservation, DEU and FRA are interoperable on it.
    await staff["fra"].delete(f"{base}/FRA/reservations/6.3", headers=ANY)
    r = await staff["nato"].get("/v1/interoperability", params={"nations": "FRA,DEU", "standards": s["id"]})
    [pair] = r.json()["pairs"]
    assert pair["nations"] == ["DEU", "FRA"] and pair["verdict"] == "interoperable"

    problem(
        await staff["deu"].get("/v1/interoperability", params={"nations": "DEU", "standards": s["id"]}), 422
    )
    problem(
        await staff["deu"].get("/v1/interoperability", params={"nations": "DEU,QQQ", "standards": s["id"]}),
        422,
    )
    problem(
        await staff["deu"].get("/v1/interoperability", params={"nations": "DEU,FRA", "standards": "nope"}),
        422,
    )


async def test_progress_per_nation(staff: Clients) -> None:
    """Counts move as one nation ratifies and implements a new standard."""

    async def progress(nation: str) -> dict[str, Any]:
        r = await staff["nato"].get("/v1/standards/progress", params={"nations": nation})
        assert r.status_code == 200, r.text
        [row] = r.json()["nations"]
        return dict(row)

    s = await promulgated(staff["nato"])
    before = await progress("POL")
    assert s["reference"] in before["pending"]
    await act(staff["pol"], f"/v1/standards/{s['id']}/responses/POL/ratify")
    middle = await progress("POL")
    assert s["reference"] in middle["ratified"] and s["reference"] not in middle["pending"]
    assert s["reference"] not in middle["implemented"]
    await staff["pol"].post(
        f"/v1/standards/{s['id']}/responses/POL/implementation",
        json={"implemented_on": today().isoformat()},
        headers=ANY,
    )
    after = await progress("POL")
    assert s["reference"] in after["implemented"]
    assert len(after["implemented"]) == len(middle["implemented"]) + 1
    assert after["in_force"] >= 1 and 0 < after["implementation_rate"] <= 1
    everyone = (await staff["nato"].get("/v1/standards/progress")).json()["nations"]
    assert len(everyone) == 32 and {n["nation"] for n in everyone} >= {"DEU", "POL", "USA"}


# --- conformance ----------------------------------------------------------------------------------------


async def test_conformance_claim_to_verified_and_rejected(staff: Clients, events: Events) -> None:
    deu, nato = staff["deu"], staff["nato"]
    s = await promulgated(nato)
    product = {
        "manufacturer": "Rheinmetall",
        "product_code": f"BOXER-{uuid.uuid4().hex[:6]}",
        "name": "Boxer",
    }
    claim_body = {
        "product": product,
        "standard_id": s["id"],
        "level": "4",
        "evidence": ["test report (synthetic)"],
    }
    problem(await deu.post("/v1/standards/conformance", json={**claim_body, "level": "9"}), 422)
    problem(await staff["deu_planner"].post("/v1/standards/conformance", json=claim_body), 403)
    r = await deu.post("/v1/standards/conformance", json=claim_body)
    assert r.status_code == 201, r.text
    claim = r.json()
    assert claim["status"] == "claimed" and claim["nation"] == "DEU"
    cid = claim["id"]
    # Verification is independent: never by the claiming nation (by default), whatever the claim's state.
    problem(await act(deu, f"/v1/standards/conformance/{cid}/verify", {"expires_on": "2030-01-01"}), 403)
    problem(await act(nato, f"/v1/standards/conformance/{cid}/verify", {"expires_on": "2030-01-01"}), 409)
    problem(await act(staff["fra"], f"/v1/standards/conformance/{cid}/start-test"), 403)
    assert (await act(nato, f"/v1/standards/conformance/{cid}/start-test")).json()["status"] == "under_test"
    problem(
        await act(nato, f"/v1/standards/conformance/{cid}/verify", {"expires_on": today().isoformat()}), 422
    )
    expires = (today() + dt.timedelta(days=365)).isoformat()
    r = await act(
        nato, f"/v1/standards/conformance/{cid}/verify", {"expires_on": expires, "evidence": ["trial X"]}
    )
    assert r.json()["status"] == "verified" and r.json()["expires_on"] == expires
    assert r.json()["evidence"] == ["test report (synthetic)", "trial X"]
    listed = (
        await deu.get("/v1/standards/conformance", params={"product_code": product["product_code"]})
    ).json()
    assert [c["id"] for c in listed["items"]] == [cid]

    other = (await deu.post("/v1/standards/conformance", json={**claim_body, "level": "2"})).json()
    await act(deu, f"/v1/standards/conformance/{other['id']}/start-test")
    problem(await act(deu, f"/v1/standards/conformance/{other['id']}/reject", {"reason": ""}), 422)
    r = await act(
        deu, f"/v1/standards/conformance/{other['id']}/reject", {"reason": "failed level 2 ballistic test"}
    )
    assert r.json()["status"] == "rejected"
    problem(await act(deu, f"/v1/standards/conformance/{other['id']}/start-test"), 409)

    got = await events(
        cid,
        "icep.standards.conformance.claimed.v1",
        "icep.standards.conformance.test_started.v1",
        "icep.standards.conformance.verified.v1",
    )
    assert [e.type.split(".")[3] for e in got] == ["claimed", "test_started", "verified"]
    assert got[-1].data["expires_on"] == expires and got[-1].data["standard_reference"] == s["reference"]
    rejected = await events(other["id"], "icep.standards.conformance.rejected.v1")
    assert rejected[-1].data["reason"] == "failed level 2 ballistic test"


async def test_a_national_claim_is_read_by_its_nation_and_nato_only(staff: Clients) -> None:
    s = await promulgated(staff["nato"])
    code = f"P-{uuid.uuid4().hex[:6]}"
    body = {
        "product": {"manufacturer": "KNDS", "product_code": code, "name": "RCH 155"},
        "standard_id": s["id"],
        "level": "3",
        "releasability": {"scope": "national"},
    }
    claim = (await staff["deu"].post("/v1/standards/conformance", json=body)).json()
    assert claim["releasability"]["marking"] == "DEU,NATO"
    assert (await staff["nato"].get(f"/v1/standards/conformance/{claim['id']}")).status_code == 200
    problem(await staff["fra"].get(f"/v1/standards/conformance/{claim['id']}"), 404)
    listed = (await staff["fra"].get("/v1/standards/conformance", params={"product_code": code})).json()
    assert listed["items"] == []


# --- interchangeability ---------------------------------------------------------------------------------


async def test_interchangeability_answers_with_reasons(staff: Clients, events: Events) -> None:
    nato = staff["nato"]
    s = await promulgated(
        nato, title="Ammunition interchangeability procedures", levels=[], capability_areas=["munitions"]
    )
    item, gun = f"155mm HE round {uuid.uuid4().hex[:6]}", "PzH 2000"
    deu_clear = {
        "item": item,
        "platform": gun,
        "nations": ["DEU"],
        "status": "verified",
        "basis": {"kind": "standard", "reference": s["id"]},
    }
    problem(
        await staff["deu"].post("/v1/interchangeability/clearances", json={**deu_clear, "nations": ["FRA"]}),
        403,
    )
    r = await staff["deu"].post("/v1/interchangeability/clearances", json=deu_clear)
    assert r.status_code == 201, r.text
    clearance = r.json()
    p = problem(await staff["deu"].post("/v1/interchangeability/clearances", json=deu_clear), 409)
    assert p["detail"].endswith(f"change /v1/interchangeability/clearances/{clearance['id']}")
    fra_clear = {
        **deu_clear,
        "nations": ["FRA"],
        "status": "restricted",
        "restrictions": ["charge 6 only, range table 2 (synthetic)"],
        "basis": {"kind": "trial", "reference": "firing trial 2025-04 (synthetic)"},
    }
    problem(
        await staff["fra"].post("/v1/interchangeability/clearances", json={**fra_clear, "restrictions": []}),
        422,
    )
    assert (await staff["fra"].post("/v1/interchangeability/clearances", json=fra_clear)).status_code == 201

    async def ask(nation: str, who: str = "nato") -> dict[str, Any]:
        r = await staff[who].get(
            "/v1/interchangeability", params={"item": item, "platform": gun, "nation": nation}
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    deu = await ask("DEU")
    assert deu["answer"] == "yes" and s["reference"] in deu["reasons"][0]
    assert f"DEU has not answered {s['reference']}, the basis, yet" in deu["reasons"]
    fra = await ask("FRA", who="fra")
    assert fra["answer"] == "yes_with_restrictions"
    assert "charge 6 only, range table 2 (synthetic)" in fra["reasons"]
    pol = await ask("POL", who="pol")
    assert pol["answer"] == "no"
    assert any("no clearance" in x for x in pol["reasons"]) and any("DEU, FRA" in x for x in pol["reasons"])

    # DEU ratifies the basis with a reservation: the clearance is restricted by it, and the reason says why.
    reservation = {"clause": "3.4", "kind": "limited", "detail": "base-bleed rounds excluded"}
    await act(staff["deu"], f"/v1/standards/{s['id']}/responses/DEU/ratify", {"reservations": [reservation]})
    deu = await ask("DEU", who="deu")
    assert deu["answer"] == "yes_with_restrictions"
    assert any("3.4" in x and "base-bleed" in x for x in deu["reasons"])

    # The clearance changes (If-Match required); the answer follows; the event is on Kafka.
    path = f"/v1/interchangeability/clearances/{clearance['id']}"
    change = {
        "status": "not_interchangeable",
        "basis": {"kind": "trial", "reference": "trial 2026-02 (synthetic)"},
    }
    problem(await staff["deu"].put(path, json=change), 428)
    problem(await staff["fra"].put(path, json=change, headers={"If-Match": '"1"'}), 403)
    r = await staff["deu"].put(path, json=change, headers={"If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["version"] == 2
    deu = await ask("DEU")
    assert deu["answer"] == "no" and "trial 2026-02 (synthetic)" in deu["reasons"][0]
    got = await events(clearance["id"], *["icep.standards.interchangeability.updated.v1"] * 2)
    assert [e.data["status"] for e in got] == ["verified", "not_interchangeable"]
    assert got[0].data["basis_reference"] == s["id"]
    problem(
        await staff["deu"].get(
            "/v1/interchangeability", params={"item": item, "platform": gun, "nation": "XYZ"}
        ),
        422,
    )


# --- subscribers ----------------------------------------------------------------------------------------


async def test_subscribers_get_the_standards_events_released_to_them(platform: Any, staff: Clients) -> None:
    """DEU's subscription receives a standard's events, signed; UKR's only those of one released to it."""
    deu_hook, ukr_hook = WebhookReceiver().start(), WebhookReceiver().start()
    try:
        secrets = {}
        for who, hook, types in (("deu", deu_hook, ["icep.standards.*"]), ("ukr", ukr_hook, ["*"])):
            r = await staff[who].post("/v1/subscriptions", json={"url": hook.url, "event_types": types})
            assert r.status_code == 201, r.text
            secrets[who] = r.json()["secret"]
        tag = uuid.uuid4().hex[:8]
        allies = await promulgated(staff["nato"], title=f"Allies only {tag}")
        with_ukr = await promulgated(
            staff["nato"],
            title=f"Allies and Ukraine {tag}",
            releasability={"scope": "allies_partners", "nations": ["UKR"]},
        )
        steps = ["drafted", "circulated", "promulgated"]

        def subjects(hook: WebhookReceiver, secret: str) -> list[tuple[str, str]]:
            verifier = Webhook(secret)
            seen = []
            for request in hook.received():
                event = verifier.verify(request.body, request.headers)
                if event["subject"] in (allies["id"], with_ukr["id"]):
                    seen.append((event["subject"], event["type"].split(".")[3]))
            return seen

        await wait_for(
            lambda: len(subjects(deu_hook, secrets["deu"])) == 6, timeout=30, what="DEU's webhooks"
        )
        await wait_for(
            lambda: len(subjects(ukr_hook, secrets["ukr"])) == 3, timeout=30, what="UKR's webhooks"
        )
        group = f"{platform.namespace}icep-notifications"
        topic = platform.topic("icep.standards.events")
        await wait_for(
            lambda: consumer_caught_up(platform.bootstrap, group, topic), timeout=30, what="fan-out"
        )
        # Each standard's events arrive in order (order holds per aggregate, not across them).
        deu_seen = subjects(deu_hook, secrets["deu"])
        for standard in (allies, with_ukr):
            assert [step for subject, step in deu_seen if subject == standard["id"]] == steps
        assert subjects(ukr_hook, secrets["ukr"]) == [(with_ukr["id"], s) for s in steps]
    finally:
        deu_hook.stop()
        ukr_hook.stop()


# --- edge cases a mature API must get right ----------------------------------------------------------------


async def test_one_edition_in_force(staff: Clients, events: Events) -> None:
    """Promulgating an edition supersedes every lower one in force, named or not; a lower edition cannot be
    promulgated while a higher one is in force."""
    nato = staff["nato"]
    number = f"47{uuid.uuid4().int % 10**8:08d}"
    ed3 = await promulgated(nato, number=number, edition=3)
    ed2 = (await nato.post("/v1/standards", json=standard_body(number, 2))).json()
    await act(nato, f"/v1/standards/{ed2['id']}/circulate")
    p = problem(await act(nato, f"/v1/standards/{ed2['id']}/promulgate"), 409)
    assert f"STANAG {number} Ed. 3 is in force" in p["detail"]
    ed4 = await promulgated(nato, number=number, edition=4)  # names no edition it supersedes
    assert (await nato.get(f"/v1/standards/{ed3['id']}")).json()["superseded_by"] == ed4["id"]
    in_force = (await nato.get("/v1/standards", params={"number": number, "status": "promulgated"})).json()
    assert [s["edition"] for s in in_force["items"]] == [4]
    got = await events(ed3["id"], "icep.standards.standard.superseded.v1")
    assert got[-1].data["superseded_by"] == ed4["id"]


async def test_releasability_input_is_checked(staff: Clients) -> None:
    nato, deu = staff["nato"], staff["deu"]
    # Nations only go with a scope that names nations; beyond the Allies, a standard goes to partners.
    for release in (
        {"scope": "allies", "nations": ["UKR"]},
        {"scope": "allies_partners", "nations": ["DEU"]},
    ):
        problem(await nato.post("/v1/standards", json=standard_body(releasability=release)), 422)
    s = await promulgated(nato)
    product = {"manufacturer": "KNDS", "product_code": f"P-{uuid.uuid4().hex[:6]}", "name": "RCH 155"}
    claim = {"product": product, "standard_id": s["id"], "level": "3"}
    national_with_fra = {**claim, "releasability": {"scope": "national", "nations": ["FRA"]}}
    problem(await deu.post("/v1/standards/conformance", json=national_with_fra), 422)
    # A claim goes no further than its standard: UKR may not read this standard, so not the claim either.
    to_ukr = {**claim, "releasability": {"scope": "allies_partners", "nations": ["UKR"]}}
    p = problem(await deu.post("/v1/standards/conformance", json=to_ukr), 422)
    assert "not released to UKR" in p["detail"]
    # NATO cannot record an answer for a nation the standard is not released to.
    p = problem(await act(nato, f"/v1/standards/{s['id']}/responses/JPN/ratify"), 422)
    assert "not released to JPN" in p["detail"]
    progress = (await nato.get("/v1/standards/progress", params={"nations": "JPN"})).json()["nations"][0]
    assert s["reference"] not in progress["pending"]


async def test_odd_input_gets_a_problem_never_a_500(staff: Clients) -> None:
    nato, deu = staff["nato"], staff["deu"]
    s = await promulgated(nato)
    base = f"/v1/standards/{s['id']}/responses/DEU"
    # A clause is a path segment when withdrawn: no slash in it.
    bad_clause = {"reservations": [{"clause": "4/2", "kind": "limited", "detail": "x"}]}
    problem(await act(deu, f"{base}/ratify", bad_clause), 422)
    # A blank basis is refused before anything is stored, and lists keep working.
    item = f"round {uuid.uuid4().hex[:6]}"
    blank = {
        "item": item,
        "platform": "PzH 2000",
        "nations": ["DEU"],
        "status": "verified",
        "basis": {"kind": "trial", "reference": "   "},
    }
    p = problem(await deu.post("/v1/interchangeability/clearances", json=blank), 422)
    assert p["errors"][0]["location"] == "body.basis.reference"
    listed = await deu.get("/v1/interchangeability/clearances", params={"item": item})
    assert listed.status_code == 200 and listed.json()["items"] == []
    # NUL characters: PostgreSQL cannot store them (422); SQLite can. Never a 500.
    for r in (
        await nato.get("/v1/standards", params={"number": "45\x0069"}),
        await nato.get(f"/v1/standards/{s['id']}%00"),
        await nato.post("/v1/standards", json=standard_body(title="a\x00b")),
        await deu.get("/v1/interchangeability", params={"item": "a\x00", "platform": "b"}),
        await nato.get("/v1/interoperability", params={"nations": "DEU,FRA", "standards": "\x00"}),
    ):
        assert r.status_code < 500, r.text
        if r.status_code >= 400:
            assert r.headers["content-type"].startswith(PROBLEM)


async def test_concurrent_changes_lose_nothing(staff: Clients, events: Events) -> None:
    """Read-modify-write use cases run one at a time per record (row locks on PostgreSQL, one writer on
    SQLite): concurrent reservations are all kept, and the events match the stored history."""
    deu, nato = staff["deu"], staff["nato"]
    s = await promulgated(nato)
    base = f"/v1/standards/{s['id']}/responses/DEU"
    assert (await act(deu, f"{base}/ratify")).status_code == 200
    clauses = [f"{n}.1" for n in range(1, 7)]
    answers = await asyncio.gather(
        *(
            # Unconditional (If-Match: *): each adds its own clause, none overwrites another's.
            deu.post(
                f"{base}/reservations",
                json={"clause": c, "kind": "limited", "detail": "within limits"},
                headers=ANY,
            )
            for c in clauses
        )
    )
    assert [r.status_code for r in answers] == [200] * len(clauses)
    final = (await deu.get(base)).json()
    assert sorted(x["clause"] for x in final["reservations"]) == sorted(clauses)
    assert final["version"] == 2 + len(clauses)
    got = await events(f"{s['id']}:DEU", *["icep.standards.response.reservation_recorded.v1"] * len(clauses))
    assert sorted(e.data["version"] for e in got if "reservation" in e.data) == list(
        range(3, 3 + len(clauses))
    )

    # Circulate and cancel at once: whichever wins, the events say what the history says.
    study = (await nato.post("/v1/standards", json=standard_body())).json()
    results = await asyncio.gather(
        nato.post(f"/v1/standards/{study['id']}/circulate", headers=ANY),
        nato.post(
            f"/v1/standards/{study['id']}/cancel",
            json={"reason": "withdrawn by the working group"},
            headers=ANY,
        ),
    )
    done = (await nato.get(f"/v1/standards/{study['id']}")).json()
    assert done["status"] == "cancelled"
    succeeded = sum(r.status_code == 200 for r in results)
    assert len(done["history"]) == 1 + succeeded
    assert all(r.status_code in (200, 409) for r in results)
    actions = [h["action"] for h in done["history"][1:]]
    expected_types = [
        {
            "circulate": "icep.standards.standard.circulated.v1",
            "cancel": "icep.standards.standard.cancelled.v1",
        }[a]
        for a in actions
    ]
    got = await events(study["id"], "icep.standards.standard.drafted.v1", *expected_types)
    assert [e.type for e in got] == ["icep.standards.standard.drafted.v1", *expected_types]
