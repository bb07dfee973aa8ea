"""Tokens, retries, errors, pagination and If-Match against a scripted HTTP server on 127.0.0.1: what
goes over the wire, attempt by attempt."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from icep_client import (
    IcepClient,
    NotFound,
    Plan,
    PreconditionFailed,
    ProblemError,
    RetryPolicy,
    TokenError,
    Unauthorized,
    Unprocessable,
)

PLAN: dict[str, Any] = {
    "id": "p1",
    "nation": "DEU",
    "title": "Munitions ramp-up",
    "period_start": "2025-01-01",
    "period_end": "2029-12-31",
    "capability_areas": ["munitions"],
    "releasability": {"scope": "allies", "nations": []},
    "capacity_releasability": None,
    "status": "draft",
    "version": 1,
    "created_by": "deu-planner",
    "created_at": "2026-03-01T09:30:00Z",
    "submitted_at": None,
    "returned_reasons": [],
    "superseded_by": None,
    "content": {"commitments": []},
}


def problem(status: int, slug: str, detail: str, **extensions: Any) -> dict[str, Any]:
    return {
        "type": f"https://icep.nato.int/problems/{slug}",
        "title": slug.replace("-", " ").capitalize(),
        "status": status,
        "detail": detail,
        **extensions,
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def client(server: Any, waits: Any = None, **kw: Any) -> IcepClient:
    policy = RetryPolicy(sleep=waits) if waits is not None else RetryPolicy()
    return IcepClient(server.url, "deu-planner", "s3cret", retry=policy, **kw)


# --- tokens -------------------------------------------------------------------------------------------


async def test_one_token_serves_every_request_until_shortly_before_it_expires(server: Any) -> None:
    server.handler = lambda seen: server.Reply(200, {"items": [], "next": None})
    clock = Clock()
    async with client(server, clock=clock, token_refresh_margin=30) as icep:
        for _ in range(3):
            assert [p async for p in icep.plans.list()] == []
        assert len(server.tokens()) == 1
        [token_request] = server.tokens()
        # Client credentials as the platform asks: a form, the client's id and secret as HTTP Basic.
        assert token_request.method == "POST"
        assert token_request.body == b"grant_type=client_credentials"
        assert token_request.headers["authorization"] == httpx.BasicAuth("deu-planner", "s3cret")._auth_header
        assert {r.headers["authorization"] for r in server.api()} == {"Bearer t1"}

        clock.now += 300 - 31  # 31 s left: still used
        await anext(aiter(icep.plans.list()), None)
        assert len(server.tokens()) == 1
        clock.now += 2  # 29 s left: fetched again before it can expire in flight
        await anext(aiter(icep.plans.list()), None)
        assert len(server.tokens()) == 2
        assert server.api()[-1].headers["authorization"] == "Bearer t2"
        assert icep.auth.fetched == 2


async def test_concurrent_requests_share_one_token_fetch(server: Any) -> None:
    server.handler = lambda seen: server.Reply(200, {"items": []})
    async with client(server) as icep:
        await asyncio.gather(*(icep.subscriptions.list() for _ in range(5)))
    assert len(server.tokens()) == 1 and len(server.api()) == 5


async def test_a_401_fetches_a_fresh_token_once_and_sends_the_request_again(server: Any) -> None:
    server.handler = lambda seen: server.Reply(200, PLAN, {"ETag": '"1"'})
    async with client(server) as icep:
        await icep.plans.get("p1")
        server.refused_tokens.add("t1")  # e.g. the platform's signing key was rotated
        plan = await icep.plans.get("p1")
        assert plan.id == "p1"
        assert [r.headers["authorization"] for r in server.api()] == ["Bearer t1", "Bearer t1", "Bearer t2"]
        # Refused again with the fresh token too: raised, not looped.
        server.refused_tokens.update({"t2", "t3"})
        with pytest.raises(Unauthorized) as refused:
            await icep.plans.get("p1")
        assert refused.value.status == 401
        assert len(server.tokens()) == 3 and len(server.api()) == 5
        assert server.api()[-1].headers["authorization"] == "Bearer t3"


async def test_refused_credentials_raise_a_token_error_and_call_nothing(server: Any) -> None:
    server.token_reply = server.Reply(
        401, {"error": "invalid_client", "error_description": "client authentication failed"}
    )
    async with client(server) as icep:
        with pytest.raises(TokenError) as refused:
            await icep.plans.get("p1")
    assert (refused.value.status, refused.value.error) == (401, "invalid_client")
    assert server.api() == [] and len(server.tokens()) == 1  # a 401 of the token endpoint is not retried


# --- retries ------------------------------------------------------------------------------------------


async def test_a_post_is_retried_with_the_same_idempotency_key(server: Any, waits: Any) -> None:
    answers = iter(
        [
            server.DROP,  # the request went out, no answer came: carried out or not, nobody knows
            server.Reply(503, problem(503, "unavailable", "database"), {"Retry-After": "3"}),
            server.Reply(409, problem(409, "idempotency-key-in-use", "still running"), {"Retry-After": "1"}),
            server.Reply(201, PLAN, {"ETag": '"1"'}),
        ]
    )
    server.handler = lambda seen: next(answers)
    async with client(server, waits) as icep:
        plan = await icep.plans.create(
            title="Munitions ramp-up", period_start="2025-01-01", period_end="2029-12-31"
        )
        assert plan.id == "p1" and plan.etag == '"1"'
        posts = server.api()
        assert [r.method for r in posts] == ["POST"] * 4
        keys = {r.headers["idempotency-key"] for r in posts}
        assert len(keys) == 1 and len(keys.pop()) >= 32
        assert {r.body for r in posts} == {posts[0].body}
        # Retry-After honoured when given.
        assert waits.asked[1:] == [3.0, 1.0]

        # The next logical call is a new request: a new key.
        server.handler = lambda seen: server.Reply(201, PLAN)
        await icep.plans.create(title="Again", period_start="2025-01-01", period_end="2029-12-31")
        assert server.api()[-1].headers["idempotency-key"] not in {
            r.headers["idempotency-key"] for r in posts
        }
        # A key of the caller's own is sent as given.
        await icep.plans.create(
            title="Mine", period_start="2025-01-01", period_end="2029-12-31", idempotency_key="my-key-1"
        )
        assert server.api()[-1].headers["idempotency-key"] == "my-key-1"


async def test_safe_requests_are_retried_on_gateway_errors_and_429_then_give_up(
    server: Any, waits: Any
) -> None:
    answers = iter(
        [
            server.Reply(502, problem(502, "bad-gateway", "upstream")),
            server.Reply(429, problem(429, "too-many-requests", "slow down"), {"Retry-After": "7"}),
            server.Reply(504, problem(504, "gateway-timeout", "upstream")),
            server.Reply(200, PLAN),
        ]
    )
    server.handler = lambda seen: next(answers)
    async with client(server, waits) as icep:
        assert (await icep.plans.get("p1")).title == "Munitions ramp-up"
        assert len(server.api()) == 4 and 7.0 in waits.asked
        # Four attempts (the default), then the last answer is raised with its problem.
        server.handler = lambda seen: server.Reply(503, problem(503, "unavailable", "still down"))
        with pytest.raises(ProblemError) as failed:
            await icep.plans.get("p1")
        assert failed.value.status == 503 and failed.value.detail == "still down"
        assert len(server.api()) == 8


@pytest.mark.parametrize(
    ("status", "slug", "kind"),
    [
        (400, "bad-request", ProblemError),
        (404, "not-found", NotFound),
        (409, "illegal-transition", ProblemError),
        (412, "precondition-failed", PreconditionFailed),
        (422, "validation", Unprocessable),
    ],
)
async def test_other_client_errors_are_raised_at_once_with_the_problem(
    server: Any, waits: Any, status: int, slug: str, kind: type[ProblemError]
) -> None:
    extensions = {"current_state": "accepted", "action": "submit"} if status == 409 else {}
    server.handler = lambda seen: server.Reply(
        status, {**problem(status, slug, "no", **extensions), "instance": seen.path}
    )
    async with client(server, waits) as icep:
        with pytest.raises(kind) as raised:
            await icep.plans.submit("p1", if_match='"1"')
    error = raised.value
    assert len(server.api()) == 1 and waits.asked == []
    assert (error.status, error.type, error.detail) == (
        status,
        f"https://icep.nato.int/problems/{slug}",
        "no",
    )
    assert error.instance == "/v1/plans/p1/submit"
    assert error.extensions == extensions and error.problem["status"] == status
    if status == 409:
        assert error["current_state"] == "accepted"


async def test_changes_without_an_idempotency_key_are_repeated_only_when_not_carried_out(
    server: Any, waits: Any
) -> None:
    server.handler = lambda seen: server.DROP
    async with client(server, waits) as icep:
        with pytest.raises(httpx.RemoteProtocolError):
            await icep.plans.edit("p1", if_match='"1"', title="New title")
        assert len(server.api()) == 1  # a PATCH that may have been carried out is not sent twice
        answers = iter([server.Reply(503, problem(503, "unavailable", "db")), server.Reply(200, PLAN)])
        server.handler = lambda seen: next(answers)
        await icep.plans.edit("p1", if_match='"1"', title="New title")
        assert [r.method for r in server.api()] == ["PATCH"] * 3
        assert "idempotency-key" not in server.api()[-1].headers


# --- pagination and If-Match --------------------------------------------------------------------------


async def test_lists_follow_the_cursor_across_pages(server: Any) -> None:
    plans = [{**PLAN, "id": f"p{i}"} for i in range(5)]

    def pages(seen: Any) -> Any:
        start = int(seen.query.get("cursor", ["0"])[0])
        size = int(seen.query["limit"][0])
        following = start + size
        link = f"/v1/plans?limit={size}&status=draft&cursor={following}" if following < len(plans) else None
        return server.Reply(200, {"items": plans[start:following], "next": link})

    server.handler = pages
    async with client(server) as icep:
        got = [p async for p in icep.plans.list(status="draft", page_size=2)]
    assert [p.id for p in got] == [p["id"] for p in plans]
    assert all(isinstance(p, Plan) for p in got)
    assert [r.query.get("cursor") for r in server.api()] == [None, ["2"], ["4"]]
    assert all(r.query["status"] == ["draft"] for r in server.api())


async def test_changes_send_the_etag_of_what_was_read(server: Any) -> None:
    def answer(seen: Any) -> Any:
        if seen.method == "GET":
            return server.Reply(200, {**PLAN, "version": 3}, {"ETag": '"3"'})
        if seen.headers.get("if-match") != '"3"':
            return server.Reply(412, problem(412, "precondition-failed", "version 3 is no longer current"))
        return server.Reply(200, {**PLAN, "version": 4, "status": "submitted"}, {"ETag": '"4"'})

    server.handler = answer
    async with client(server) as icep:
        plan = await icep.plans.get("p1")
        assert plan.etag == '"3"'
        submitted = await icep.plans.submit(plan)
        assert submitted.status == "submitted" and submitted.etag == '"4"'
        assert server.api()[-1].headers["if-match"] == '"3"'
        with pytest.raises(PreconditionFailed) as stale:
            await icep.plans.withdraw(submitted)  # '"4"': someone else's change came first
        assert "no longer current" in stale.value.detail
        with pytest.raises(ValueError, match="If-Match"):
            await icep.plans.submit("p1")  # an id alone says nothing of the version read
