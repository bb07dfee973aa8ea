"""National plans through the gateway: every transition, every illegal one, roles, validation, events."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from icep.platform.events import ReceivedEvent, decode
from icep.platform.testing import read_records, wait_for

PROBLEM = "application/problem+json"
Clients = dict[str, httpx.AsyncClient]


def commitment(key: str = "unterluess-155", product: str = "155mm artillery round") -> dict[str, Any]:
    return {
        "key": key,
        "product": product,
        "capability_area": "munitions",
        "site": "Unterluess (synthetic figures)",
        "site_country": "DEU",
        "unit": "rounds",
        "baseline_per_month": 4000,
        "current_per_month": 8000,
        "target_per_month": 20000,
        "ramp": [
            {"on": "2026-01-01", "output_per_month": 12000},
            {"on": "2027-01-01", "output_per_month": 20000},
        ],
        "surge_per_month": 25000,
        "surge_days": 90,
        "lead_time_days": 540,
        "operator": {"company": "Rheinmetall Waffe Munition", "sme": False},
        "investment": {"amount": 300000000, "currency": "EUR"},
        "bottlenecks": [
            {
                "input": "nitrocellulose",
                "category": "energetics",
                "source_countries": ["CHN"],
                "single_source": True,
                "stock_cover_days": 60,
            }
        ],
    }


def body(title: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "title": title or f"Munitions ramp-up {uuid.uuid4().hex[:6]}",
        "period_start": "2025-01-01",
        "period_end": "2029-12-31",
        "capability_areas": ["munitions"],
        "releasability": {"scope": "allies"},
        "content": {
            "commitments": [commitment(), commitment("trittau-155", "155mm artillery round")],
            "measures": [
                {
                    "kind": "long_term_contract",
                    "description": "Framework contract for 155 mm rounds (synthetic)",
                    "starts": "2025-06-01",
                }
            ],
        },
        **extra,
    }


@pytest.fixture(scope="module")
def plan_events(platform: Any) -> Callable[..., Awaitable[list[ReceivedEvent]]]:
    async def read(plan_id: str, *types: str) -> list[ReceivedEvent]:
        """The plan's events on Kafka, in order, once every type named has arrived."""

        async def arrived() -> list[ReceivedEvent] | None:
            records = await read_records(platform.bootstrap, platform.topic("icep.plans.events"))
            events = [decode(r.key, r.value, r.headers) for r in records]
            mine = sorted((e for e in events if e.subject == plan_id), key=lambda e: e.id)
            seen = [e.type for e in mine]
            return mine if all(seen.count(t) >= types.count(t) for t in set(types)) else None

        return await wait_for(arrived, timeout=30, interval=0.2, what=f"events {types} of {plan_id}")

    return read


def if_match(record: dict[str, Any]) -> dict[str, str]:
    """The If-Match a change of a record sends: the ETag of the version read."""
    return {"If-Match": f'"{record["version"]}"'}


#: A change that does not care which version it changes (If-Match: * is the explicit "any").
ANY = {"If-Match": "*"}


