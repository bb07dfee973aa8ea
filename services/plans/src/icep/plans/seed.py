"""`icep seed`: load a clearly labelled sample of national plans and capability targets, through the API.

Everything goes through the gateway's public API with the development clients (deploy/dev-clients.toml),
as a partner system would. Idempotent: it looks up what exists first (plans by nation and title, targets by
area, product and year) and creates or advances only what is missing, so a second run changes nothing.

Figures marked *sourced* come from public reporting (source named in the text); everything else is
*synthetic* and says so. Sample titles start with `[SAMPLE]`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from icep.platform.seeding import SeedReport, checked, gateway_client, if_match

LABEL = "[SAMPLE]"

#: Development-only secrets, published in deploy/dev-clients.toml; never valid in production.
DEV_SECRETS = {
    "deu-planner": "deu-planner-dev-secret",
    "fra-planner": "fra-planner-dev-secret",
    "pol-planner": "pol-planner-dev-secret",
    "nato-reviewer": "nato-reviewer-dev-secret",
}
PLANNERS = {"DEU": "deu-planner", "FRA": "fra-planner", "POL": "pol-planner"}
REVIEWER = "nato-reviewer"

SHELL_155 = "155mm artillery round"
PAC3 = "PAC-3 MSE interceptor"
GEMT = "GEM-T interceptor"

TARGETS: list[dict[str, Any]] = [
    # NATO's capability targets are not public: these requirements are synthetic.
    {
        "capability_area": "munitions",
        "product": SHELL_155,
        "year": y,
        "required_quantity": q,
        "unit": "rounds",
    }
    for y, q in ((2025, 1_600_000), (2026, 2_000_000), (2027, 2_400_000))
] + [
    {
        "capability_area": "air_missile_defence",
        "product": p,
        "year": y,
        "required_quantity": q,
        "unit": "missiles",
    }
    for p, y, q in ((PAC3, 2026, 900), (PAC3, 2027, 1_200), (GEMT, 2026, 300), (GEMT, 2027, 400))
]


def _nitrocellulose(single: bool) -> dict[str, Any]:
    # Sourced: Europe relied on China for over 70 % of cotton linters for nitrocellulose (FT).
    return {
        "input": "nitrocellulose (cotton linters)",
        "category": "energetics",
        "source_countries": ["CHN"] if single else ["CHN", "DEU"],
        "single_source": single,
        "stock_cover_days": 90,
    }


_TNT = {"input": "TNT", "category": "energetics", "source_countries": ["POL"], "single_source": True}
# Sourced: US solid rocket motor makers fell from 6 to 2 (GAO).
_SRM = {
    "input": "solid rocket motor",
    "category": "rocket_motors",
    "source_countries": ["USA"],
    "single_source": False,
}
_CHIPS = {
    "input": "radiation-hardened microelectronics",
    "category": "microelectronics",
    "source_countries": ["USA", "TWN"],
    "single_source": False,
}


def _shells(
    key: str, site: str, country: str, company: str, figures: tuple[int, int, int, int], **extra: Any
) -> dict[str, Any]:
    baseline, current, mid, target = figures
    return {
        "key": key,
        "product": SHELL_155,
        "capability_area": "munitions",
        "site": f"{site} (synthetic figures)",
        "site_country": country,
        "unit": "rounds",
        "baseline_per_month": baseline,
        "current_per_month": current,
        "target_per_month": target,
        "ramp": [
            {"on": "2025-07-01", "output_per_month": current + (mid - current) // 2},
            {"on": "2026-07-01", "output_per_month": mid},
            {"on": "2027-07-01", "output_per_month": target},
        ],
        "surge_per_month": int(target * 1.25),
        "surge_days": 120,
        "lead_time_days": extra.pop("lead_time_days", 540),
        "operator": {"company": company, "sme": extra.pop("sme", False)},
        "investment": extra.pop("investment", None),
        "bottlenecks": extra.pop("bottlenecks", [_nitrocellulose(True), _TNT]),
    }


def _plan(
    title: str,
    areas: list[str],
    commitments: list[dict[str, Any]],
    measures: list[dict[str, Any]],
    release: dict[str, Any],
    capacity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": f"{LABEL} {title}",
        "period_start": "2025-01-01",
        "period_end": "2029-12-31",
        "capability_areas": areas,
        "releasability": release,
        "content": {"commitments": commitments, "measures": measures},
    }
    if capacity is not None:
        body["capacity_releasability"] = capacity
    return body


@dataclass(frozen=True)
class SamplePlan:
    nation: str
    body: dict[str, Any]
    #: The state the seed brings it to: draft, submitted, under_review or accepted.
    state: str


PLANS: list[SamplePlan] = [
    SamplePlan(
        "DEU",
        _plan(
            "Germany: 155 mm ammunition ramp-up 2025-2029",
            ["munitions"],
            [
                _shells(
                    "unterluess-155",
                    "Unterluess",
                    "DEU",
                    "Rheinmetall Waffe Munition",
                    (4_000, 8_000, 14_000, 20_000),
                    investment={"amount": 500_000_000, "currency": "EUR"},
                ),
                _shells(
                    "trittau-155",
                    "Trittau",
                    "DEU",
                    "Synthetic Zuender GmbH",
                    (500, 1_000, 2_000, 3_000),
                    sme=True,
                    bottlenecks=[_nitrocellulose(False)],
                ),
            ],
            [
                {
                    "kind": "long_term_contract",
                    "description": "Multi-year 155 mm framework contract with industry (synthetic)",
                    "starts": "2025-03-01",
                },
                {
                    "kind": "new_production_line",
                    "description": "New 155 mm shell line at Unterluess (synthetic dates)",
                    "starts": "2025-01-01",
                    "completes": "2027-06-30",
                },
            ],
            {"scope": "allies"},
        ),
        "accepted",
    ),
    SamplePlan(
        "DEU",
        _plan(
            "Germany: air and missile defence interceptors 2025-2029",
            ["air_missile_defence"],
            [
                {
                    "key": "schrobenhausen-gemt",
                    "product": GEMT,
                    "capability_area": "air_missile_defence",
                    "site": "Schrobenhausen (synthetic figures)",
                    "site_country": "DEU",
                    "unit": "missiles",
                    "baseline_per_month": 5,
                    "current_per_month": 8,
                    "target_per_month": 20,
                    "ramp": [
                        {"on": "2026-01-01", "output_per_month": 12},
                        {"on": "2027-01-01", "output_per_month": 20},
                    ],
                    "surge_per_month": 25,
                    "surge_days": 180,
                    "lead_time_days": 900,
                    # Sourced: NSPA contract with COMLOG for up to 1,000 GEM-T for DEU, NLD, ROU, ESP, about
                    # USD 5.5 billion (Defense News, Jan 2024).
                    "operator": {
                        "company": "COMLOG (sourced: NSPA GEM-T contract, Defense News Jan 2024)",
                        "sme": False,
                    },
                    "investment": {"amount": 5_500_000_000, "currency": "USD"},
                    "bottlenecks": [_SRM, _CHIPS],
                }
            ],
            [
                {
                    "kind": "procurement_reform",
                    "description": "Joint GEM-T procurement through NSPA with NLD, ROU, ESP (sourced)",
                    "starts": "2024-01-01",
                }
            ],
            {"scope": "allies"},
        ),
        "submitted",
    ),
    SamplePlan(
        "FRA",
        _plan(
            "France: 155 mm ammunition for CAESAR 2025-2029",
            ["munitions"],
            [
                # Sourced: NSPA frameworks of EUR 1.1 billion with Nexter (KNDS) and Junghans, about 220,000
                # rounds, lead times 24-36 months. Monthly figures are synthetic.
                _shells(
                    "bourges-155",
                    "Bourges",
                    "FRA",
                    "KNDS France (Nexter)",
                    (3_000, 5_000, 7_000, 10_000),
                    lead_time_days=900,
                    investment={"amount": 1_100_000_000, "currency": "EUR"},
                ),
            ],
            [
                {
                    "kind": "legislation",
                    "description": "Defence requisition powers in the programming law (synthetic)",
                    "starts": "2024-01-01",
                }
            ],
            {"scope": "allies"},
            {"scope": "allies_partners", "nations": ["UKR"]},
        ),
        "accepted",
    ),
    SamplePlan(
        "POL",
        _plan(
            "Poland: 155 mm shells and energetics 2025-2029",
            ["munitions"],
            [
                _shells(
                    "skarzysko-155",
                    "Skarzysko-Kamienna",
                    "POL",
                    "Synthetic Amunicja S.A.",
                    (1_000, 2_500, 5_000, 12_000),
                    bottlenecks=[_nitrocellulose(True)],
                ),
            ],
            [
                {
                    "kind": "new_production_line",
                    "description": "New 155 mm line and TNT capacity expansion (synthetic)",
                    "starts": "2025-01-01",
                    "completes": "2028-12-31",
                }
            ],
            {"scope": "nations", "nations": ["DEU", "FRA", "NATO"]},
            {"scope": "allies"},
        ),
        "accepted",
    ),
]

#: Synthetic actual output reported against the accepted sample plans' commitments, in the order reported:
#: a month listed twice was corrected, so its history (and the timeline's chart) shows a correction.
ACTUALS: dict[str, list[tuple[str, int]]] = {
    "bourges-155": [
        ("2025-01-01", 4_800),
        ("2025-02-01", 5_050),
        ("2025-03-01", 4_700),
        ("2025-03-01", 4_950),
        ("2025-04-01", 5_200),
        ("2025-05-01", 5_100),
        ("2025-06-01", 5_300),
    ],
    "skarzysko-155": [
        ("2025-01-01", 2_300),
        ("2025-02-01", 2_450),
        ("2025-03-01", 2_600),
        ("2025-04-01", 2_550),
        ("2025-05-01", 2_700),
        ("2025-06-01", 2_750),
    ],
}

STEPS = {
    "draft": ("planner", "submit", "submitted"),
    "submitted": ("reviewer", "start-review", "under_review"),
    "under_review": ("reviewer", "accept", "accepted"),
}
ORDER = ["draft", "submitted", "under_review", "accepted"]


async def _existing(planner: httpx.AsyncClient, nation: str, title: str) -> dict[str, Any] | None:
    url: str | None = "/v1/plans"
    params: dict[str, Any] | None = {"nation": nation, "limit": 200}
    while url:
        page = checked(await planner.get(url, params=params))
        for plan in page["items"]:
            if plan["title"] == title:
                found: dict[str, Any] = plan
                return found
        url, params = page["next"], None
    return None


async def _report_actuals(planner: httpx.AsyncClient, plan: dict[str, Any], report: SeedReport) -> None:
    """The sample actuals of the plan's commitments that its history does not hold yet (a month counts as
    many reports as it has: its first and its corrections)."""
    for commitment in plan["content"]["commitments"]:
        key = commitment["key"]
        url = f"/v1/plans/{plan['id']}/commitments/{key}/progress"
        history = checked(await planner.get(url))["items"]
        held = {m["month"]: 1 + len(m["corrections"]) for m in history}
        made = 0
        for month, actual in ACTUALS.get(key, []):
            if held.get(month, 0) > 0:
                held[month] -= 1
                continue
            checked(
                await planner.post(
                    url, json={"month": month, "actual_output": actual}, headers=if_match(plan)
                )
            )
            made += 1
        if made:
            report.advanced.append(f"{key}: {made} progress reports (synthetic)")


async def seed(
    gateway: str, secrets: dict[str, str] | None = None, say: Callable[[str], None] = print
) -> SeedReport:
    secrets = {**DEV_SECRETS, **(secrets or {})}
    gateway = gateway.rstrip("/")
    report = SeedReport()
    async with httpx.AsyncClient(timeout=30) as http:
        clients = {
            cid: await gateway_client(http, gateway, cid, secrets[cid])
            for cid in {*PLANNERS.values(), REVIEWER}
        }
        try:
            reviewer = clients[REVIEWER]
            for t in TARGETS:
                name = f"target {t['product']} {t['year']}"
                listed = checked(
                    await reviewer.get(
                        "/v1/capacity/targets",
                        params={k: t[k] for k in ("capability_area", "product", "year")},
                    )
                )
                if any(x["required_quantity"] == t["required_quantity"] for x in listed["items"]):
                    report.unchanged.append(name)
                    continue
                # A target recorded with another figure is corrected: that names the version read.
                existing = listed["items"][0] if listed["items"] else None
                headers = {"If-Match": f'"{existing["version"]}"'} if existing else {}
                checked(await reviewer.put("/v1/capacity/targets", json=t, headers=headers))
                report.created.append(name)
            for sample in PLANS:
                planner = clients[PLANNERS[sample.nation]]
                title = sample.body["title"]
                plan = await _existing(planner, sample.nation, title)
                if plan is None:
                    plan = checked(await planner.post("/v1/plans", json=sample.body))
                    report.created.append(title)
                moved = False
                while plan["status"] in STEPS and ORDER.index(plan["status"]) < ORDER.index(sample.state):
                    who, action, _ = STEPS[plan["status"]]
                    client = planner if who == "planner" else reviewer
                    plan = checked(
                        await client.post(f"/v1/plans/{plan['id']}/{action}", headers=if_match(plan))
                    )
                    moved = True
                if moved:
                    report.advanced.append(f"{title} -> {plan['status']}")
                elif title not in report.created:
                    report.unchanged.append(title)
                if plan["status"] == "accepted":
                    await _report_actuals(planner, plan, report)
        finally:
            for c in clients.values():
                await c.aclose()
    report.tell(say, "sample records")
    return report
