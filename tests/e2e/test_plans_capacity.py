"""The Alliance capacity picture: targets, summary, dependencies, progress and shortfalls, releasability, and
the picture with history (actuals kept across plan versions, corrections, the timeline and its chart)."""

from __future__ import annotations

import uuid
from typing import Any
from xml.etree import ElementTree as ET

import httpx

from icep.platform.events import decode
from icep.platform.testing import read_records, wait_for

Clients = dict[str, httpx.AsyncClient]


def commitment(
    key: str, product: str, ramp: list[tuple[str, int]], current: int, **extra: Any
) -> dict[str, Any]:
    return {
        "key": key,
        "product": product,
        "capability_area": "munitions",
        "site": f"{key} (synthetic)",
        "site_country": "DEU",
        "unit": "rounds",
        "baseline_per_month": current,
        "current_per_month": current,
        "target_per_month": max([current, *(o for _, o in ramp)]),
        "ramp": [{"on": on, "output_per_month": o} for on, o in ramp],
        "operator": {"company": "Synthetic Munitions GmbH", "sme": True},
        "bottlenecks": extra.pop("bottlenecks", []),
        **extra,
    }


def plan(commitments: list[dict[str, Any]], scope: str = "allies", **extra: Any) -> dict[str, Any]:
    return {
        "title": f"Capacity {uuid.uuid4().hex[:6]} (synthetic)",
        "period_start": "2025-01-01",
        "period_end": "2026-12-31",
        "capability_areas": ["munitions"],
        "releasability": {"scope": scope},
        "content": {"commitments": commitments},
        **extra,
    }


def if_match(record: dict[str, Any]) -> dict[str, str]:
    return {"If-Match": f'"{record["version"]}"'}


async def accept(c: Clients, nation: str, body: dict[str, Any]) -> str:
    r = await c[nation].post("/v1/plans", json=body)
    assert r.status_code == 201, r.text
    pid = str(r.json()["id"])
    for who, action in ((nation, "submit"), ("nato", "start-review"), ("nato", "accept")):
        r = await c[who].post(f"/v1/plans/{pid}/{action}", headers=if_match(r.json()))
        assert r.status_code == 200, r.text
    return pid


async def summary(client: httpx.AsyncClient, **params: Any) -> dict[int, dict[str, Any]]:
    r = await client.get("/v1/capacity/summary", params=params)
    assert r.status_code == 200, r.text
    return {line["year"]: line for line in r.json()["items"]}


async def test_gap_arithmetic(clients: Clients) -> None:
    product = f"155mm round {uuid.uuid4().hex[:6]}"
    nato, deu = clients["nato"], clients["deu"]
    target = {"capability_area": "munitions", "product": product, "year": 2026, "unit": "rounds"}
    r = await nato.put("/v1/capacity/targets", json=target | {"required_quantity": 500_000})
    assert r.status_code == 201, r.text
    first = r.json()
    assert r.headers["ETag"] == '"1"' and first["version"] == 1
    # A correction names the version it read: without If-Match 428, with a stale one 412.
    r = await nato.put("/v1/capacity/targets", json=target | {"required_quantity": 600_000})
    assert r.status_code == 428 and r.json()["current_version"] == 1, r.text
    r = await nato.put(
        "/v1/capacity/targets", json=target | {"required_quantity": 600_000}, headers=if_match(first)
    )
    assert r.status_code == 200 and r.json()["required_quantity"] == 600_000  # corrected, not duplicated
    assert r.headers["ETag"] == '"2"' and r.json()["id"] == first["id"]
    stale = await nato.put(
        "/v1/capacity/targets", json=target | {"required_quantity": 1}, headers=if_match(first)
    )
    assert stale.status_code == 412 and stale.json()["current_version"] == 2
    got = await deu.get(f"/v1/capacity/targets/{first['id']}")
    assert (
        got.status_code == 200 and got.headers["ETag"] == '"2"' and got.json()["required_quantity"] == 600_000
    )
    assert (await deu.put("/v1/capacity/targets", json=target | {"required_quantity": 1})).status_code == 403
    # DEU: 10,000/month in 2025, 20,000/month from July 2026; POL: 5,000/month flat.
    await accept(clients, "deu", plan([commitment("deu-a", product, [("2026-07-01", 20_000)], 10_000)]))
    await accept(clients, "pol", plan([commitment("pol-a", product, [], 5_000)]))
    lines = await summary(deu, product=product)
    assert lines[2025]["requirement"] is None and lines[2025]["committed"] == 12 * 15_000
    y26 = lines[2026]
    committed_2026 = 6 * 10_000 + 6 * 20_000 + 12 * 5_000
    assert (y26["requirement"], y26["committed"], y26["gap"]) == (
        600_000,
        committed_2026,
        600_000 - committed_2026,
    )
    assert y26["nations"] == ["DEU", "POL"] and y26["commitments"] == 2
    only_pol = await summary(deu, product=product, nation="POL", year=2026)
    assert list(only_pol) == [2026] and only_pol[2026]["committed"] == 60_000
    assert only_pol[2026]["gap"] == 540_000
    # Partners do not see NATO's requirements, nor plans released to Allies only.
    assert await summary(clients["ukr"], product=product) == {}


