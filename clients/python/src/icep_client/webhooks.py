"""Receiving webhooks: verify the Standard Webhooks signature (with the `standardwebhooks` package), drop
what was received already (by `webhook-id`, in bounded memory), and hand each event once to a callback.

`WebhookReceiver` does all three and is an ASGI application: serve it with any ASGI server, or mount it
in a FastAPI/Starlette app. `WebhookReceiver.receive(headers, body)` is the same without ASGI, for any
other framework."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

from icep_client.errors import IcepError
from icep_client.models import Event

__all__ = ["InvalidWebhook", "WebhookReceiver", "verify_webhook"]

log = logging.getLogger("icep_client.webhooks")

Callback = Callable[[Event], Awaitable[None] | None]
ASGIReceive = Callable[[], Awaitable[dict[str, Any]]]
ASGISend = Callable[[dict[str, Any]], Awaitable[None]]


class InvalidWebhook(IcepError):
    """Not signed with the subscription's secret, too old or too new (replayed), or not an event."""


def verify_webhook(secret: str | bytes, headers: Mapping[str, str], body: bytes | str) -> Event:
    """The event of a webhook whose signature is valid, else `InvalidWebhook`.

    `headers` must hold `webhook-id`, `webhook-timestamp` and `webhook-signature` (any case); `body` is
    the raw body as received (not parsed and serialised again). A timestamp more than five minutes off
    is refused, so a recorded webhook cannot be replayed later."""
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        payload = Webhook(secret).verify(body, lowered)
    except WebhookVerificationError as exc:
        raise InvalidWebhook(str(exc)) from exc
    except ValueError as exc:  # e.g. a secret or body that is not what Standard Webhooks expects
        raise InvalidWebhook(str(exc)) from exc
    event = Event.model_validate(payload)
    if lowered.get("webhook-id") != event.id:
        raise InvalidWebhook("the webhook-id is not the id of the event it carries")
    return event


class WebhookReceiver:
    """Verifies each webhook, drops duplicates and calls `on_event` once per event.

    - Answers 204 to an event handed over (or already handed over: a duplicate), 401 to a webhook that
      fails verification, 405 to anything but POST, and 500 when `on_event` raised, so the platform
      delivers it again later (the event is not remembered as received then).
    - Remembers the last `remember` ids (oldest forgotten first): redeliveries come within hours, so a
      bound in the thousands keeps memory flat without letting duplicates through in practice.
    - Two deliveries of one event at the same time call `on_event` once: the second waits for the first.
    `secrets`: the subscription's secret, or several (during a rotation, or for several subscriptions).
    """

    def __init__(self, secrets: str | list[str], on_event: Callback, *, remember: int = 10_000) -> None:
        self.secrets = [secrets] if isinstance(secrets, str) else list(secrets)
        self.on_event = on_event
        self.remember = remember
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._running: dict[str, asyncio.Future[None]] = {}
        #: Counters, for tests and metrics.
        self.handed_over = 0
        self.duplicates = 0
        self.rejected = 0

    def seen(self, webhook_id: str) -> bool:
        return webhook_id in self._seen

    def _verify(self, headers: Mapping[str, str], body: bytes) -> Event:
        failure: InvalidWebhook | None = None
        for secret in self.secrets:
            try:
                return verify_webhook(secret, headers, body)
            except InvalidWebhook as exc:
                failure = exc
        raise failure or InvalidWebhook("no secret to verify with")

    async def receive(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Verify and hand over one webhook: True when `on_event` got it now, False for a duplicate.
        Raises `InvalidWebhook`, or what `on_event` raised."""
        event = self._verify(headers, body)
        while (running := self._running.get(event.id)) is not None:
            await asyncio.shield(running)  # the same event arriving twice at once: wait for the first
        if event.id in self._seen:
            self._seen.move_to_end(event.id)
            self.duplicates += 1
            return False
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._running[event.id] = done
        try:
            outcome = self.on_event(event)
            if inspect.isawaitable(outcome):
                await outcome
            self._seen[event.id] = None
            while len(self._seen) > self.remember:
                self._seen.popitem(last=False)
            self.handed_over += 1
            return True
        finally:
            del self._running[event.id]
            done.set_result(None)

    async def __call__(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":
            await _answer(send, 405, {"detail": "webhooks are POSTed"}, [(b"allow", b"POST")])
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            await self.receive(headers, bytes(body))
        except InvalidWebhook as exc:
            self.rejected += 1
            await _answer(send, 401, {"detail": f"webhook refused: {exc}"})
            return
        except Exception:
            log.exception("the webhook callback failed; the platform will deliver the event again")
            await _answer(send, 500, {"detail": "the receiver failed; deliver again later"})
            return
        await _answer(send, 204, None)


async def _answer(
    send: ASGISend,
    status: int,
    content: dict[str, Any] | None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    payload = b"" if content is None else json.dumps(content).encode()
    sent = [*(headers or []), *([(b"content-type", b"application/json")] if payload else [])]
    await send({"type": "http.response.start", "status": status, "headers": sent})
    await send({"type": "http.response.body", "body": payload})
