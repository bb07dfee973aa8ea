"""A JSON body that repeats a key in any object is refused with 422 naming the key and where it is.

The same refusal through every service's real app, behind the gateway, is in tests/e2e/test_api_errors.py.
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import BaseModel

from icep.platform.jsonbody import RejectDuplicateKeys, duplicate_keys
from icep.platform.problems import install_problem_handlers


def test_duplicates_are_found_at_any_depth_with_their_path() -> None:
    assert duplicate_keys(b'{"a": 1, "a": 2}') == [((), "a")]
    assert duplicate_keys(b'{"lots": [{"id": "L1"}, {"id": "L2", "value": 1, "value": true}]}') == [
        (("lots", 1), "value")
    ]
    assert duplicate_keys(b'{"x": {"y": {"z": 1, "z": 1}}, "w": 2, "w": 3}') == [
        ((), "w"),
        (("x", "y"), "z"),
    ]
    assert duplicate_keys(b'[{"k": 1, "k": 2}]') == [((0,), "k")]


def test_bodies_without_duplicates_or_not_json_pass() -> None:
    assert duplicate_keys(b'{"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}') == []
    assert duplicate_keys(b"{not json") == []
    assert duplicate_keys(b"\xff\xfe") == []
    assert duplicate_keys(b"[]") == []


class Thing(BaseModel):
    name: str
    extra: dict[str, Any] = {}


def app() -> FastAPI:
    a = FastAPI()
    install_problem_handlers(a)
    a.add_middleware(RejectDuplicateKeys)

    @a.post("/things", status_code=201)
    async def create(thing: Thing) -> Thing:
        return thing

    return a


async def test_the_middleware_refuses_with_a_problem_and_passes_the_rest() -> None:
    transport = httpx.ASGITransport(app=app())
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        json_type = {"content-type": "application/json"}
        refused = await client.post(
            "/things", content=b'{"name": "a", "extra": {"k": 1, "k": 2}}', headers=json_type
        )
        assert refused.status_code == 422
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["errors"] == [
            {
                "location": "body.extra.k",
                "message": "the key 'k' appears more than once in this object; send it once",
                "type": "duplicate_key",
            }
        ]
        # `application/*+json` and a body without a content type are JSON to FastAPI, so checked too.
        for headers in ({"content-type": "application/merge-patch+json"}, {}):
            r = await client.post("/things", content=b'{"name": "a", "name": "b"}', headers=headers)
            assert r.status_code == 422 and r.json()["errors"][0]["location"] == "body.name"
        ok = await client.post("/things", content=b'{"name": "a", "extra": {"k": 1}}', headers=json_type)
        assert ok.status_code == 201 and ok.json() == {"name": "a", "extra": {"k": 1}}
        broken = await client.post("/things", content=b'{"name": ', headers=json_type)
        assert broken.status_code == 422 and broken.json()["errors"][0]["type"] == "json_invalid"