async def test_progress_actuals_and_shortfall(clients: Clients, platform: Any) -> None:
    product = f"PAC-3 MSE {uuid.uuid4().hex[:6]}"
    deu = clients["deu"]
    pid = await accept(clients, "deu", plan([commitment("deu-pac3", product, [("2026-01-01", 50)], 40)]))
    url = f"/v1/plans/{pid}/commitments/deu-pac3/progress"
    # A report names the plan version it was measured against (the ETag of the accepted plan).
    current = {"If-Match": (await deu.get(f"/v1/plans/{pid}")).headers["ETag"]}
    missing = await deu.post(url, json={"month": "2026-02-10", "actual_output": 46})
    assert missing.status_code == 428, missing.text
    stale = await deu.post(
        url, json={"month": "2026-02-10", "actual_output": 46}, headers={"If-Match": '"1"'}
    )
    assert stale.status_code == 412 and stale.json()["current_version"] == 4, stale.text
    fine = await deu.post(url, json={"month": "2026-02-10", "actual_output": 46}, headers=current)
    assert fine.status_code == 200, fine.text
    assert fine.headers["ETag"] == current["If-Match"]  # a report leaves the plan as it was
    assert fine.json() == {
        "plan_id": pid,
        "commitment_key": "deu-pac3",
        "month": "2026-02-01",
        "actual_output": 46,
        "planned_output": 50,
        "shortfall": False,
        "lineage": "DEU/2025-01-01/2026-12-31",
        "revision": 1,
        "previous_output": None,
    }
    short = await deu.post(url, json={"month": "2026-03-01", "actual_output": 44}, headers=current)
    assert short.json()["shortfall"] is True
    assert (
        await clients["fra"].post(url, json={"month": "2026-03-01", "actual_output": 1}, headers=current)
    ).status_code == 403
    r = await deu.post(
        f"/v1/plans/{pid}/commitments/nope/progress",
        json={"month": "2026-03-01", "actual_output": 1},
        headers=current,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["location"] == "path.commitment_key"
    line = (await summary(deu, product=product, year=2026))[2026]
    assert (line["actual"], line["actual_through"]) == (90, "2026-03-01")

    async def shortfalls() -> list[Any]:
        records = await read_records(platform.bootstrap, platform.topic("icep.plans.events"))
        events = [decode(r.key, r.value, r.headers) for r in records]
        return [e for e in events if e.subject == pid and e.type == "icep.plans.shortfall.detected.v1"]

    [event] = await wait_for(shortfalls, what="the shortfall event")
    assert (
        event.data["month"] == "2026-03-01"
        and event.data["shortfall"] == 6
        and event.releasable_to == "ALLIES"
    )
    records = await read_records(platform.bootstrap, platform.topic("icep.plans.events"))
    reported = [
        (e.data["month"], e.data["actual_output"], e.data["planned_output"], e.releasable_to)
        for e in (decode(r.key, r.value, r.headers) for r in records)
        if e.subject == pid and e.type == "icep.plans.progress.reported.v1"
    ]
    assert reported == [("2026-02-01", 46, 50, "ALLIES"), ("2026-03-01", 44, 50, "ALLIES")]


async def test_a_nation_probing_another_nations_plan_learns_nothing(clients: Clients) -> None:
    product = f"155mm probe {uuid.uuid4().hex[:6]}"
    deu, fra, ukr = clients["deu"], clients["fra"], clients["ukr"]
    nitro = {
        "input": f"nitro-{product}",
        "category": "energetics",
        "source_countries": ["CHN"],
        "single_source": True,
    }
    body = plan([commitment("deu-p", product, [], 1_000, bottlenecks=[nitro])], scope="national")
    r = await deu.post("/v1/plans", json=body)
    pid = r.json()["id"]
    etag = {"If-Match": r.headers["ETag"]}

    async def fra_sees_nothing() -> None:
        assert (await fra.get(f"/v1/plans/{pid}")).status_code == 404
        listed = (await fra.get("/v1/plans", params={"limit": 200, "nation": "DEU"})).json()["items"]
        assert pid not in [p["id"] for p in listed]
        assert await summary(fra, product=product) == {}
        deps = (await fra.get("/v1/capacity/dependencies", params={"product": product})).json()["items"]
        assert deps == []

    await fra_sees_nothing()  # a draft
    r = await deu.post(f"/v1/plans/{pid}/submit", headers=etag)
    assert r.status_code == 200
    await fra_sees_nothing()  # submitted
    for action in ("start-review", "accept"):
        r = await clients["nato"].post(f"/v1/plans/{pid}/{action}", headers={"If-Match": r.headers["ETag"]})
        assert r.status_code == 200
    await fra_sees_nothing()  # accepted, national only
    assert (await summary(deu, product=product))[2025]["committed"] == 12_000  # the owner sees its own

    # The capacity figures go wider than the plan: FRA and UKR see them, not the plan nor its bottlenecks.
    r = await deu.post(
        f"/v1/plans/{pid}/release",
        json={
            "releasability": {"scope": "national"},
            "capacity_releasability": {"scope": "allies_partners", "nations": ["UKR"]},
        },
        headers={"If-Match": r.headers["ETag"]},
    )
    assert r.status_code == 200, r.text
    assert (await summary(fra, product=product))[2025]["committed"] == 12_000
    assert (await summary(ukr, product=product))[2025]["committed"] == 12_000
    assert (await fra.get(f"/v1/plans/{pid}")).status_code == 404
    assert (await fra.get("/v1/capacity/dependencies", params={"product": product})).json()["items"] == []
    # Released as a whole to FRA: now the dependencies show.
    r = await deu.post(
        f"/v1/plans/{pid}/release",
        json={"releasability": {"scope": "nations", "nations": ["FRA"]}},
        headers={"If-Match": r.headers["ETag"]},
    )
    assert r.status_code == 200
    assert (await fra.get(f"/v1/plans/{pid}")).status_code == 200
    [dep] = (await fra.get("/v1/capacity/dependencies", params={"product": product})).json()["items"]
    assert (
        dep["input"] == f"nitro-{product}" and dep["by_country"] == {"CHN": 1} and dep["single_sourced"] == 1
    )
    assert await summary(ukr, product=product) == {}  # the wider capacity release was replaced
    # Allies and a named partner: UKR now sees the whole plan, FRA as an Ally too.
    r = await deu.post(
        f"/v1/plans/{pid}/release",
        json={"releasability": {"scope": "allies_partners", "nations": ["UKR"]}},
        headers={"If-Match": "*"},  # whatever the version: the test's point is who sees it afterwards
    )
    assert r.status_code == 200, r.text
    assert (await ukr.get(f"/v1/plans/{pid}")).status_code == 200
    assert pid in [p["id"] for p in (await ukr.get("/v1/plans", params={"limit": 200})).json()["items"]]
    assert (await summary(ukr, product=product))[2025]["committed"] == 12_000


async def test_dependencies_count_commitments_per_source_country(clients: Clients) -> None:
    product = f"interceptor {uuid.uuid4().hex[:6]}"
    motor = f"solid rocket motor {product}"

    def srm(countries: list[str], single: bool) -> dict[str, Any]:
        return {
            "input": motor,
            "category": "rocket_motors",
            "source_countries": countries,
            "single_source": single,
        }

    await accept(
        clients,
        "deu",
        plan(
            [
                commitment("a", product, [], 10, bottlenecks=[srm(["USA"], True)]),
                commitment("b", product, [], 10, bottlenecks=[srm(["USA", "NOR"], False)]),
            ]
        ),
    )
    await accept(clients, "pol", plan([commitment("c", product, [], 10, bottlenecks=[srm(["NOR"], True)])]))
    r = await clients["fra"].get("/v1/capacity/dependencies", params={"product": product})
    [dep] = r.json()["items"]
    assert (dep["commitments"], dep["single_sourced"], dep["by_country"]) == (3, 2, {"USA": 2, "NOR": 2})
    assert sorted(d["nation"] for d in dep["dependents"]) == ["DEU", "DEU", "POL"]
    only_pol = (
        await clients["fra"].get("/v1/capacity/dependencies", params={"product": product, "nation": "POL"})
    ).json()
    assert only_pol["items"][0]["by_country"] == {"NOR": 1}


async def test_capability_target_events_and_list(clients: Clients, platform: Any) -> None:
    product = f"GEM-T {uuid.uuid4().hex[:6]}"
    r = await clients["nato"].put(
        "/v1/capacity/targets",
        json={
            "capability_area": "air_missile_defence",
            "product": product,
            "year": 2027,
            "required_quantity": 1000,
            "unit": "missiles",
        },
    )
    target = r.json()
    listed = (await clients["fra"].get("/v1/capacity/targets", params={"product": product})).json()["items"]
    assert [t["id"] for t in listed] == [target["id"]]
    assert (await clients["ukr"].get("/v1/capacity/targets", params={"product": product})).json()[
        "items"
    ] == []
    bad = await clients["nato"].put(
        "/v1/capacity/targets",
        json={"capability_area": "x", "product": product, "year": 1900, "required_quantity": -1, "unit": "x"},
    )
    assert {e["location"] for e in bad.json()["errors"]} == {"body.year", "body.required_quantity"}

    async def event() -> list[Any]:
        records = await read_records(platform.bootstrap, platform.topic("icep.plans.events"))
        return [e for e in (decode(r.key, r.value, r.headers) for r in records) if e.subject == target["id"]]

    [set_event] = await wait_for(event, what="the target event")
    assert set_event.type == "icep.plans.capability_target.set.v1" and set_event.releasable_to == "ALLIES"
    assert set_event.nation == "NATO" and set_event.data["required_quantity"] == 1000


SVG = "{http://www.w3.org/2000/svg}"


async def timeline(client: httpx.AsyncClient, **params: Any) -> dict[str | None, dict[str, Any]]:
    r = await client.get("/v1/capacity/timeline", params=params)
    assert r.status_code == 200, r.text
    return {s["nation"]: s for s in r.json()["series"]}


def figures(series: dict[str, Any], name: str) -> list[Any]:
    return [p[name] for p in series["points"]]


async def test_the_picture_keeps_its_history_across_versions_and_corrections(clients: Clients) -> None:
    product = f'155mm <b>&"hist"</b> {uuid.uuid4().hex[:6]}'  # user text that must come back escaped
    deu, fra, ukr, nato = clients["deu"], clients["fra"], clients["ukr"], clients["nato"]
    target = {"capability_area": "munitions", "product": product, "year": 2026, "unit": "rounds"}
    r = await nato.put("/v1/capacity/targets", json=target | {"required_quantity": 240_000})
    assert r.status_code == 201, r.text
    # DEU v1: 10,000/month, 12,000 from January 2026 (released to Allies).
    v1 = await accept(clients, "deu", plan([commitment("deu-h", product, [("2026-01-01", 12_000)], 10_000)]))
    url = f"/v1/plans/{v1}/commitments/deu-h/progress"
    at_v1 = {"If-Match": (await deu.get(f"/v1/plans/{v1}")).headers["ETag"]}
    for month, actual in (("2025-11-01", 9_000), ("2025-12-01", 9_800)):
        assert (await deu.post(url, json={"month": month, "actual_output": actual}, headers=at_v1)).is_success
    corrected = await deu.post(url, json={"month": "2025-12-15", "actual_output": 10_100}, headers=at_v1)
    assert corrected.status_code == 200, corrected.text
    assert (corrected.json()["revision"], corrected.json()["previous_output"]) == (2, 9_800)
    # DEU v2 of the same period: 15,000 from March 2026. Accepting it supersedes v1.
    v2 = await accept(
        clients,
        "deu",
        plan([commitment("deu-h", product, [("2026-01-01", 12_000), ("2026-03-01", 15_000)], 10_000)]),
    )
    assert (await deu.get(f"/v1/plans/{v1}")).json()["status"] == "superseded"
    at_v2 = {"If-Match": (await deu.get(f"/v1/plans/{v2}")).headers["ETag"]}
    r = await deu.post(
        f"/v1/plans/{v2}/commitments/deu-h/progress",
        json={"month": "2026-01-01", "actual_output": 11_500},
        headers=at_v2,
    )
    assert r.status_code == 200, r.text
    # FRA: 3,000/month, national only: DEU may not see it.
    fra_plan = await accept(clients, "fra", plan([commitment("fra-h", product, [], 3_000)], scope="national"))
    at_fra = {"If-Match": (await fra.get(f"/v1/plans/{fra_plan}")).headers["ETag"]}
    r = await fra.post(
        f"/v1/plans/{fra_plan}/commitments/fra-h/progress",
        json={"month": "2026-01-01", "actual_output": 2_500},
        headers=at_fra,
    )
    assert r.status_code == 200, r.text

    # The summary keeps what was reported under v1: 9,000 + 10,100 (corrected) in 2025.
    lines = await summary(deu, product=product)
    assert (lines[2025]["actual"], lines[2025]["actual_through"]) == (19_100, "2025-12-01")
    assert (lines[2026]["actual"], lines[2026]["requirement"]) == (11_500, 240_000)

    # The timeline, November 2025 - March 2026, by hand: requirement 240,000 / 12 = 20,000 per month of
    # 2026; committed by v2: 10,000, 10,000, 12,000, 12,000, 15,000; actual 9,000, 10,100 (corrected),
    # 11,500, not reported, not reported. FRA's national plan is not in what DEU sees.
    seen = await timeline(deu, product=product, **{"from": "2025-11", "to": "2026-03"})
    assert list(seen) == [None, "DEU"]
    total = seen[None]
    assert [p["month"] for p in total["points"]] == ["2025-11", "2025-12", "2026-01", "2026-02", "2026-03"]
    assert figures(total, "requirement") == [None, None, 20_000, 20_000, 20_000]
    assert figures(total, "committed") == [10_000, 10_000, 12_000, 12_000, 15_000]
    assert figures(total, "actual") == [9_000, 10_100, 11_500, None, None]
    assert total["requirements"] == [{"year": 2026, "required_quantity": 240_000}]
    assert total["product"] == product
    # FRA sees its own series too: January 11,500 + 2,500.
    as_fra = await timeline(fra, product=product, **{"from": "2026-01", "to": "2026-01"})
    assert list(as_fra) == [None, "DEU", "FRA"] and figures(as_fra[None], "actual") == [14_000]
    # A partner sees neither the Allies' plans nor NATO's targets.
    assert await timeline(ukr, product=product) == {}

    # The month's history, named by the superseded version: who corrected it, when, from what.
    history = await fra.get(url)
    assert history.status_code == 200, history.text
    assert history.json()["lineage"] == "DEU/2025-01-01/2026-12-31"
    months = {m["month"]: m for m in history.json()["items"]}
    assert list(months) == ["2025-11-01", "2025-12-01", "2026-01-01"]
    [correction] = months["2025-12-01"]["corrections"]
    assert (correction["previous_output"], correction["actual_output"], correction["corrected_by"]) == (
        9_800,
        10_100,
        "deu-planner",
    )
    assert correction["corrected_at"] >= months["2025-12-01"]["first_reported_at"]
    assert months["2026-01-01"]["plan_id"] == v2 and months["2025-11-01"]["corrections"] == []
    assert (await ukr.get(url)).status_code == 404
    assert (await deu.get(f"/v1/plans/{fra_plan}/commitments/fra-h/progress")).status_code == 404

    # A span over ten years, or a month that is none, is the caller's mistake.
    for span in ({"from": "2025-01", "to": "2035-02"}, {"from": "2025-13"}):
        r = await deu.get("/v1/capacity/timeline", params=span)
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")

    # The chart: an SVG document through the gateway, well-formed, self-contained, the user text escaped.
    r = await deu.get(
        "/v1/capacity/timeline.svg", params={"product": product, "from": "2025-11", "to": "2026-03"}
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml"), r.text
    assert r.headers["x-content-type-options"] == "nosniff" and "content-security-policy" in r.headers
    root = ET.fromstring(r.content)
    assert root.tag == f"{SVG}svg"
    assert product.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in r.text
    assert "<b>" not in r.text
    assert any(t.text == f"{product} (rounds)" for t in root.iter(f"{SVG}text"))
    assert {e.tag.removeprefix(SVG) for e in root.iter()} <= {"svg", "title", "desc", "g", "rect", "text",
                                                              "line", "polyline"}  # fmt: skip
    for element in root.iter():
        for name, value in element.attrib.items():
            assert "href" not in name and "url(" not in value and "http" not in value, (name, value)
    assert r.text.count("http") == 1  # the SVG namespace, a name and not a reference
    nothing = await ukr.get("/v1/capacity/timeline.svg", params={"product": product})
    assert nothing.status_code == 200 and product not in nothing.text
