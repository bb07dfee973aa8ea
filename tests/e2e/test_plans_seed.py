"""`icep seed` loads the labelled sample through the API, and a second run changes nothing."""

from __future__ import annotations

import importlib
from typing import Any


async def test_seed_is_idempotent_and_labelled(platform: Any) -> None:
    seed = importlib.import_module("icep.plans.seed")
    lines: list[str] = []
    first = await seed.seed(platform.gateway, say=lines.append)
    assert len(first.created) == len(seed.TARGETS) + len(seed.PLANS)
    assert any("-> accepted" in a for a in first.advanced)
    second = await seed.seed(platform.gateway, say=lines.append)
    assert second.created == [] and second.advanced == []
    assert len(second.unchanged) == len(seed.TARGETS) + len(seed.PLANS)

    deu = await platform.as_client("deu-planner")
    try:
        plans = (await deu.get("/v1/plans", params={"limit": 200})).json()["items"]
        mine = [p for p in plans if p["nation"] == "DEU"]
        assert len(mine) == 2 and all(p["title"].startswith("[SAMPLE]") for p in plans)
        assert sorted(p["status"] for p in mine) == ["accepted", "submitted"]
        # POL released its plan to DEU: DEU sees FRA's and POL's accepted plans too.
        assert {p["nation"] for p in plans} == {"DEU", "FRA", "POL"}
        lines_2026 = [
            line
            for line in (await deu.get("/v1/capacity/summary", params={"year": 2026})).json()["items"]
            if line["product"] == seed.SHELL_155
        ]
        [shells] = lines_2026
        assert shells["requirement"] == 2_000_000 and shells["nations"] == ["DEU", "FRA", "POL"]
        assert shells["gap"] == shells["requirement"] - shells["committed"] > 0
        # The sample actuals: March 2025 is FRA's corrected 4,950 (first 4,700) and POL's 2,600.
        r = await deu.get(
            "/v1/capacity/timeline", params={"product": seed.SHELL_155, "from": "2025-03", "to": "2025-03"}
        )
        totals = [s for s in r.json()["series"] if s["nation"] is None]
        assert [p["actual"] for p in totals[0]["points"]] == [4_950 + 2_600]
        fra = next(p for p in plans if p["nation"] == "FRA")
        history = (await deu.get(f"/v1/plans/{fra['id']}/commitments/bourges-155/progress")).json()
        [march] = [m for m in history["items"] if m["month"] == "2025-03-01"]
        assert [(c["previous_output"], c["actual_output"]) for c in march["corrections"]] == [(4_700, 4_950)]
    finally:
        await deu.aclose()
