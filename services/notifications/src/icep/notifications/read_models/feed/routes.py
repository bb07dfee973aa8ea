"""HTTP routes of the catch-up feed (`GET /v1/events`) and the live stream (`GET /v1/events/stream`)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import Field

from icep.notifications.read_models.feed import log as feed
from icep.notifications.read_models.feed.schemas import FeedEvent, FeedPage
from icep.notifications.settings import NotificationsSettings
from icep.notifications.subscriptions.filters import SubscriptionFilters
from icep.platform.app import DatabaseDep, database, runtime_of
from icep.platform.auth import PrincipalDep
from icep.platform.errors import Unprocessable

router = APIRouter(prefix="/v1/events", tags=["events"])

_CURSOR = re.compile(r"[0-9]{1,18}", re.ASCII)
#: A feed position, as the `after` parameter takes it.
Position = Annotated[int, Field(ge=0, le=2**63 - 1)]


async def feed_reader(principal: PrincipalDep) -> feed.FeedReader:
    return feed.FeedReader(client_id=principal.client_id, nation=principal.nation, roles=principal.roles)


ReaderDep = Annotated[feed.FeedReader, Depends(feed_reader)]


def _split(values: list[str] | None) -> list[str]:
    """`a,b` and repeated parameters alike."""
    return [part for value in values or () for part in value.split(",") if part.strip()]


def feed_filters(
    types: Annotated[
        list[str] | None,
        Query(description="Event type patterns, comma-separated (`icep.plans.*`); default every type"),
    ] = None,
    nations: Annotated[
        list[str] | None, Query(description="Owning nations, comma-separated (`DEU,FRA`); default any")
    ] = None,
    capability_areas: Annotated[
        list[str] | None,
        Query(description="Capability areas the event's data names, comma-separated; default any"),
    ] = None,
    products: Annotated[
        list[str] | None, Query(description="Products the event's data names, comma-separated; default any")
    ] = None,
) -> SubscriptionFilters:
    return feed.feed_filters(_split(types), _split(nations), _split(capability_areas), _split(products))


FiltersDep = Annotated[SubscriptionFilters, Depends(feed_filters)]


def _settings(request: Request) -> NotificationsSettings:
    settings = runtime_of(request).settings_as(NotificationsSettings)
    return settings


def _cursor(value: str | None, field: str) -> int | None:
    if value is None or not value.strip():
        return None
    if not _CURSOR.fullmatch(value.strip()):
        raise Unprocessable(f"{value!r} is not a feed cursor (an event's position)", field=field)
    return int(value.strip())


_GONE = {"description": "The cursor is older than the feed's retention (problem JSON)"}
_FORBIDDEN = {"description": "The caller lacks the subscriber role (problem JSON)"}


@router.get(
    "",
    operation_id="readEventFeed",
    summary="Catch up: every event the caller may see, in order, page by page",
    description=(
        "Pages through the events the caller's nation may see (and its filters accept) in the order the "
        "platform logged them, without gaps: follow `next` (or pass `after=last_position`). Events are "
        "kept `feed_retention_days`; a cursor older than that is 410 Gone.\n\n"
        "To start at now rather than at the oldest event kept, ask with `after=latest`: the answer is an "
        "empty page whose `last_position` is the current head of the feed and whose `next` continues "
        "after it, so a new subscriber follows only the events logged from then on without paging through "
        "the history. Any other `after` that is not a position is 422."
    ),
    responses={403: _FORBIDDEN, 410: _GONE},
)
async def read_feed(
    request: Request,
    db: DatabaseDep,
    reader: ReaderDep,
    filters: FiltersDep,
    after: Annotated[
        Position | Literal["latest"] | None,
        Query(
            description="Continue after this position (an event's `position`, or a page's "
            "`last_position`); `latest`: start at the head of the feed now (an empty page, then only new "
            "events); default: the oldest event kept",
            examples=[42, "latest"],
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> FeedPage:
    settings = _settings(request)
    if after == "latest":
        page = await feed.read_head(db, reader)
    else:
        page = await feed.read_page(
            db,
            reader,
            filters,
            after=after,
            limit=limit,
            scan_limit=settings.feed_scan_limit,
        )
    url = request.url.include_query_params(after=page.last_position)
    return FeedPage(
        items=[FeedEvent.of(item) for item in page.items],
        next=f"{url.path}?{url.query}",
        last_position=page.last_position,
        more=page.more,
    )


@router.get(
    "/stream",
    operation_id="streamEvents",
    summary="Live: the events the caller may see as they happen (Server-Sent Events)",
    description=(
        "A `text/event-stream` of the events the caller's nation may see (and its filters accept): each "
        "message has `id` (the feed position), `event` (the CloudEvent type) and `data` (the event as "
        "JSON). Comments are sent as heartbeats. Reconnect with `Last-Event-ID` (or `last_event_id`) to "
        "resume after the last event received, without loss or repeats; without it the stream starts "
        "with the next new event."
    ),
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": "The stream"},
        403: _FORBIDDEN,
        410: _GONE,
    },
)
async def stream_events(
    request: Request,
    reader: ReaderDep,
    filters: FiltersDep,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: Annotated[
        str | None, Query(description="Resume after this position (the `Last-Event-ID` header wins)")
    ] = None,
) -> StreamingResponse:
    db = database(request)
    # The header is what a reconnecting client sends; a query parameter stays in the URL from before.
    resume = _cursor(last_event_id_header, "Last-Event-ID")
    if resume is None:
        resume = _cursor(last_event_id, "last_event_id")
    start = await feed.open_stream(db, reader, resume)
    body = feed.stream(db, feed.hub_of(runtime_of(request)), reader, filters, start, _settings(request))
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