def ok(r: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    data: dict[str, Any] = r.json()
    return data


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    data: dict[str, Any] = r.json()
    return data


async def in_state(c: Clients, state: str) -> dict[str, Any]:
    """A DEU plan brought to `state` through the API."""
    plan = ok(await c["deu"].post("/v1/plans", json=body()), 201)
    pid = plan["id"]
    steps = {
        "draft": [],
        "submitted": [("deu", "submit")],
        "under_review": [("deu", "submit"), ("nato", "start-review")],
        "accepted": [("deu", "submit"), ("nato", "start-review"), ("nato", "accept")],
        "returned": [("deu", "submit"), ("nato", "return")],
        "withdrawn": [("deu", "submit"), ("deu", "withdraw")],
    }[state]
    for who, action in steps:
        payload = {"reasons": ["needs ramp dates"]} if action == "return" else None
        plan = ok(await c[who].post(f"/v1/plans/{pid}/{action}", json=payload, headers=if_match(plan)))
    assert plan["status"] == state
    return plan


async def test_the_whole_life_with_its_events(clients: Clients, plan_events: Any) -> None:
    deu, fra, nato = clients["deu"], clients["fra"], clients["nato"]
    created = await deu.post(
        "/v1/plans", json=body(capacity_releasability={"scope": "allies_partners", "nations": ["UKR"]})
    )
    plan = ok(created, 201)
    pid = plan["id"]
    assert created.headers["ETag"] == '"1"' and plan["status"] == "draft"
    assert [c["key"] for c in plan["content"]["commitments"]] == ["unterluess-155", "trittau-155"]

    # Only drafts are edited, and only with If-Match.
    problem(await deu.patch(f"/v1/plans/{pid}", json={"title": "Edited"}), 428)
    problem(await deu.patch(f"/v1/plans/{pid}", json={"title": "Edited"}, headers={"If-Match": '"7"'}), 412)
    edited = await deu.patch(f"/v1/plans/{pid}", json={"title": "Edited"}, headers={"If-Match": '"1"'})
    assert ok(edited)["title"] == "Edited" and edited.headers["ETag"] == '"2"'

    submitted = ok(await deu.post(f"/v1/plans/{pid}/submit", headers={"If-Match": '"2"'}))
    problem(await fra.get(f"/v1/plans/{pid}"), 404)
    reviewing = ok(await nato.post(f"/v1/plans/{pid}/start-review", headers=if_match(submitted)))
    accepted = ok(await nato.post(f"/v1/plans/{pid}/accept", headers=if_match(reviewing)))
    assert accepted["status"] == "accepted" and accepted["version"] == 5
    assert ok(await fra.get(f"/v1/plans/{pid}"))["title"] == "Edited"  # released to all Allies
    problem(await clients["ukr"].get(f"/v1/plans/{pid}"), 404)  # only the capacity figures reach UKR

    versions = ok(await deu.get(f"/v1/plans/{pid}/versions"))["items"]
    assert [(v["version"], v["status"]) for v in versions] == [
        (1, "draft"),
        (2, "draft"),
        (3, "submitted"),
        (4, "under_review"),
        (5, "accepted"),
    ]
    assert versions[0]["title"] != "Edited" and versions[1]["title"] == "Edited"
    assert ok(await deu.get(f"/v1/plans/{pid}/versions/1"))["version"] == 1
    problem(await deu.get(f"/v1/plans/{pid}/versions/99"), 404)

    events = await plan_events(
        pid,
        "icep.plans.plan.created.v1",
        "icep.plans.plan.submitted.v1",
        "icep.plans.plan.review_started.v1",
        "icep.plans.plan.accepted.v1",
        "icep.plans.capacity.committed.v1",
        "icep.plans.capacity.committed.v1",
    )
    marks = [(e.type.split(".", 2)[2], e.releasable_to) for e in events]
    assert marks == [
        ("plan.created.v1", "DEU"),
        ("plan.submitted.v1", "DEU,NATO"),
        ("plan.review_started.v1", "DEU,NATO"),
        ("plan.accepted.v1", "ALLIES"),
        ("capacity.committed.v1", "ALLIES,UKR"),
        ("capacity.committed.v1", "ALLIES,UKR"),
    ]
    committed = events[4].data
    assert committed["commitment_key"] == "unterluess-155" and committed["target_per_month"] == 20000
    assert committed["ramp"][0] == {"on": "2026-01-01", "output_per_month": 12000}
    assert events[3].data["commitments"] == 2 and events[3].data["accepted_by"] == "nato-reviewer"


async def test_return_with_reasons_redraft_and_resubmit(clients: Clients, plan_events: Any) -> None:
    deu, nato = clients["deu"], clients["nato"]
    plan = await in_state(clients, "submitted")
    pid = plan["id"]
    problem(await nato.post(f"/v1/plans/{pid}/return", json={"reasons": []}, headers=ANY), 422)
    problem(await nato.post(f"/v1/plans/{pid}/return", json={"reasons": ["  "]}, headers=ANY), 422)
    returned = ok(
        await nato.post(
            f"/v1/plans/{pid}/return", json={"reasons": ["Ramp lacks 2028 step"]}, headers=if_match(plan)
        )
    )
    assert returned["status"] == "returned" and returned["returned_reasons"] == ["Ramp lacks 2028 step"]
    problem(await deu.patch(f"/v1/plans/{pid}", json={"title": "x"}, headers={"If-Match": '"3"'}), 409)
    draft = ok(await deu.post(f"/v1/plans/{pid}/redraft", headers=if_match(returned)))
    assert draft["status"] == "draft"
    problem(await nato.get(f"/v1/plans/{pid}"), 404)  # a draft again: the nation's own business
    fixed = ok(
        await deu.patch(
            f"/v1/plans/{pid}", json={"title": "Fixed"}, headers={"If-Match": f'"{draft["version"]}"'}
        )
    )
    assert ok(await deu.post(f"/v1/plans/{pid}/submit", headers=if_match(fixed)))["status"] == "submitted"
    events = await plan_events(
        pid, "icep.plans.plan.returned.v1", "icep.plans.plan.submitted.v1", "icep.plans.plan.submitted.v1"
    )
    [ret] = [e for e in events if e.type == "icep.plans.plan.returned.v1"]
    assert ret.data["reasons"] == ["Ramp lacks 2028 step"] and ret.releasable_to == "DEU,NATO"


async def test_withdraw_from_draft_stays_national(clients: Clients, plan_events: Any) -> None:
    plan = await in_state(clients, "draft")
    ok(await clients["deu"].post(f"/v1/plans/{plan['id']}/withdraw", headers=if_match(plan)))
    problem(await clients["nato"].get(f"/v1/plans/{plan['id']}"), 404)
    events = await plan_events(plan["id"], "icep.plans.plan.withdrawn.v1")
    assert [e.releasable_to for e in events if e.type.endswith("withdrawn.v1")] == ["DEU"]
    submitted = await in_state(clients, "withdrawn")
    assert ok(await clients["nato"].get(f"/v1/plans/{submitted['id']}"))["status"] == "withdrawn"


LEGAL = {
    ("submit", "draft"),
    ("start-review", "submitted"),
    ("accept", "under_review"),
    ("return", "submitted"),
    ("return", "under_review"),
    ("redraft", "returned"),
    ("withdraw", "draft"),
    ("withdraw", "submitted"),
    ("edit", "draft"),
}
ACTOR = {"submit": "deu", "start-review": "nato", "accept": "nato", "return": "nato", "redraft": "deu"}
ACTOR |= {"withdraw": "deu", "edit": "deu"}


@pytest.mark.parametrize("state", ["draft", "submitted", "under_review", "accepted", "returned", "withdrawn"])
async def test_every_action_in_every_state(clients: Clients, state: str) -> None:
    """Legal moves succeed; every other one is 409 with the current state (404 where NATO may not look)."""
    for action, who in ACTOR.items():
        plan = await in_state(clients, state)
        pid = plan["id"]
        if action == "edit":
            r = await clients[who].patch(
                f"/v1/plans/{pid}", json={"title": "t"}, headers={"If-Match": f'"{plan["version"]}"'}
            )
        else:
            payload = {"reasons": ["r"]} if action == "return" else None
            r = await clients[who].post(f"/v1/plans/{pid}/{action}", json=payload, headers=if_match(plan))
        hidden_from_nato = who == "nato" and state == "draft"
        if hidden_from_nato:
            problem(r, 404)
        elif (action, state) in LEGAL:
            assert r.status_code == 200, (action, state, r.text)
        else:
            assert problem(r, 409)["current_state"] == state, (action, state)


async def test_a_newer_accepted_plan_supersedes_the_older(clients: Clients, plan_events: Any) -> None:
    old = await in_state(clients, "accepted")
    new = await in_state(clients, "accepted")
    got = ok(await clients["fra"].get(f"/v1/plans/{old['id']}"))
    assert got["status"] == "superseded" and got["superseded_by"] == new["id"]
    problem(await clients["deu"].post(f"/v1/plans/{old['id']}/withdraw", headers=ANY), 409)
    events = await plan_events(old["id"], "icep.plans.plan.superseded.v1")
    [sup] = [e for e in events if e.type.endswith("superseded.v1")]
    assert sup.data["superseded_by"] == new["id"] and sup.releasable_to == "ALLIES"
    versions = ok(await clients["deu"].get(f"/v1/plans/{old['id']}/versions"))["items"]
    assert versions[-1]["status"] == "superseded"


async def test_roles(clients: Clients) -> None:
    deu, fra, nato, ukr = clients["deu"], clients["fra"], clients["nato"], clients["ukr"]
    problem(await nato.post("/v1/plans", json=body()), 403)
    problem(await ukr.post("/v1/plans", json=body()), 403)
    submitted = await in_state(clients, "submitted")
    pid = submitted["id"]
    problem(await fra.post(f"/v1/plans/{pid}/withdraw", headers=ANY), 404)  # FRA may not even see it
    problem(await deu.post(f"/v1/plans/{pid}/start-review", headers=if_match(submitted)), 403)
    problem(await deu.post(f"/v1/plans/{pid}/accept", headers=if_match(submitted)), 403)
    problem(await nato.post(f"/v1/plans/{pid}/withdraw", headers=if_match(submitted)), 403)
    accepted = await in_state(clients, "accepted")
    problem(
        await fra.post(
            f"/v1/plans/{accepted['id']}/release",
            json={"releasability": {"scope": "national"}},
            headers=if_match(accepted),
        ),
        403,
    )
    problem(await nato.post(f"/v1/plans/{accepted['id']}/submit", headers=if_match(accepted)), 403)


async def test_release_changes_who_sees_an_accepted_plan(clients: Clients, plan_events: Any) -> None:
    deu, fra = clients["deu"], clients["fra"]
    plan = await in_state(clients, "accepted")
    pid = plan["id"]
    ok(await fra.get(f"/v1/plans/{pid}"))
    problem(
        await deu.post(
            f"/v1/plans/{pid}/release",
            json={"releasability": {"scope": "nations", "nations": ["POL"]}},
            headers={"If-Match": '"1"'},
        ),
        412,
    )
    released = ok(
        await deu.post(
            f"/v1/plans/{pid}/release",
            json={"releasability": {"scope": "nations", "nations": ["POL"]}},
            headers=if_match(plan),
        )
    )
    assert released["releasability"] == {"scope": "nations", "nations": ["POL"]}
    problem(await fra.get(f"/v1/plans/{pid}"), 404)
    assert pid not in [p["id"] for p in ok(await fra.get("/v1/plans", params={"limit": 200}))["items"]]
    events = await plan_events(pid, "icep.plans.plan.released.v1")
    [rel] = [e for e in events if e.type.endswith("released.v1")]
    # NATO reviewed it: NATO staff still read it, and are told (one rule for reads and events).
    assert rel.releasable_to == "DEU,NATO,POL" and rel.data["releasable_to"] == "DEU,NATO,POL"
    ok(await clients["nato"].get(f"/v1/plans/{pid}"))


async def test_validation_names_the_fields(clients: Clients) -> None:
    deu = clients["deu"]
    bad = body()
    c = bad["content"]["commitments"][0]
    c["investment"]["currency"] = "euro"
    c["baseline_per_month"] = -1
    c["colour"] = "red"
    locations = {e["location"] for e in problem(await deu.post("/v1/plans", json=bad), 422)["errors"]}
    assert {
        "body.content.commitments.0.investment.currency",
        "body.content.commitments.0.baseline_per_month",
        "body.content.commitments.0.colour",
    } <= locations
    outside = body()
    outside["content"]["commitments"][1]["ramp"][0]["on"] = "2031-01-01"
    errors = problem(await deu.post("/v1/plans", json=outside), 422)["errors"]
    assert [e["location"] for e in errors] == ["body.content.commitments.1.ramp.0.on"]
    twice = body()
    twice["content"]["commitments"][1]["key"] = "unterluess-155"
    errors = problem(await deu.post("/v1/plans", json=twice), 422)["errors"]
    assert [e["location"] for e in errors] == ["body.content.commitments.1.key"]
    plan = ok(await deu.post("/v1/plans", json=body()), 201)
    r = await deu.patch(
        f"/v1/plans/{plan['id']}", json={"period_end": "2024-01-01"}, headers={"If-Match": '"1"'}
    )
    assert [e["location"] for e in problem(r, 422)["errors"]] == ["body.period_end"]
    problem(await deu.get("/v1/plans", params={"status": "lost"}), 422)
    backwards = body(period_start="2030-01-01")
    errors = problem(await deu.post("/v1/plans", json=backwards), 422)["errors"]
    assert [e["location"] for e in errors] == ["body.period_end"]


async def test_lists_page_through_only_what_the_caller_may_see(clients: Clients) -> None:
    """Pages are filtered in SQL: FRA's pages hold only visible plans, and the cursor walks them all."""
    hidden = [(await in_state(clients, "submitted"))["id"] for _ in range(3)]
    shown = [(await in_state(clients, "accepted"))["id"] for _ in range(2)]
    seen: list[str] = []
    url: str | None = "/v1/plans?limit=1&nation=DEU"
    while url:
        page = ok(await clients["fra"].get(url))
        assert len(page["items"]) <= 1
        seen += [p["id"] for p in page["items"]]
        url = page["next"]
        assert url is None or url.startswith("/v1/plans?")  # relative: right behind the gateway
    assert set(shown) <= set(seen) and not set(hidden) & set(seen)
    assert len(seen) == len(set(seen))
    mine = ok(await clients["deu"].get("/v1/plans", params={"status": "submitted", "limit": 200}))["items"]
    assert set(hidden) <= {p["id"] for p in mine} and {p["status"] for p in mine} == {"submitted"}
