"""Every error a partner can cause is RFC 9457 problem JSON with the right status, never a 500."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from icep.platform.testing import wait_for

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
async def deu(platform: Any) -> AsyncIterator[httpx.AsyncClient]:
    client = await platform.as_client("deu-planner")
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
async def fra(platform: Any) -> AsyncIterator[httpx.AsyncClient]:
    client = await platform.as_client("fra-planner")
    yield client
    await client.aclose()


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["title"] and body["type"].startswith("https://")
    return body


async def test_no_token_or_a_forged_one_is_401(platform: Any) -> None:
    r = await platform.http.get(f"{platform.gateway}/v1/plans")
    assert_problem(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")
    forged = await platform.http.get(
        f"{platform.gateway}/v1/plans", headers={"Authorization": "Bearer a.b.c"}
    )
    assert_problem(forged, 401)


async def test_services_verify_tokens_themselves(platform: Any) -> None:
    """A request that bypasses the gateway gains nothing: the service checks the token too."""
    plans = f"http://127.0.0.1:{platform.launcher.ports['plans']}"
    assert_problem(await platform.http.get(f"{plans}/v1/plans"), 401)
    token = await platform.token("deu-planner")
    ok = await platform.http.get(f"{plans}/v1/plans", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200


async def test_invalid_body_names_the_fields(
    deu: httpx.AsyncClient, plan_body: Callable[..., dict[str, Any]]
) -> None:
    body = plan_body() | {"period_start": "not a date", "colour": "red"}
    problem = assert_problem(await deu.post("/v1/plans", json=body), 422)
    locations = {e["location"] for e in problem["errors"]}
    assert {"body.period_start", "body.colour"} <= locations
    unknown = plan_body() | {"releasability": {"scope": "nations", "nations": ["POL", "XXX"]}}
    problem = assert_problem(await deu.post("/v1/plans", json=unknown), 422)
    assert [e["location"] for e in problem["errors"]] == ["body.releasability.nations.1"]
    for tag in ['"-1"', '"1e5"', "W/abc"]:
        assert_problem(await deu.post("/v1/plans/x/submit", headers={"If-Match": tag}), 412)
    backwards = plan_body() | {"period_start": "2030-01-01"}
    assert_problem(await deu.post("/v1/plans", json=backwards), 422)
    assert_problem(
        await deu.post("/v1/plans", content=b"{not json", headers={"content-type": "application/json"}), 422
    )


async def test_other_nations_cannot_see_or_submit_a_draft(
    deu: httpx.AsyncClient, fra: httpx.AsyncClient, plan_body: Callable[..., dict[str, Any]]
) -> None:
    plan = (await deu.post("/v1/plans", json=plan_body())).json()
    assert_problem(await fra.get(f"/v1/plans/{plan['id']}"), 404)
    assert_problem(await fra.post(f"/v1/plans/{plan['id']}/submit", headers={"If-Match": '"1"'}), 404)
    listed = (await fra.get("/v1/plans")).json()["items"]
    assert plan["id"] not in {p["id"] for p in listed}
    assert plan["id"] in {
        p["id"] for p in (await deu.get("/v1/plans", params={"limit": 200})).json()["items"]
    }


async def test_stale_etag_is_412_and_illegal_transition_is_409(
    deu: httpx.AsyncClient, plan_body: Callable[..., dict[str, Any]]
) -> None:
    created = await deu.post("/v1/plans", json=plan_body())
    plan_id = created.json()["id"]
    assert created.headers["etag"] == '"1"'
    stale = assert_problem(await deu.post(f"/v1/plans/{plan_id}/submit", headers={"If-Match": '"7"'}), 412)
    assert stale["current_version"] == 1
    assert (await deu.post(f"/v1/plans/{plan_id}/submit", headers={"If-Match": '"1"'})).status_code == 200
    again = assert_problem(await deu.post(f"/v1/plans/{plan_id}/submit", headers={"If-Match": "*"}), 409)
    assert again["current_state"] == "submitted"


async def test_a_subscriber_only_client_cannot_create_plans(
    platform: Any, plan_body: Callable[..., dict[str, Any]]
) -> None:
    client = await platform.as_client("deu-subscriber")
    try:
        assert_problem(await client.post("/v1/plans", json=plan_body()), 403)
    finally:
        await client.aclose()


async def test_webhook_endpoints_must_be_public_https(deu: httpx.AsyncClient) -> None:
    for url in [
        "ftp://example.org/x",
        "http://example.org/hook",
        "https://user:pw@example.org/",
        "https://10.0.0.8/x",
    ]:
        problem = assert_problem(await deu.post("/v1/subscriptions", json={"url": url}), 422)
        assert problem["field"] == "url"


async def test_unknown_paths_are_404_problems(deu: httpx.AsyncClient) -> None:
    assert_problem(await deu.get("/v1/nothing-here"), 404)
    assert_problem(await deu.get("/v1/plans/does-not-exist"), 404)


def access_lines(log: Path, request_id: str) -> list[dict[str, Any]]:
    """The access-log lines of `request_id` in a process's log file (JSON lines, among other output)."""
    found = []
    for text in log.read_text(errors="replace").splitlines():
        if request_id not in text:
            continue
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if line.get("logger") == "icep.access" and line.get("request_id") == request_id:
            found.append(line)
    return found


