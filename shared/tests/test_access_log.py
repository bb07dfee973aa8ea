"""The access log and request ids of every service app (`icep.platform.logs`), read from the very JSON lines
the process writes: one line per request with its fields, the caller's sane `X-Request-Id` kept and an
unusable one replaced, the id on every answer and in every line written while handling it, UTC times."""

from __future__ import annotations

import io
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, FastAPI

from icep.platform.app import ServiceSpec, service_app
from icep.platform.auth import PrincipalDep, TokenVerifier
from icep.platform.settings import ServiceSettings

ISSUER, AUDIENCE = "https://issuer.test", "icep"
UTC_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}(\+00:00|Z)$")

router = APIRouter()
handler_log = logging.getLogger("icep.test.things")


@router.get("/v1/things/{thing_id}")
async def thing(thing_id: str, principal: PrincipalDep) -> dict[str, str]:
    handler_log.info("looking at thing %s", thing_id)
    return {"id": thing_id, "nation": principal.nation}


@router.get("/v1/broken")
async def broken() -> None:
    raise RuntimeError("a bug")


class Keys:
    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        public = jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        self.jwks = {"keys": [{**public, "kid": "k1", "alg": "ES256", "use": "sig"}]}

    def token(self, client_id: str, nation: str) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": client_id,
            "iat": now,
            "exp": now + 300,
            "nation": nation,
            "roles": ["planner"],
            "scope": "read write",
        }
        return jwt.encode(claims, self.private, algorithm="ES256", headers={"kid": "k1"})


@dataclass
class Served:
    http: httpx.AsyncClient
    output: io.StringIO
    keys: Keys

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.output.getvalue().splitlines() if line.strip()]

    def access(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("logger") == "icep.access"]

    def mark(self) -> int:
        return len(self.output.getvalue())

    def access_since(self, mark: int) -> list[dict[str, Any]]:
        text = self.output.getvalue()[mark:]
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        return [line for line in lines if line.get("logger") == "icep.access"]


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    app: FastAPI = service_app(
        ServiceSpec(
            settings=ServiceSettings(service_name="demo", port=18002),
            routers=[router],
            metadata=None,
            uses_kafka=False,
        )
    )
    keys = Keys()

    async def source() -> dict[str, Any]:
        return keys.jwks

    async with app.router.lifespan_context(app):
        await app.state.token_verifier.aclose()
        verifier = TokenVerifier(ISSUER, AUDIENCE, "https://issuer.test/jwks", jwks_source=source)
        app.state.token_verifier = verifier
        # The process's own log handler (JSON, made by the lifespan), writing here instead of to stderr.
        (handler,) = logging.getLogger().handlers
        assert isinstance(handler, logging.StreamHandler)
        output = io.StringIO()
        previous = handler.setStream(output)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                yield Served(http, output, keys)
        finally:
            handler.setStream(previous)


async def test_one_access_line_per_request_with_its_fields(served: Served) -> None:
    token = served.keys.token("deu-planner", "DEU")
    response = await served.http.get(
        "/v1/things/42", headers={"Authorization": f"Bearer {token}", "X-Request-Id": "partner-req-7"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "partner-req-7"

    (line,) = served.access()
    assert line["method"] == "GET"
    assert line["route"] == "/v1/things/{thing_id}"  # the template, not /v1/things/42
    assert "path" not in line
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float | int) and line["duration_ms"] >= 0
    assert line["request_id"] == "partner-req-7"
    assert (line["client_id"], line["nation"]) == ("deu-planner", "DEU")
    assert line["client_address"] == "127.0.0.1"
    assert line["level"] == "INFO" and line["service"] == "demo"
    assert re.fullmatch(r"[0-9a-f]{32}", line["trace_id"]), line
    assert UTC_TIME.match(line["time"]), line["time"]
    # UTC whatever the machine's zone: the time is now.
    logged = datetime.fromisoformat(line["time"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - logged).total_seconds()) < 60

    # The handler's own line carries the request id and the same trace.
    (inner,) = [x for x in served.lines() if x.get("logger") == "icep.test.things"]
    assert inner["request_id"] == "partner-req-7"
    assert inner["trace_id"] == line["trace_id"]
    assert UTC_TIME.match(inner["time"]), inner["time"]


@pytest.mark.parametrize(
    "sent",
    [
        ["x" * 129],  # too long
        ["has space"],
        ['quote"d'],
        ["ünïcode"],
        ["two", "ids"],
        [""],
    ],
    ids=["too-long", "space", "quote", "non-ascii", "two-headers", "empty"],
)
async def test_an_unusable_request_id_is_replaced(served: Served, sent: list[str]) -> None:
    headers = [("x-request-id", value.encode()) for value in sent]
    response = await served.http.get("/v1/things/1", headers=headers)
    assert response.status_code == 401  # no token: a problem answer, still with an id
    made = response.headers["x-request-id"]
    assert made not in sent
    assert uuid.UUID(made).version == 7
    (line,) = served.access()
    assert line["request_id"] == made
    assert line["status"] == 401
    assert (line["client_id"], line["nation"]) == (None, None)


async def test_a_request_id_is_made_when_none_is_sent_and_each_request_gets_its_own(served: Served) -> None:
    first = await served.http.get("/v1/things/1")
    second = await served.http.get("/v1/things/1")
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert ids[0] != ids[1] and all(uuid.UUID(i).version == 7 for i in ids)
    assert [line["request_id"] for line in served.access()] == ids


async def test_a_404_and_a_500_carry_the_id_and_are_logged(served: Served) -> None:
    missing = await served.http.get("/v1/nothing/here", headers={"X-Request-Id": "r-404"})
    assert missing.status_code == 404
    assert missing.headers["x-request-id"] == "r-404"
    assert missing.headers["content-type"].startswith("application/problem+json")

    failed = await served.http.get("/v1/broken", headers={"X-Request-Id": "r-500"})
    assert failed.status_code == 500
    assert failed.headers["x-request-id"] == "r-500"

    lines = {line["request_id"]: line for line in served.access()}
    assert (lines["r-404"]["status"], lines["r-404"]["route"], lines["r-404"]["path"]) == (
        404,
        None,
        "/v1/nothing/here",
    )
    assert (lines["r-500"]["status"], lines["r-500"]["route"]) == (500, "/v1/broken")
    assert lines["r-500"]["level"] == "INFO"
    # The error's own line (the traceback) carries the id too.
    errors = [x for x in served.lines() if x.get("level") == "ERROR" and x.get("request_id") == "r-500"]
    assert errors, served.lines()


async def test_probes_are_not_in_the_access_log(served: Served) -> None:
    for path in ("/healthz", "/readyz"):
        probe = await served.http.get(path)
        assert probe.status_code == 200
        assert "x-request-id" in probe.headers
    assert served.access() == []
