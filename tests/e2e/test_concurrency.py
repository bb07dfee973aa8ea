"""If-Match on every change of an existing resource, through the gateway, on every service: without it
428, with a version that is gone 412 (naming the current one), with `*` the change is made whatever the
version; and two changes made from the same read do not both win.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from icep.platform.testing import WebhookReceiver

Clients = dict[str, httpx.AsyncClient]
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
async def c(platform: Any) -> AsyncIterator[Clients]:
    made = {
        name: await platform.as_client(client_id)
        for name, client_id in {
            "deu": "deu-planner",
            "nato": "nato-reviewer",
            "deu_proc": "deu-procurement",
            "nato_std": "nato-standards",
            "deu_sub": "deu-subscriber",
        }.items()
    }
    try:
        yield made
    finally:
        for client in made.values():
            await client.aclose()


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:8]}"


async def created(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await client.post(path, json=body)
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == '"1"'
    got = await client.get(r.headers["location"])
    assert got.headers["etag"] == '"1"'  # every read of a mutable resource carries its ETag
    return dict(r.json())


async def preconditions_hold(
    client: httpx.AsyncClient, path: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    """The change at `path` of a resource at version 1: 428 without If-Match, 412 with a version that is
    not the current one (and nothing changed), then made with `If-Match: *`; its answer is returned."""
    missing = await client.post(path, json=body)
    assert missing.status_code == 428, missing.text
    assert missing.headers["content-type"].startswith(PROBLEM)
    assert (
        missing.json()["type"].endswith("/precondition-required") and "If-Match" in missing.json()["detail"]
    )
    stale = await client.post(path, json=body, headers={"If-Match": '"7"'})
    assert stale.status_code == 412, stale.text
    assert stale.json()["type"].endswith("/precondition-failed") and stale.json()["current_version"] == 1
    done = await client.post(path, json=body, headers={"If-Match": "*"})
    assert done.status_code == 200, done.text
    assert done.headers["etag"] == '"2"' and done.json()["version"] == 2
    return done


async def test_plans(c: Clients) -> None:
    plan = await created(
        c["deu"],
        "/v1/plans",
        {
            "title": unique("Preconditions plan"),
            "period_start": "2025-01-01",
            "period_end": "2029-12-31",
            "capability_areas": ["munitions"],
            "releasability": {"scope": "allies"},
        },
    )
    done = await preconditions_hold(c["deu"], f"/v1/plans/{plan['id']}/submit")
    assert done.json()["status"] == "submitted"


async def test_procurement(c: Clients) -> None:
    initiative = await created(
        c["deu_proc"],
        "/v1/initiatives",
        {
            "title": "Preconditions joint buy (synthetic)",
            "item": {"product": unique("155mm round"), "unit": "rounds"},
            "capability_area": "munitions",
            "required_standards": [],
            "participation_deadline": (dt.date.today() + dt.timedelta(days=60)).isoformat(),
        },
    )
    done = await preconditions_hold(c["deu_proc"], f"/v1/initiatives/{initiative['id']}/open")
    assert done.json()["status"] == "open"


async def test_standards(c: Clients) -> None:
    standard = await created(
        c["nato_std"],
        "/v1/standards",
        {
            "kind": "STANAG",
            "number": f"7{uuid.uuid4().int % 10**8:08d}",
            "edition": 1,
            "title": "Preconditions (synthetic)",
            "domain": "land",
            "levels": ["1"],
        },
    )
    done = await preconditions_hold(c["nato_std"], f"/v1/standards/{standard['id']}/circulate")
    assert done.json()["status"] == "ratification_draft"


async def test_notifications(c: Clients, receiver: WebhookReceiver) -> None:
    sub = await created(
        c["deu_sub"], "/v1/subscriptions", {"url": receiver.url, "event_types": ["icep.nothing.*"]}
    )
    done = await preconditions_hold(c["deu_sub"], f"/v1/subscriptions/{sub['id']}/pause")
    assert done.json()["status"] == "paused"


async def test_a_malformed_if_match_is_412_before_anything_is_looked_up(c: Clients) -> None:
    for value in ['"abc"', "W/", '"1", "2"']:
        r = await c["deu"].post("/v1/plans/no-such-plan/submit", headers={"If-Match": value})
        assert r.status_code == 412, (value, r.text)


async def test_two_edits_from_the_same_read_do_not_both_win(c: Clients) -> None:
    """The lost update If-Match exists for: both editors read version 1; one edit is taken, the other is
    refused (412, or 409 when both reached the database at the same moment) and nothing is overwritten."""
    plan = await created(
        c["deu"],
        "/v1/plans",
        {
            "title": unique("Two editors"),
            "period_start": "2025-01-01",
            "period_end": "2029-12-31",
            "capability_areas": ["munitions"],
            "releasability": {"scope": "allies"},
        },
    )
    path = f"/v1/plans/{plan['id']}"
    answers = await asyncio.gather(
        *(c["deu"].patch(path, json={"title": f"Editor {n}"}, headers={"If-Match": '"1"'}) for n in range(2))
    )
    ok = [r for r in answers if r.status_code == 200]
    assert len(ok) == 1 and {r.status_code for r in answers} - {200} <= {409, 412}, [r.text for r in answers]
    current = (await c["deu"].get(path)).json()
    assert (current["title"], current["version"]) == (ok[0].json()["title"], 2)


async def test_capability_targets_carry_an_etag_and_a_correction_names_it(c: Clients) -> None:
    target = {
        "capability_area": "munitions",
        "product": unique("155mm round (targets)"),
        "year": 2027,
        "required_quantity": 100,
        "unit": "rounds",
    }
    first = await c["nato"].put("/v1/capacity/targets", json=target)
    assert first.status_code == 201 and first.headers["etag"] == '"1"', first.text
    # Naming a version of a target that does not exist yet cannot hold.
    other = target | {"year": 2028}
    assert (
        await c["nato"].put("/v1/capacity/targets", json=other, headers={"If-Match": '"1"'})
    ).status_code == 412
    r = await c["nato"].put("/v1/capacity/targets", json=target | {"required_quantity": 150})
    assert r.status_code == 428, r.text
    r = await c["nato"].put(
        "/v1/capacity/targets", json=target | {"required_quantity": 150}, headers={"If-Match": "*"}
    )
    assert r.status_code == 200 and r.headers["etag"] == '"2"' and r.json()["version"] == 2
    listed = (await c["deu"].get("/v1/capacity/targets", params={"product": target["product"]})).json()
    assert [(t["required_quantity"], t["version"]) for t in listed["items"]] == [(150, 2)]
    got = await c["deu"].get(f"/v1/capacity/targets/{first.json()['id']}")
    assert got.headers["etag"] == '"2"'
    assert (await c["deu"].get(f"/v1/capacity/targets/{uuid.uuid4()}")).status_code == 404
