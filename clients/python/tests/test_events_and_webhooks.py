"""The feed, the stream and webhooks against real servers on 127.0.0.1: following from `latest`, the
stream reconnecting with `Last-Event-ID` when the server ends it, and the receiver verifying, dropping
duplicates in bounded memory and handing each event over once."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from icep_client import (
    Event,
    IcepClient,
    InvalidWebhook,
    ProblemError,
    RetryPolicy,
    WebhookReceiver,
    verify_webhook,
)
from standardwebhooks import Webhook

from icep.platform.kafka_local import free_port
from icep.platform.testing import wait_for

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def event(n: int, type: str = "icep.plans.plan.created.v1") -> dict[str, Any]:
    return {
        "id": f"0193-{n}",
        "type": type,
        "source": "/icep/plans",
        "subject": f"plan-{n}",
        "time": "2026-03-01T09:30:00Z",
        "nation": "DEU",
        "releasableto": "ALLIES",
        "data": {"plan_id": f"plan-{n}"},
    }


def sse(position: int, body: dict[str, Any]) -> bytes:
    return f"id: {position}\nevent: {body['type']}\ndata: {json.dumps(body)}\n\n".encode()


def client(server: Any, waits: Any) -> IcepClient:
    return IcepClient(server.url, "deu-subscriber", "s", retry=RetryPolicy(sleep=waits))


# --- the feed and the stream --------------------------------------------------------------------------


async def test_following_from_latest_polls_the_feed_from_the_head_on(server: Any, waits: Any) -> None:
    def feed(seen: Any) -> Any:
        after = seen.query["after"][0]
        if after == "latest":
            return server.Reply(
                200, {"items": [], "next": "/v1/events?after=10", "last_position": 10, "more": False}
            )
        if after == "10":
            items = [{**event(11), "position": 11}, {**event(12), "position": 12}]
            return server.Reply(
                200, {"items": items, "next": "/v1/events?after=14", "last_position": 14, "more": True}
            )
        items = [{**event(15), "position": 15}] if after == "14" else []
        return server.Reply(200, {"items": items, "next": "", "last_position": 15, "more": False})

    server.handler = feed
    async with client(server, waits) as icep:
        got = []
        async for e in icep.events.follow(
            after="latest", types=["icep.plans.*", "icep.standards.*"], poll_interval=0
        ):
            got.append(e)
            if len(got) == 3:
                break
    assert [(e.position, e.subject) for e in got] == [(11, "plan-11"), (12, "plan-12"), (15, "plan-15")]
    assert [r.query["after"] for r in server.api()] == [["latest"], ["10"], ["14"]]
    assert {r.query["types"][0] for r in server.api()} == {"icep.plans.*,icep.standards.*"}


async def test_the_stream_reconnects_with_last_event_id_when_it_ends(server: Any, waits: Any) -> None:
    def stream(seen: Any) -> Any:
        if seen.path == "/v1/events":  # where "now" is
            return server.Reply(
                200, {"items": [], "next": "/v1/events?after=4", "last_position": 4, "more": False}
            )
        resumed = seen.headers.get("last-event-id")
        if resumed == "4":
            chunks = [
                b"retry: 1500\n: stream of events after 4\n\n",
                sse(5, event(5)),
                b": heartbeat\n\n",
                sse(6, event(6)),
            ]
        elif resumed == "6":
            chunks = [b"retry: 1500\n\n", sse(7, event(7))]
        else:
            return server.Reply(
                410,
                {
                    "type": "x/cursor-expired",
                    "title": "Gone",
                    "status": 410,
                    "detail": "gone",
                    "purged_through": 9,
                },
            )
        return server.Reply(200, None, {"Content-Type": "text/event-stream"}, chunks=chunks)

    server.handler = stream
    async with client(server, waits) as icep:
        got = []
        async for e in icep.events.stream(types=["icep.plans.*"]):
            got.append(e)
            if len(got) == 3:
                break
        assert [e.position for e in got] == [5, 6, 7] and got[2].data == {"plan_id": "plan-7"}
        streams = [r for r in server.api() if r.path == "/v1/events/stream"]
        assert [r.path for r in server.api()] == ["/v1/events", *["/v1/events/stream"] * 2]
        assert server.api()[0].query["after"] == ["latest"]
        # From now, fixed as a position at once; then resumed after the last event received.
        assert [r.headers.get("last-event-id") for r in streams] == ["4", "6"]
        assert streams[0].query["types"] == ["icep.plans.*"]
        assert streams[0].headers["accept"] == "text/event-stream"
        assert waits.asked == [1.5]  # the server's `retry`, once
        # Resuming from a position past retention: raised (410), not retried.
        with pytest.raises(ProblemError) as gone:
            async for _ in icep.events.stream(last_event_id=1):
                pass
        assert gone.value.status == 410 and gone.value["purged_through"] == 9


# --- webhooks -----------------------------------------------------------------------------------------


def signed(
    body: dict[str, Any], *, secret: str = SECRET, at: datetime | None = None, webhook_id: str | None = None
) -> tuple[dict[str, str], bytes]:
    raw = json.dumps(body).encode()
    when = at or datetime.now(UTC)
    msg_id = webhook_id or body["id"]
    signature = Webhook(secret).sign(msg_id, when, raw.decode())
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
    }
    return headers, raw


def test_verify_webhook_accepts_only_what_the_secret_signed_lately() -> None:
    headers, raw = signed(event(1))
    verified = verify_webhook(SECRET, {k.title(): v for k, v in headers.items()}, raw)
    assert isinstance(verified, Event) and verified.id == "0193-1" and verified.data == {"plan_id": "plan-1"}
    with pytest.raises(InvalidWebhook):
        verify_webhook(SECRET, headers, raw.replace(b"DEU", b"FRA"))  # tampered
    with pytest.raises(InvalidWebhook):
        verify_webhook("whsec_" + "A" * 32, headers, raw)  # another secret
    old_headers, old_raw = signed(event(1), at=datetime.now(UTC) - timedelta(minutes=10))
    with pytest.raises(InvalidWebhook):
        verify_webhook(SECRET, old_headers, old_raw)  # replayed later
    other_headers, other_raw = signed(event(1), webhook_id="0193-999")
    with pytest.raises(InvalidWebhook, match="webhook-id"):
        verify_webhook(SECRET, other_headers, other_raw)  # signed, but about another message


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        await wait_for(lambda: server.started, timeout=10, what="the webhook receiver")
        yield f"http://127.0.0.1:{port}/hooks"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


async def test_the_receiver_hands_each_event_over_once(waits: Any) -> None:
    handed: list[Event] = []
    failing = {"0193-3"}
    release = asyncio.Event()

    async def on_event(e: Event) -> None:
        if e.id in failing:
            failing.discard(e.id)
            raise RuntimeError("the partner's database is down")
        if e.id == "0193-4":
            await release.wait()  # slow: a second delivery of it arrives meanwhile
        handed.append(e)

    receiver = WebhookReceiver(["whsec_" + "B" * 32, SECRET], on_event, remember=3)
    async with serving(receiver) as url, httpx.AsyncClient(timeout=10) as http:

        async def deliver(body: dict[str, Any], **kw: Any) -> int:
            headers, raw = signed(body, **kw)
            return (await http.post(url, content=raw, headers=headers)).status_code

        assert await deliver(event(1)) == 204
        assert await deliver(event(1)) == 204  # a redelivery: answered, not handed over again
        assert [e.id for e in handed] == ["0193-1"] and receiver.duplicates == 1
        assert await deliver(event(2), secret="whsec_" + "C" * 32) == 401  # forged
        assert receiver.rejected == 1
        # The callback failed: 500, so the platform delivers again, and then it is handed over.
        assert await deliver(event(3)) == 500
        assert await deliver(event(3)) == 204
        assert [e.id for e in handed] == ["0193-1", "0193-3"]
        # Two deliveries of one event at once: handed over once.
        first = asyncio.create_task(deliver(event(4)))
        second = asyncio.create_task(deliver(event(4)))
        await wait_for(lambda: "0193-4" in receiver._running, timeout=5, what="the first delivery")
        release.set()
        assert await first == 204 and await second == 204
        assert [e.id for e in handed].count("0193-4") == 1
        # Bounded memory: three ids remembered, the oldest forgotten first.
        assert await deliver(event(5)) == 204
        assert [receiver.seen(f"0193-{n}") for n in (1, 3, 4, 5)] == [False, True, True, True]
        assert (await http.get(url)).status_code == 405
    assert receiver.handed_over == 4