async def test_a_request_id_is_in_the_access_logs_of_the_gateway_and_the_service(
    platform: Any, deu: httpx.AsyncClient, plan_body: Callable[..., dict[str, Any]]
) -> None:
    created = await deu.post("/v1/plans", json=plan_body())
    assert created.status_code == 201, created.text
    plan_id = created.json()["id"]
    request_id = f"partner-{uuid.uuid4().hex}"
    read = await deu.get(f"/v1/plans/{plan_id}", headers={"X-Request-Id": request_id})
    assert read.status_code == 200 and read.headers["x-request-id"] == request_id
    # A 404 through the gateway carries the id too, and it is logged.
    missing = await deu.get("/v1/plans/does-not-exist", headers={"X-Request-Id": f"{request_id}-404"})
    assert missing.status_code == 404 and missing.headers["x-request-id"] == f"{request_id}-404"

    logs = {name: sp.log_path for name, sp in platform.launcher.processes.items()}
    (gateway,) = await wait_for(lambda: access_lines(logs["gateway"], request_id), what="the gateway's line")
    (plans,) = await wait_for(lambda: access_lines(logs["plans"], request_id), what="the service's line")
    for line in (gateway, plans):
        assert (line["method"], line["status"]) == ("GET", 200)
        assert (line["client_id"], line["nation"]) == ("deu-planner", "DEU")
        assert line["time"].endswith(("+00:00", "Z")), line["time"]
        assert isinstance(line["duration_ms"], int | float)
        assert line["client_address"] == "127.0.0.1"
    assert plans["route"] == "/v1/plans/{plan_id}"  # the template, not the id
    # The gateway routes by prefix: it names the upstream's template where it knows it, else the path.
    assert gateway["route"] == "/v1/plans/{plan_id}" or gateway["path"] == f"/v1/plans/{plan_id}"
    assert (gateway["service"], plans["service"]) == ("gateway", "plans")
    assert gateway["trace_id"] == plans["trace_id"]  # one trace from the gateway to the service
    assert gateway["duration_ms"] >= plans["duration_ms"]  # the service's time is part of the gateway's
    # Nothing else was logged for the request at either hop (one line per request per process).
    assert len(access_lines(logs["gateway"], request_id)) == len(access_lines(logs["plans"], request_id)) == 1
    (not_found,) = await wait_for(
        lambda: access_lines(logs["plans"], f"{request_id}-404"), what="the plans service's 404 line"
    )
    assert not_found["status"] == 404


@pytest.mark.parametrize(
    ("client_id", "path"),
    [
        ("deu-planner", "/v1/plans"),
        ("deu-procurement", "/v1/initiatives"),
        ("deu-standards", "/v1/standards"),
        ("deu-subscriber", "/v1/subscriptions"),
    ],
)
async def test_every_service_refuses_a_body_that_repeats_a_key(
    platform: Any, client_id: str, path: str
) -> None:
    """`{"title": "a", "title": "b"}` is one value to one parser and the other to the next: refused."""
    client = await platform.as_client(client_id)
    try:
        body = b'{"title": "harmless", "releasability": {"scope": "allies", "scope": "national"}}'
        problem = assert_problem(
            await client.post(path, content=body, headers={"content-type": "application/json"}), 422
        )
        assert problem["errors"] == [
            {
                "location": "body.releasability.scope",
                "message": "the key 'scope' appears more than once in this object; send it once",
                "type": "duplicate_key",
            }
        ]
    finally:
        await client.aclose()


async def test_operator_routes_go_to_their_service_and_refuse_everyone_else(
    platform: Any, deu: httpx.AsyncClient
) -> None:
    """`/v1/operations/<service>/outbox` through the gateway: the service's outbox status for operators,
    problem JSON for the rest (no token 401, not an operator 403, unknown row 404)."""
    operator = await platform.as_client("deu-operator")
    try:
        for service in ("plans", "procurement", "standards", "notifications"):
            r = await operator.get(f"/v1/operations/{service}/outbox")
            assert r.status_code == 200, r.text
            status = r.json()
            assert status["service"] == service and status["parked"] == 0
            assert status["leader"]["this_replica_active"] is True
        assert_problem(await platform.http.get(f"{platform.gateway}/v1/operations/plans/outbox"), 401)
        assert_problem(await deu.get("/v1/operations/plans/outbox"), 403)
        missing = await operator.post(
            "/v1/operations/plans/outbox/0190e4d2-0000-7000-8000-000000000000/retry"
        )
        assert_problem(missing, 404)
        assert_problem(await operator.post("/v1/operations/plans/outbox/x/park", json={}), 422)
    finally:
        await operator.aclose()
