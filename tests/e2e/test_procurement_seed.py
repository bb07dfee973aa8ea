"""`icep seed` loads the labelled procurement sample through the API, and a second run changes nothing."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

from typer.testing import CliRunner

from icep.platform.cli import app

STAGES = ["planning", "planningUpdate", "tender", "tenderUpdate", "award", "contract", "implementation"]


def _wire(quantities: dict[int, int]) -> dict[str, int]:
    return {str(y): q for y, q in sorted(quantities.items())}


def _sum(*quantities: dict[int, int]) -> dict[str, int]:
    out: dict[int, int] = {}
    for q in quantities:
        for y, n in q.items():
            out[y] = out.get(y, 0) + n
    return _wire({y: n for y, n in out.items() if n})


async def test_procurement_seed_is_idempotent_and_labelled(platform: Any) -> None:
    seed = importlib.import_module("icep.procurement.seed")
    lines: list[str] = []
    first = await seed.seed(platform.gateway, say=lines.append)
    assert first.skipped == []
    signals = sum(len(i.signals) for i in seed.INITIATIVES)
    assert len(first.created) == len(seed.SUPPLIERS) + len(seed.INITIATIVES) + signals
    gemt_steps = next(a for a in first.advanced if a.startswith(seed.GEMT_INITIATIVE.title))
    assert gemt_steps.endswith(
        "tender published, bid recorded, awarded, framework contract signed, call-off for DEU"
    )
    second = await seed.seed(platform.gateway, say=lines.append)
    assert second.created == [] and second.advanced == [] and second.skipped == []
    records = len(seed.SUPPLIERS) + sum(1 + len(i.participants) + len(i.signals) for i in seed.INITIATIVES)
    assert len(second.unchanged) == records

    # `icep seed` runs the plans and standards seeds, then this one: which again changes nothing here.
    cli = await asyncio.to_thread(CliRunner().invoke, app, ["seed", "--gateway", platform.gateway])
    assert cli.exit_code == 0, cli.output
    procurement_part = cli.output.split("procurement\n", 1)[1]
    assert "created" not in procurement_part and "advanced" not in procurement_part
    assert f"{records} sample procurement records already present and unchanged" in procurement_part

    clients = {n: await platform.as_client(f"{n}-procurement") for n in ("nato", "deu", "ukr")}
    nspa, deu, ukr = clients["nato"], clients["deu"], clients["ukr"]
    try:
        # Suppliers: three clear, one a potential match left for a person (nobody adjudicated it).
        suppliers = {s["organisation_id"]: s for s in (await deu.get("/v1/suppliers")).json()["items"]}
        assert sorted(suppliers) == sorted(s.body["organisation_id"] for s in seed.SUPPLIERS)
        assert all(s["name"].startswith("[SAMPLE]") and s["nation"] == "DEU" for s in suppliers.values())
        comlog = suppliers["SAMPLE-DE-COMLOG"]
        assert (comlog["name"], comlog["scale"], comlog["screening"]) == (
            "[SAMPLE] COMLOG (sample record)",
            "large",
            "clear",
        )
        assert suppliers["SAMPLE-DE-FUZE-1"]["scale"] == "sme"
        assert "(synthetic)" in suppliers["SAMPLE-DE-FUZE-1"]["name"]
        flagged = suppliers["SAMPLE-DE-ENERGETICS-1"]
        assert flagged["screening"] == "potential_match" and not flagged["awardable"]
        assert flagged["adjudicator"] is None and flagged["mitigation"] is None
        assert any("BLR" in m for m in flagged["matches"]), flagged["matches"]
        waiting = (await nspa.get("/v1/suppliers", params={"screening": "potential_match"})).json()["items"]
        assert [s["id"] for s in waiting] == [flagged["id"]]

        # GEM-T: led by NATO for NSPA, taken to a framework contract with a call-off for DEU.
        [gemt] = (await nspa.get("/v1/initiatives", params={"product": seed.GEMT})).json()["items"]
        assert gemt["title"] == seed.GEMT_INITIATIVE.title and gemt["title"].startswith("[SAMPLE]")
        assert (gemt["lead_nation"], gemt["procuring_entity"], gemt["status"]) == (
            "NATO",
            "NSPA",
            "contracted",
        )
        assert (gemt["item"]["unit"], gemt["capability_area"], gemt["required_standards"]) == (
            "missiles",
            "air_missile_defence",
            [],
        )
        assert {p["nation"]: p["status"] for p in gemt["participations"]} == {
            "DEU": "committed",
            "NLD": "committed",
        }
        assert gemt["demand"]["firm"] == _sum(seed.GEMT_DEU, seed.GEMT_NLD)
        assert sum(gemt["demand"]["firm"].values()) == seed.GEMT_TOTAL <= 1_000
        assert all(lot["title"].startswith("[SAMPLE]") for lot in gemt["tender"]["lots"])
        [award] = gemt["awards"]
        assert (award["supplier_id"], award["supplier_name"]) == (comlog["id"], comlog["name"])
        assert (award["quantity"], award["currency"]) == (seed.GEMT_TOTAL, "USD")
        assert 0 < award["value"] < 5.5e9
        [contract] = gemt["contracts"]
        assert contract["framework"] and contract["award_id"] == award["id"]
        assert [m["status"] for m in contract["milestones"]] == ["scheduled", "scheduled"]
        assert all(m["title"].startswith("[SAMPLE]") for m in contract["milestones"])
        [call_off] = gemt["call_offs"]
        assert (call_off["contract_id"], call_off["buyer"], call_off["quantity"]) == (
            contract["id"],
            "DEU",
            seed.GEMT_CALL_OFF,
        )

        package = (await nspa.get(f"/v1/initiatives/{gemt['id']}/ocds")).json()
        releases = package["releases"]
        assert {r["ocid"] for r in releases} == {gemt["ocid"]}
        tags = [t for r in releases for t in r["tag"]]
        assert releases[0]["tag"] == ["planning"] and set(STAGES) <= set(tags)
        firsts = [tags.index(stage) for stage in STAGES]
        assert firsts == sorted(firsts), tags  # planning ... tender ... award ... contract ... implementation
        latest = releases[-1]
        assert latest["tag"] == ["implementation"]
        [framework] = latest["contracts"]
        assert [p["identifier"] for p in framework["relatedProcesses"]] == [call_off["ocid"]]

        # 155 mm: led by NATO for NSPA, open, open to Ukraine; four Allies and Ukraine take part.
        [shells] = (await nspa.get("/v1/initiatives", params={"product": seed.SHELL_155})).json()["items"]
        sample = seed.SHELLS_INITIATIVE
        assert shells["title"] == sample.title and shells["title"].startswith("[SAMPLE]")
        assert (shells["lead_nation"], shells["procuring_entity"], shells["status"]) == (
            "NATO",
            "NSPA",
            "open",
        )
        assert shells["open_to_partners"] == ["UKR"] and shells["releasability"]["marking"] == "ALLIES,UKR"
        assert shells["capability_area"] == "munitions" and shells["item"]["unit"] == "rounds"
        assert {p["nation"]: p["status"] for p in shells["participations"]} == {
            "DEU": "committed",
            "FRA": "committed",
            "NLD": "joined",
            "POL": "joined",
            "UKR": "joined",
        }
        demand = shells["demand"]
        assert demand["participants"] == 5
        assert demand["indicative"] == _sum(*(p.indicative for p in sample.participants))
        assert demand["firm"] == _sum(*(p.firm for p in sample.participants))
        assert demand["funded"] == _sum(*(p.funded for p in sample.participants))
        allies = sum(sum(seed.SHELLS[n].values()) for n in ("DEU", "FRA", "POL", "NLD"))
        assert allies == 220_000  # the sourced size of NSPA's frameworks, split (synthetically)

        # The demand picture adds the nations' signals to the initiative's demand, by firmness (as NATO,
        # which leads it, sees it: a participant sees no aggregate of an open initiative).
        expected: dict[str, dict[str, int]] = {}
        for p in sample.participants:
            for year in set(p.indicative) | set(p.firm):
                firm, funded = p.firm.get(year, 0), p.funded.get(year, 0)
                d = expected.setdefault(str(year), {"indicative": 0, "planned": 0, "funded": 0})
                d["funded"] += funded
                d["planned"] += firm - funded
                d["indicative"] += max(p.indicative.get(year, 0) - firm, 0)
        for s in sample.signals:
            for year, q in s.quantities.items():
                expected.setdefault(str(year), {"indicative": 0, "planned": 0, "funded": 0})[s.firmness] += q
        [picture] = (await nspa.get("/v1/demand", params={"product": seed.SHELL_155})).json()["items"]
        assert (picture["unit"], picture["signals"], picture["initiatives"]) == ("rounds", 2, 1)
        assert {
            y: {k: d[k] for k in ("indicative", "planned", "funded")} for y, d in picture["years"].items()
        } == expected
        assert all(d["contracted"] == 0 for d in picture["years"].values())
        # Ukraine sees neither the Allies' signals (released to Allies only) nor, while it is open, the
        # aggregate of the initiative it takes part in; DEU, a participant, sees only the signals.
        assert (await ukr.get("/v1/demand", params={"product": seed.SHELL_155})).json()["items"] == []
        [as_deu] = (await deu.get("/v1/demand", params={"product": seed.SHELL_155})).json()["items"]
        assert (as_deu["signals"], as_deu["initiatives"]) == (2, 0)

        # GEM-T's demand is contracted now (NATO leads it; two nations committed: DEU sees no sum).
        [missiles] = (await nspa.get("/v1/demand", params={"product": seed.GEMT})).json()["items"]
        assert sum(d["contracted"] for d in missiles["years"].values()) == seed.GEMT_TOTAL
        assert (await deu.get("/v1/demand", params={"product": seed.GEMT})).json()["items"] == []

        everything = (await nspa.get("/v1/initiatives", params={"limit": 200})).json()["items"]
        assert len(everything) == len(seed.INITIATIVES)
        assert all(i["title"].startswith("[SAMPLE]") for i in everything)
    finally:
        for c in clients.values():
            await c.aclose()
