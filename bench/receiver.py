"""A fast webhook receiver for the benchmarks: an ASGI app (run by uvicorn in a process of its own,
HTTP/1.1 keep-alive) that answers every POST with 204 and records what it got:

- `GET /stats`: received, distinct webhook-ids, first/last arrival (epoch seconds), and `out_of_order`:
  webhooks of an aggregate (the CloudEvent's subject) whose `data.version` is lower than one received
  before for the same aggregate (the bench's deliveries number each aggregate's events in order);
- `GET /events?since=N`: the webhooks from the N-th on, as [arrival, webhook-id, type, subject].

The test suite's `WebhookReceiver` (a thread per connection, HTTP/1.0) is the bottleneck long before the
dispatcher is; this one is not, so the figures are the platform's.

    uv run python -m uvicorn bench.receiver:app --port 9000
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

_ids: set[str] = set()
_stats: dict[str, float] = {"received": 0, "first": 0.0, "last": 0.0, "out_of_order": 0}
_events: list[tuple[float, str, str, str]] = []
_last_version: dict[str, int] = {}


def _record(now: float, webhook_id: str, body: bytes) -> None:
    _ids.add(webhook_id)
    _stats["received"] += 1
    _stats["first"] = _stats["first"] or now
    _stats["last"] = now
    try:
        event = json.loads(body)
    except ValueError:
        event = {}
    if not isinstance(event, dict):
        event = {}
    subject, data = str(event.get("subject", "")), event.get("data")
    _events.append((now, webhook_id, str(event.get("type", "")), subject))
    version = data.get("version") if isinstance(data, dict) else None
    if isinstance(version, int):
        if version < _last_version.get(subject, -1):
            _stats["out_of_order"] += 1
        else:
            _last_version[subject] = version


async def app(
    scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
) -> None:
    if scope["type"] != "http":
        return
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = bool(message.get("more_body"))
    if scope["method"] == "POST":
        headers = dict(scope["headers"])
        _record(time.time(), headers.get(b"webhook-id", b"").decode(), b"".join(chunks))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    answer: object
    if scope["path"] == "/events":
        since = int(parse_qs(scope["query_string"].decode()).get("since", ["0"])[0])
        answer = _events[since:]
    else:
        answer = {**_stats, "distinct": len(_ids)}
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": json.dumps(answer).encode()})
