"""HTTP routes of subscriptions: thin, one use case each."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from icep.notifications.settings import NotificationsSettings
from icep.notifications.subscriptions import use_cases as subscriptions
from icep.notifications.subscriptions.model import Subscriber, Subscription, SubscriptionAction
from icep.notifications.subscriptions.schemas import (
    DisableIn,
    PingOut,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionList,
    SubscriptionOut,
    SubscriptionPatch,
    SubscriptionSecret,
)
from icep.platform.app import DatabaseDep, UnitOfWorkDep, runtime_of
from icep.platform.auth import PrincipalDep
from icep.platform.http import IfMatch, etag
from icep.platform.openapi import CREATED_ID, from_path, links

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])


async def subscriber(principal: PrincipalDep) -> Subscriber:
    return Subscriber(client_id=principal.client_id, nation=principal.nation, roles=principal.roles)


SubscriberDep = Annotated[Subscriber, Depends(subscriber)]


@router.post(
    "",
    status_code=201,
    operation_id="createSubscription",
    openapi_extra=links(
        "getSubscription",
        "updateSubscription",
        "pingSubscription",
        "pauseSubscription",
        "disableSubscription",
        "rotateSubscriptionSecret",
        "deleteSubscription",
        "listDeliveries",
        "replaySubscription",
        status=201,
        if_match=True,
        subscription_id=CREATED_ID,
    ),
    summary="Subscribe an endpoint to events",
)
async def create_subscription(
    body: SubscriptionCreate, request: Request, uow: UnitOfWorkDep, response: Response, who: SubscriberDep
) -> SubscriptionCreated:
    """A client with the `subscriber` role subscribes an HTTPS endpoint to events: each event of the
    subscribed `event_types` (default `["*"]`: every type; patterns like `icep.plans.*`) that the client's
    nation may see (its `releasableto` marking) and that passes the filters (`nations`, `capability_areas`,
    `products`; empty: no filter) is sent as a signed webhook (Standard Webhooks), at least once and in order
    per subject. The answer carries the signing secret (`whsec_...`), shown only now. The subscription is the
    creating client's alone. Raises `icep.notifications.subscription.created.v1` on Kafka only (marked for the
    client's nation; never delivered by webhook, feed or stream).

    Errors: 403 without `subscriber`; 422 for an endpoint that is not HTTPS or whose host is not allowed
    (private addresses are refused), or unknown event type patterns."""
    settings = runtime_of(request).settings_as(NotificationsSettings)
    row = await subscriptions.create_subscription(
        uow,
        settings,
        who,
        subscriptions.NewSubscription(
            url=body.url,
            description=body.description,
            event_types=body.event_types,
            nations=body.nations,
            capability_areas=body.capability_areas,
            products=body.products,
        ),
    )
    response.headers["Location"] = f"/v1/subscriptions/{row.id}"
    response.headers["ETag"] = etag(row.version)
    return SubscriptionCreated(**SubscriptionOut.of(row).model_dump(), secret=row.secret)


@router.get("", operation_id="listSubscriptions", summary="The caller's subscriptions")
async def list_subscriptions(db: DatabaseDep, who: SubscriberDep) -> SubscriptionList:
    """The caller's own subscriptions (those its client created), without their secrets."""
    rows = await subscriptions.list_subscriptions(db, who)
    return SubscriptionList(items=[SubscriptionOut.of(r) for r in rows])


@router.get(
    "/{subscription_id}",
    operation_id="getSubscription",
    openapi_extra=links(
        "updateSubscription",
        "pauseSubscription",
        "resumeSubscription",
        "disableSubscription",
        "rotateSubscriptionSecret",
        "deleteSubscription",
        "listDeliveries",
        if_match=True,
        subscription_id=from_path("subscription_id"),
    ),
    summary="One of the caller's subscriptions",
)
async def get_subscription(
    subscription_id: str, db: DatabaseDep, response: Response, who: SubscriberDep
) -> SubscriptionOut:
    """One of the caller's subscriptions with its `ETag`. Only the client that created the subscription
    reaches it (404 for anyone else)."""
    row = await subscriptions.get_subscription(db, who, subscription_id)
    response.headers["ETag"] = etag(row.version)
    return SubscriptionOut.of(row)


def _answer(response: Response, row: Subscription) -> SubscriptionOut:
    response.headers["ETag"] = etag(row.version)
    return SubscriptionOut.of(row)


def _settings(request: Request) -> NotificationsSettings:
    settings = runtime_of(request).settings_as(NotificationsSettings)
    return settings


@router.patch(
    "/{subscription_id}",
    operation_id="updateSubscription",
    summary="Change a subscription's endpoint, description or filters",
)
async def update_subscription(
    subscription_id: str,
    body: SubscriptionPatch,
    request: Request,
    uow: UnitOfWorkDep,
    response: Response,
    who: SubscriberDep,
    expected: IfMatch,
) -> SubscriptionOut:
    """Change the endpoint, description or filters; what is given replaces what was there. Only the client
    that created the subscription reaches it (404 for anyone else). Requires `If-Match` with the
    subscription's `ETag` (428 without, 412 when stale). Publishes no event. 409 when deleted."""
    changes = subscriptions.SubscriptionChanges(**body.model_dump(exclude_unset=True))
    row = await subscriptions.update_subscription(
        uow, _settings(request), who, subscription_id, expected, changes
    )
    return _answer(response, row)


