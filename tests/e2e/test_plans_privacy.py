"""What a plan's readers may not learn: earlier drafts, a successor they may not see, the plan's
title through its capacity events; and a newer accepted version is never superseded by an older one.
What its owner does learn: who touched it (the audit trail)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx

from icep.platform.events import decode
from icep.platform.testing import read_records, wait_for

Clients = dict[str, httpx.AsyncClient]
#: The platform exports its spans to the test's OTLP receiver (tests/conftest.py): this module reads them.
TRACED = True

PERIOD = {"period_start": "2040-01-01", "period_end": "2044-12-31"}  # no other module's plans here


def commitment() -> dict[str, Any]:
    return {
        "key": "line-1",
        "product": "155mm artillery round",
        "capability_area": "munitions",
        "site": "Line 1 (synthetic)",
        "site_country": "DEU",
        "unit": "rounds",
        "baseline_per_month": 1000,
        "current_per_month": 1000,
        "target_per_month": 3000,
        "ramp": [{"on": "2041-01-01", "output_per_month": 3000}],
        "surge_per_month": 3500,
        "surge_days": 60,
        "lead_time_days": 365,
        "operator": {"company": "Synthetic Munitions GmbH", "sme": True},
        "investment": {"amount": 1000000, "currency": "EUR"},
        "bottlenecks": [],
    }


def body(scope: str = "allies", **extra: Any) -> dict[str, Any]:
    return {
        "title": f"Privacy probe {uuid.uuid4().hex[:6]}",
        **PERIOD,
        "capability_areas": ["munitions"],
        "releasability": {"scope": scope},
        "content": {"commitments": [commitment()], "measures": []},
        **extra,
    }


def ok(r: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    answer: dict[str, Any] = r.json()
    return answer


def if_match(record: dict[str, Any]) -> dict[str, str]:
    return {"If-Match": f'"{record["version"]}"'}


async def accepted(c: Clients, plan: dict[str, Any]) -> dict[str, Any]:
    pid = plan["id"]
    plan = ok(await c["deu"].post(f"/v1/plans/{pid}/submit", headers=if_match(plan)))
    plan = ok(await c["nato"].post(f"/v1/plans/{pid}/start-review", headers=if_match(plan)))
    return ok(await c["nato"].post(f"/v1/plans/{pid}/accept", headers=if_match(plan)))


async def test_only_the_owner_reads_earlier_drafts(clients: Clients) -> None:
    plan = ok(await clients["deu"].post("/v1/plans", json=body()), 201)
    await accepted(clients, plan)
    pid = plan["id"]
    owner = [v["status"] for v in ok(await clients["deu"].get(f"/v1/plans/{pid}/versions"))["items"]]
    nato = [v["status"] for v in ok(await clients["nato"].get(f"/v1/plans/{pid}/versions"))["items"]]
    fra = [v["status"] for v in ok(await clients["fra"].get(f"/v1/plans/{pid}/versions"))["items"]]
    assert owner == ["draft", "submitted", "under_review", "accepted"]
    assert nato == ["submitted", "under_review", "accepted"]
    assert fra == ["accepted"]
    assert (await clients["fra"].get(f"/v1/plans/{pid}/versions/1")).status_code == 404
    assert ok(await clients["deu"].get(f"/v1/plans/{pid}/versions/1"))["status"] == "draft"
    assert (await clients["deu"].get(f"/v1/plans/{pid}/versions/99999999999999999999")).status_code == 422


async def test_successor_is_named_only_to_who_may_see_it(clients: Clients, platform: Any) -> None:
    old = ok(await clients["deu"].post("/v1/plans", json=body("allies")), 201)
    await accepted(clients, old)
    new = ok(await clients["deu"].post("/v1/plans", json=body("national")), 201)
    await accepted(clients, new)
    assert ok(await clients["deu"].get(f"/v1/plans/{old['id']}"))["superseded_by"] == new["id"]
    seen_by_fra = ok(await clients["fra"].get(f"/v1/plans/{old['id']}"))
    assert seen_by_fra["status"] == "superseded" and seen_by_fra["superseded_by"] is None
    fra_versions = ok(await clients["fra"].get(f"/v1/plans/{old['id']}/versions"))["items"]
    assert all(v.get("superseded_by") is None for v in fra_versions)

    async def superseded_event() -> Any:
        records = await read_records(platform.bootstrap, platform.topic("icep.plans.events"))
        events = [decode(r.key, r.value, r.headers) for r in records]
        found = [e for e in events if e.subject == old["id"] and e.type == "icep.plans.plan.superseded.v1"]
        return found[0] if found else None

    event = await wait_for(superseded_event, timeout=30, what="the superseded event")
    assert event.releasable_to == "ALLIES" and event.data["superseded_by"] is None


async def test_an_older_plan_cannot_supersede_a_newer_accepted_one(clients: Clients) -> None:
    older = ok(await clients["deu"].post("/v1/plans", json=body()), 201)
    newer = ok(await clients["deu"].post("/v1/plans", json=body()), 201)
    await accepted(clients, newer)
    pid = older["id"]
    submitted = ok(await clients["deu"].post(f"/v1/plans/{pid}/submit", headers=if_match(older)))
    reviewing = ok(await clients["nato"].post(f"/v1/plans/{pid}/start-review", headers=if_match(submitted)))
    refused = await clients["nato"].post(f"/v1/plans/{pid}/accept", headers=if_match(reviewing))
    assert refused.status_code == 409, refused.text
    assert refused.json()["newer_plan_id"] == newer["id"]
    assert ok(await clients["deu"].get(f"/v1/plans/{newer['id']}"))["status"] == "accepted"


async def test_capacity_events_carry_no_title(clients: Clients, platform: Any) -> None:
    plan = ok(
        await clients["deu"].post(
            "/v1/plans",
            json=body("national", capacity_releasability={"scope": "allies_partners", "nations": ["UKR"]}),
        ),
        201,
    )
    await accepted(clients, plan)
    assert (await clients["ukr"].get(f"/v1/plans/{plan['id']}")).status_code == 404

    async def committed() -> Any:
        records = await read_records(platform.bootstrap, platform.topic("icep.plans.events"))
        events = [decode(r.key, r.value, r.headers) for r in records]
        found = [
            e for e in events if e.subject == plan["id"] and e.type == "icep.plans.capacity.committed.v1"
        ]
        return found[0] if found else None

    event = await wait_for(committed, timeout=30, what="the capacity committed event")
    assert event.releasability.allows("UKR")
    assert "title" not in event.data and plan["title"] not in event.body().__repr__()


async def test_the_owner_nations_operators_see_who_touched_its_plan(clients: Clients, platform: Any) -> None:
    """DEU's planner creates and submits a plan, NATO's reviewer reads it, FRA's planner tries to withdraw
    it: DEU's operator sees each, with who, how and the trace; FRA's operator sees none; NATO's sees all."""
    plan = ok(await clients["deu"].post("/v1/plans", json=body()), 201)
    pid = plan["id"]
    submitted = ok(await clients["deu"].post(f"/v1/plans/{pid}/submit", headers=if_match(plan)))
    ok(await clients["nato"].get(f"/v1/plans/{pid}"))
    refused = await clients["fra"].post(f"/v1/plans/{pid}/withdraw", headers=if_match(submitted))
    assert refused.status_code == 404, refused.text  # a submitted plan is not FRA's to see

    deu_op, fra_op = await platform.as_client("deu-operator"), await platform.as_client("fra-operator")
    try:

        async def trail(client: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = ok(await client.get("/v1/audit", params=params))["items"]
            return items

        async def all_four() -> list[dict[str, Any]] | None:
            found = await trail(deu_op, resource_id=pid)
            return found if len(found) == 4 else None  # the read is written by the batch writer

        entries = await wait_for(all_four, timeout=30, what="four audit entries of the plan")
        seen = [
            (e["client_id"], e["client_nation"], e["roles"], e["action"], e["kind"], e["outcome"])
            for e in entries
        ]
        assert seen == [  # newest first
            ("fra-planner", "FRA", ["planner", "subscriber"], "withdrawPlan", "change", "refused"),
            ("nato-reviewer", "NATO", ["operator", "reviewer"], "getPlan", "read", "success"),
            ("deu-planner", "DEU", ["planner", "subscriber"], "submitPlan", "change", "success"),
            ("deu-planner", "DEU", ["planner", "subscriber"], "createPlan", "change", "success"),
        ]
        assert all(
            (e["service"], e["resource_type"], e["owner_nation"]) == ("plans", "plan", "DEU") for e in entries
        )
        assert entries[0]["status"] == 404 and entries[0]["problem_type"].endswith("/not-found")

        # Each entry names the trace of its request: one trace from the gateway through the plans service.
        traces = [e["trace_id"] for e in entries]
        assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in traces) and len(set(traces)) == 4

        def traced() -> bool:
            spans = platform.collector.collected()
            in_gateway = {s.trace_id for s in spans if s.service == "icep-gateway"}
            return set(traces) <= in_gateway & {s.trace_id for s in spans if s.service == "icep-plans"}

        await wait_for(traced, timeout=30, what="gateway and plans spans in each audited request's trace")

        # FRA's operator sees nothing of DEU's plan, even when asking for DEU's records by name.
        assert await trail(fra_op, resource_id=pid) == []
        assert await trail(fra_op, nation="DEU") == []
        # NATO's operators see every nation's records; a planner is no operator.
        nato_view = await trail(clients["nato"], resource_id=pid)
        assert [e["id"] for e in nato_view] == [e["id"] for e in entries]
        assert (await clients["deu"].get("/v1/audit")).status_code == 403
        # One cursor pages through the trail, newest first, each entry once.
        first = ok(await deu_op.get("/v1/audit", params={"resource_id": pid, "limit": 3}))
        assert [e["id"] for e in first["items"]] == [e["id"] for e in entries[:3]] and first["next"]
        rest = ok(await deu_op.get(first["next"]))
        assert [e["id"] for e in rest["items"]] == [entries[3]["id"]] and rest["next"] is None
        refusals = await trail(deu_op, resource_id=pid, outcome="refused", client_id="fra-planner")
        assert [e["id"] for e in refusals] == [entries[0]["id"]]
    finally:
        await deu_op.aclose()
        await fra_op.aclose()
