"""`icep seed` loads the labelled standards sample through the API, and a second run changes nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
from typing import Any

from typer.testing import CliRunner

from icep.platform.cli import app


async def test_standards_seed_is_idempotent_and_labelled(platform: Any) -> None:
    seed = importlib.import_module("icep.standards.seed")
    lines: list[str] = []
    first = await seed.seed(platform.gateway, say=lines.append)
    assert first.skipped == []
    assert len(first.created) == len(seed.STANDARDS) + len(seed.CLEARANCES) + len(seed.CLAIMS)
    assert "STANAG 4569 Ed. 3 -> promulgated" in first.advanced
    second = await seed.seed(platform.gateway, say=lines.append)
    assert second.created == [] and second.advanced == [] and second.skipped == []
    answers = sum(len(s.responses) for s in seed.STANDARDS)
    records = len(seed.STANDARDS) + answers + len(seed.CLEARANCES) + len(seed.CLAIMS)
    assert len(second.unchanged) == records

    # `icep seed` runs the plans seed, then this one (which again changes nothing here), then procurement's.
    cli = await asyncio.to_thread(CliRunner().invoke, app, ["seed", "--gateway", platform.gateway])
    assert cli.exit_code == 0, cli.output
    standards_part = cli.output.split("standards\n", 1)[1].split("procurement\n", 1)[0]
    assert "created" not in standards_part and "advanced" not in standards_part
    assert f"{records} sample standards records already present and unchanged" in standards_part

    deu = await platform.as_client("deu-standards")
    try:
        editions = (await deu.get("/v1/standards", params={"number": "4569"})).json()["items"]
        assert [(s["edition"], s["status"]) for s in editions] == [(2, "superseded"), (3, "promulgated")]
        ed2, ed3 = editions
        assert ed3["supersedes"] == ed2["id"] and ed2["superseded_by"] == ed3["id"]
        assert ed3["covering_publications"] == ["AEP-55"] and ed3["levels"] == ["1", "2", "3", "4", "5", "6"]
        catalogue = (await deu.get("/v1/standards", params={"limit": 200})).json()["items"]
        assert len(catalogue) == len(seed.STANDARDS)
        assert all(s["title"].startswith("[SAMPLE]") for s in catalogue)

        answers_3 = {
            r["nation"]: r for r in (await deu.get(f"/v1/standards/{ed3['id']}/responses")).json()["items"]
        }
        assert sorted(answers_3) == ["DEU", "FRA"]  # POL is pending
        assert answers_3["DEU"]["status"] == "ratified"
        assert answers_3["DEU"]["implemented_on"] == ed3["promulgated_on"]
        fra = answers_3["FRA"]
        assert fra["status"] == "ratified_with_reservations" and fra["implementation_forecast"]
        assert all("(synthetic)" in r["detail"] for r in fra["reservations"])

        can = await deu.get(
            "/v1/interchangeability",
            params={"item": seed.ITEM_155, "platform": seed.PZH_2000, "nation": "DEU"},
        )
        assert can.status_code == 200, can.text
        assert can.json()["answer"] == "yes"
        caesar = (
            await deu.get(
                "/v1/interchangeability",
                params={"item": seed.ITEM_155, "platform": seed.CAESAR, "nation": "FRA"},
            )
        ).json()
        assert caesar["answer"] == "yes_with_restrictions"
        krab = (
            await deu.get(
                "/v1/interchangeability",
                params={"item": seed.ITEM_155, "platform": seed.KRAB, "nation": "POL"},
            )
        ).json()
        assert krab["answer"] == "no"
        clearances = (
            await deu.get("/v1/interchangeability/clearances", params={"item": seed.ITEM_155})
        ).json()["items"]
        assert sorted(c["releasability"]["owner"] for c in clearances) == ["DEU", "FRA", "POL"]

        [claim] = (
            await deu.get("/v1/standards/conformance", params={"product_code": "SAMPLE-LAV-4"})
        ).json()["items"]
        assert (claim["standard_id"], claim["level"], claim["status"]) == (ed3["id"], "4", "verified")
        assert dt.date.fromisoformat(claim["expires_on"]) > dt.datetime.now(dt.UTC).date()
        assert all("(synthetic)" in e for e in claim["evidence"])
    finally:
        await deu.aclose()