@router.delete(
    "/{subscription_id}",
    status_code=204,
    operation_id="deleteSubscription",
    summary="Delete a subscription",
)
async def delete_subscription(
    subscription_id: str, uow: UnitOfWorkDep, who: SubscriberDep, expected: IfMatch
) -> Response:
    """Delete the subscription: nothing more is sent, and what still waits for it is not sent. Only the client
    that created the subscription reaches it (404 for anyone else). Requires `If-Match` with the
    subscription's `ETag` (428 without, 412 when stale)."""
    await subscriptions.change_status(uow, who, subscription_id, expected, SubscriptionAction.DELETE)
    return Response(status_code=204)


@router.post(
    "/{subscription_id}/rotate-secret",
    operation_id="rotateSubscriptionSecret",
    summary="Rotate a subscription's signing secret",
)
async def rotate_secret(
    subscription_id: str,
    request: Request,
    uow: UnitOfWorkDep,
    response: Response,
    who: SubscriberDep,
    expected: IfMatch,
) -> SubscriptionSecret:
    """A new signing secret, shown only in this answer; the previous one keeps signing too (two signatures per
    message) for a grace period (`previous_secret_expires_at`), so the receiver can switch without losing
    messages. Only the client that created the subscription reaches it (404 for anyone else). Requires
    `If-Match` with the subscription's `ETag` (428 without, 412 when stale)."""
    row = await subscriptions.rotate_secret(uow, _settings(request), who, subscription_id, expected)
    return SubscriptionSecret(**_answer(response, row).model_dump(), secret=row.secret)


@router.post(
    "/{subscription_id}/ping",
    operation_id="pingSubscription",
    summary="Send a signed ping to the endpoint now",
)
async def ping_subscription(
    subscription_id: str, request: Request, uow: UnitOfWorkDep, db: DatabaseDep, who: SubscriberDep
) -> PingOut:
    """Send a signed `icep.notifications.ping.v1` (never on Kafka; subject: the subscription's id) to the
    endpoint now and report the endpoint's answer (status, time taken), so an endpoint can be checked before
    events flow. Only the client that created the subscription reaches it (404 for anyone else)."""
    result = await subscriptions.ping(db, uow, _settings(request), who, subscription_id)
    return PingOut(
        message_id=result.message_id,
        ok=result.ok,
        status_code=result.status_code,
        latency_ms=result.latency_ms,
        error=result.error,
    )


@router.post(
    "/{subscription_id}/pause",
    operation_id="pauseSubscription",
    openapi_extra=links(
        "getSubscription",
        "resumeSubscription",
        "disableSubscription",
        if_match=True,
        subscription_id=from_path("subscription_id"),
    ),
    summary="Pause a subscription's deliveries",
)
async def pause_subscription(
    subscription_id: str, uow: UnitOfWorkDep, response: Response, who: SubscriberDep, expected: IfMatch
) -> SubscriptionOut:
    """Pause deliveries: `active` -> `paused`. Events are still kept for the subscription and go, in order, on
    resume. Only the client that created the subscription reaches it (404 for anyone else). Requires
    `If-Match` with the subscription's `ETag` (428 without, 412 when stale). 409 when not active."""
    row = await subscriptions.change_status(uow, who, subscription_id, expected, SubscriptionAction.PAUSE)
    return _answer(response, row)


@router.post(
    "/{subscription_id}/resume",
    operation_id="resumeSubscription",
    openapi_extra=links(
        "getSubscription", "pauseSubscription", if_match=True, subscription_id=from_path("subscription_id")
    ),
    summary="Resume or re-enable a subscription",
)
async def resume_subscription(
    subscription_id: str, uow: UnitOfWorkDep, response: Response, who: SubscriberDep, expected: IfMatch
) -> SubscriptionOut:
    """Resume a paused subscription (what waited goes now) or re-enable a disabled one: -> `active`.
    Re-enabling raises `icep.notifications.subscription.reenabled.v1` (Kafka only). Only the client that
    created the subscription reaches it (404 for anyone else). Requires `If-Match` with the subscription's
    `ETag` (428 without, 412 when stale). 409 when active or deleted."""
    row = await subscriptions.change_status(uow, who, subscription_id, expected, SubscriptionAction.RESUME)
    return _answer(response, row)


@router.post(
    "/{subscription_id}/disable",
    operation_id="disableSubscription",
    openapi_extra=links(
        "getSubscription",
        "resumeSubscription",
        "deleteSubscription",
        if_match=True,
        subscription_id=from_path("subscription_id"),
    ),
    summary="Disable a subscription, with a reason",
)
async def disable_subscription(
    subscription_id: str,
    body: DisableIn,
    uow: UnitOfWorkDep,
    response: Response,
    who: SubscriberDep,
    expected: IfMatch,
) -> SubscriptionOut:
    """Disable the subscription, with a reason: -> `disabled`; nothing is kept or sent for it until it is
    resumed (the platform disables an endpoint itself when it answers `410 Gone` or keeps failing). Raises
    `icep.notifications.subscription.disabled.v1` (Kafka only). Only the client that created the subscription
    reaches it (404 for anyone else). Requires `If-Match` with the subscription's `ETag` (428 without, 412
    when stale). 409 when disabled or deleted."""
    row = await subscriptions.change_status(
        uow, who, subscription_id, expected, SubscriptionAction.DISABLE, body.reason
    )
    return _answer(response, row)
