"""A JSON request body with a duplicate key in any object is refused (422), never silently half-read.

`json.loads` keeps the last of two equal keys, so `{"amount": 1, "amount": 1000000}` would reach a route
as one value while a proxy, a log or an audit record in front of it may have read the other. RFC 8259
leaves duplicates undefined; the platform refuses them, with the key and its location in the body named
like any other validation error (`body.lines.0.amount`).

One ASGI middleware that `service_app` installs for every service. It parses JSON bodies once with an
`object_pairs_hook` that notes a duplicate; only when there is one does it walk the parsed value to name
the key's location. Bodies that are not JSON (or not valid JSON) pass through untouched, so the route
answers them as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from icep.platform.problems import problem

_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _Duplicated(dict[str, Any]):
    """An object that had `key` more than once."""

    key: str


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            marked = _Duplicated(obj)
            marked.key = key
            return marked
        seen.add(key)
    raise AssertionError("unreachable: fewer keys than pairs means a repeated key")


def _find(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, dict):
        if isinstance(value, _Duplicated):
            yield path, value.key
        for key, item in value.items():
            yield from _find(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _find(item, (*path, index))


def duplicate_keys(body: bytes) -> list[tuple[tuple[str | int, ...], str]]:
    """Each object of a JSON document that repeats a key: (its path, the key), in document order. Empty
    for a document without duplicates, and for one that is not JSON at all (its parser says so)."""
    found = False

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal found
        obj = _pairs(pairs)
        found = found or isinstance(obj, _Duplicated)
        return obj

    try:
        value = json.loads(body, object_pairs_hook=hook)
    except ValueError:  # not JSON (JSONDecodeError) or not text (UnicodeDecodeError): the route answers
        return []
    return list(_find(value, ())) if found else []


def _is_json(scope: Scope) -> bool:
    content_types = [v for k, v in scope["headers"] if k.lower() == b"content-type"]
    if not content_types:
        return True  # FastAPI reads a body without a content type as JSON
    media: bytes = content_types[0].split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class RejectDuplicateKeys:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _METHODS or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away before it finished sending
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        duplicates = duplicate_keys(body) if body else []
        if duplicates:
            errors = [
                {
                    "location": ".".join(str(p) for p in ("body", *path, key)),
                    "message": f"the key {key!r} appears more than once in this object; send it once",
                    "type": "duplicate_key",
                }
                for path, key in duplicates
            ]
            await problem(
                422,
                "the request body repeats a key in a JSON object",
                slug="validation",
                instance=scope.get("path", ""),
                errors=errors,
            )(scope, receive, send)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
