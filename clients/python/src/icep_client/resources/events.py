"""The events a client may see: the catch-up feed (`/v1/events`, polled) and the live stream
(`/v1/events/stream`, Server-Sent Events read with httpx-sse), both resumable from a position."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Literal

import httpx
from httpx_sse import aconnect_sse

from icep_client.errors import ProblemError
from icep_client.models import FeedEvent, FeedPage
from icep_client.retrying import RETRY_STATUSES, retry_after
from icep_client.wire import query

if TYPE_CHECKING:
    from icep_client.client import IcepClient

__all__ = ["Events"]

#: Where to start: a position (an event's `position`, a page's `last_position`), `"latest"` (only what
#: happens from now on) or None (the oldest event the platform keeps).
After = int | Literal["latest"] | None


class Events:
    """`/v1/events`: needs the `subscriber` role. Filters are those of a subscription: `types` (patterns
    such as `icep.plans.*`), `nations`, `capability_areas`, `products`."""

    def __init__(self, client: IcepClient) -> None:
        self._client = client

    async def page(
        self,
        *,
        after: After = None,
        types: Sequence[str] | None = None,
        nations: Sequence[str] | None = None,
        capability_areas: Sequence[str] | None = None,
        products: Sequence[str] | None = None,
        limit: int = 100,
    ) -> FeedPage:
        """One page of the feed after `after`."""
        params = {
            "after": after,
            "types": types,
            "nations": nations,
            "capability_areas": capability_areas,
            "products": products,
            "limit": limit,
        }
        return await self._client.fetch(FeedPage, "GET", "/v1/events", params=params)

    async def latest(self) -> int:
        """The head of the feed now: follow from it to see only what happens next."""
        return (await self.page(after="latest")).last_position

    async def follow(
        self,
        *,
        after: After = None,
        types: Sequence[str] | None = None,
        nations: Sequence[str] | None = None,
        capability_areas: Sequence[str] | None = None,
        products: Sequence[str] | None = None,
        limit: int = 100,
        poll_interval: float = 2.0,
    ) -> AsyncIterator[FeedEvent]:
        """Every event after `after`, in order, then each new one as it is logged (polling every
        `poll_interval` seconds when the feed has nothing new). Runs until the caller stops iterating;
        keep the last event's `position` to resume from it later."""
        filters = {"types": types, "nations": nations, "capability_areas": capability_areas}
        page = await self.page(after=after, products=products, limit=limit, **filters)
        while True:
            for event in page.items:
                yield event
            if not page.more:
                await asyncio.sleep(poll_interval)
            page = await self.page(after=page.last_position, products=products, limit=limit, **filters)

    async def stream(
        self,
        *,
        last_event_id: int | None = None,
        types: Sequence[str] | None = None,
        nations: Sequence[str] | None = None,
        capability_areas: Sequence[str] | None = None,
        products: Sequence[str] | None = None,
        read_timeout: float = 60.0,
    ) -> AsyncIterator[FeedEvent]:
        """The live stream: each event as it happens (after `last_event_id` when given, else from now),
        without loss or repeats. When the connection drops or the server ends the stream, it connects
        again with `Last-Event-ID` set to the last event received, waiting as the server's `retry`
        field (or `Retry-After`) asks; an answer the caller must fix (401, 403, 410 past retention, 422)
        is raised as `ProblemError`. Runs until the caller stops iterating."""
        params = {
            "types": types,
            "nations": nations,
            "capability_areas": capability_areas,
            "products": products,
        }
        # "From now" is fixed once, as a position: a reconnection after a drop before the first event
        # then resumes from there too, and loses nothing that happened meanwhile.
        last = last_event_id if last_event_id is not None else await self.latest()
        retry_ms = 2000
        failures = 0  # connections in a row that brought no event
        timeout = httpx.Timeout(30.0, read=read_timeout)
        while True:
            headers = {"Last-Event-ID": str(last)}
            wait: float | None = None
            try:
                async with aconnect_sse(
                    self._client.http,
                    "GET",
                    "/v1/events/stream",
                    params=query(params) or None,
                    headers=headers,
                    timeout=timeout,
                ) as source:
                    response = source.response
                    if response.status_code != 200:
                        await response.aread()
                        if response.status_code not in RETRY_STATUSES:
                            raise ProblemError.from_response(response)
                        wait = retry_after(response)
                    else:
                        async for message in source.aiter_sse():
                            if message.retry is not None:
                                retry_ms = message.retry
                            if not message.data:
                                continue  # the opening message, or a heartbeat
                            failures = 0
                            fields = {**json.loads(message.data), "position": int(message.id)}
                            event = FeedEvent.model_validate(fields)
                            last = event.position
                            yield event
            except httpx.TransportError:
                pass  # dropped or timed out: connect again
            failures += 1
            await self._client.retry.sleep(wait if wait is not None else _backoff(retry_ms, failures))


def _backoff(retry_ms: int, failures: int) -> float:
    """The server's `retry` after one failure, doubling after more, up to a minute."""
    return float(min(60.0, retry_ms / 1000 * 2 ** max(0, failures - 1)))
