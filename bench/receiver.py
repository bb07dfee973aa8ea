"""A fast webhook receiver for the delivery benchmark: an ASGI app (run by uvicorn in a process of its own,
HTTP/1.1 keep-alive) that answers every POST with 204 and counts what it got; `GET /stats` reports.

The test suite's `WebhookReceiver` (a thread per connection, HTTP/1.0) is the bottleneck long before the
dispatcher is; this one is not, so the figure is the dispatcher's.

    uv run python -m uvicorn bench.receiver:app --port 9000
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

_ids: set[str] = set()
_stats: dict[str, float] = {"received": 0, "first": 0.0, "last": 0.0}


async def app(
    scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:  # read (and drop) the body
        message = await receive()
        more = bool(message.get("more_body"))
    if scope["method"] == "POST":
        now = time.time()
        headers = dict(scope["headers"])
        _ids.add(headers.get(b"webhook-id", b"").decode())
        _stats["received"] += 1
        _stats["first"] = _stats["first"] or now
        _stats["last"] = now
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    body = json.dumps({**_stats, "distinct": len(_ids)}).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body})
