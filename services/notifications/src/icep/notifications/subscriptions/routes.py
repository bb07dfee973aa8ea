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

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])


async def subscriber(principal: PrincipalDep) -> Subscriber:
    return Subscriber(client_id=principal.client_id, nation=principal.nation, roles=principal.roles)


SubscriberDep = Annotated[Subscriber, Depends(subscriber)]


@router.post(
    "", status_code=201, operation_id="createSubscription", summary="Subscribe an endpoint to events"
)
async def create_subscription(
    body: SubscriptionCreate, request: Request, uow: UnitOfWorkDep, response: Response, who: SubscriberDep
) -> SubscriptionCreated:
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
    rows = await subscriptions.list_subscriptions(db, who)
    return SubscriptionList(items=[SubscriptionOut.of(r) for r in rows])


@router.get("/{subscription_id}", operation_id="getSubscription", summary="One of the caller's subscriptions")
async def get_subscription(
    subscription_id: str, db: DatabaseDep, response: Response, who: SubscriberDep
) -> SubscriptionOut:
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
    summary="Change a subscription's endpoint, description or filters (If-Match required)",
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
    changes = subscriptions.SubscriptionChanges(**body.model_dump(exclude_unset=True))
    row = await subscriptions.update_subscription(
        uow, _settings(request), who, subscription_id, expected, changes
    )
    return _answer(response, row)


@router.delete(
    "/{subscription_id}",
    status_code=204,
    operation_id="deleteSubscription",
    summary="Delete a subscription (If-Match required); what still waits for it is not sent",
)
async def delete_subscription(
    subscription_id: str, uow: UnitOfWorkDep, who: SubscriberDep, expected: IfMatch
) -> Response:
    await subscriptions.change_status(uow, who, subscription_id, expected, SubscriptionAction.DELETE)
    return Response(status_code=204)


@router.post(
    "/{subscription_id}/rotate-secret",
    operation_id="rotateSubscriptionSecret",
    summary="A new signing secret, shown once; the previous one also signs for a grace period",
)
async def rotate_secret(
    subscription_id: str,
    request: Request,
    uow: UnitOfWorkDep,
    response: Response,
    who: SubscriberDep,
    expected: IfMatch,
) -> SubscriptionSecret:
    row = await subscriptions.rotate_secret(uow, _settings(request), who, subscription_id, expected)
    return SubscriptionSecret(**_answer(response, row).model_dump(), secret=row.secret)


@router.post(
    "/{subscription_id}/ping",
    operation_id="pingSubscription",
    summary="Send a signed `icep.notifications.ping.v1` to the endpoint now and report its answer",
)
async def ping_subscription(
    subscription_id: str, request: Request, uow: UnitOfWorkDep, db: DatabaseDep, who: SubscriberDep
) -> PingOut:
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
    summary="Pause deliveries: events are still kept for the subscription and go, in order, on resume",
)
async def pause_subscription(
    subscription_id: str, uow: UnitOfWorkDep, response: Response, who: SubscriberDep, expected: IfMatch
) -> SubscriptionOut:
    row = await subscriptions.change_status(uow, who, subscription_id, expected, SubscriptionAction.PAUSE)
    return _answer(response, row)


@router.post(
    "/{subscription_id}/resume",
    operation_id="resumeSubscription",
    summary="Resume a paused subscription (what waited goes now), or re-enable a disabled one",
)
async def resume_subscription(
    subscription_id: str, uow: UnitOfWorkDep, response: Response, who: SubscriberDep, expected: IfMatch
) -> SubscriptionOut:
    row = await subscriptions.change_status(uow, who, subscription_id, expected, SubscriptionAction.RESUME)
    return _answer(response, row)


@router.post(
    "/{subscription_id}/disable",
    operation_id="disableSubscription",
    summary="Disable a subscription, with a reason: nothing is kept or sent for it until it is resumed",
)
async def disable_subscription(
    subscription_id: str,
    body: DisableIn,
    uow: UnitOfWorkDep,
    response: Response,
    who: SubscriberDep,
    expected: IfMatch,
) -> SubscriptionOut:
    row = await subscriptions.change_status(
        uow, who, subscription_id, expected, SubscriptionAction.DISABLE, body.reason
    )
    return _answer(response, row)
