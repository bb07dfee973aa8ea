"""HTTP routes of the notifications service: thin, one use case each."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from icep.notifications import deliveries, subscriptions
from icep.notifications.domain import DeliveryStatus, SubscriptionAction
from icep.notifications.models import AttemptRow, DeliveryRow, SubscriptionRow
from icep.notifications.settings import NotificationsSettings
from icep.platform.app import database, runtime_of, unit_of_work
from icep.platform.auth import PrincipalDep
from icep.platform.http import etag, if_match_version, next_link

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])

FilterTerm = Annotated[str, Field(min_length=1, max_length=200)]


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://partner.example/icep/webhooks",
                    "description": "German MoD planning cell",
                    "event_types": ["icep.plans.*", "icep.procurement.*"],
                    "nations": ["DEU", "FRA"],
                    "capability_areas": ["munitions"],
                    "products": [],
                }
            ]
        },
    )

    url: str = Field(max_length=2000)
    description: str = Field(default="", max_length=500)
    event_types: list[str] = Field(default_factory=lambda: ["*"], max_length=50)
    nations: list[FilterTerm] = Field(
        default_factory=list,
        max_length=50,
        description="Only events owned by these nations (the `nation` attribute); empty: any nation. "
        "This narrows, never widens: an event goes only to subscribers whose nation may see it.",
    )
    capability_areas: list[FilterTerm] = Field(
        default_factory=list,
        max_length=50,
        description="Only events whose data has one of these `capability_area`s (or `capability_areas`); "
        "empty: no filter. An event without the field does not match a filter on it.",
    )
    products: list[FilterTerm] = Field(
        default_factory=list,
        max_length=50,
        description="Only events whose data has one of these `product`s (or `products`); empty: no "
        "filter. An event without the field does not match a filter on it.",
    )


class SubscriptionOut(BaseModel):
    id: str
    url: str
    description: str
    event_types: list[str]
    nations: list[str]
    capability_areas: list[str]
    products: list[str]
    nation: str
    status: str = Field(description="`active`, `paused` (deliveries wait) or `disabled` (none are made)")
    disabled_reason: str | None
    previous_secret_expires_at: datetime | None = Field(
        description="After a rotation: until when the previous secret also signs"
    )
    version: int
    created_at: datetime

    @classmethod
    def of(cls, row: SubscriptionRow) -> SubscriptionOut:
        return cls(
            id=row.id,
            url=row.url,
            description=row.description,
            event_types=row.event_types,
            nations=row.nations,
            capability_areas=row.capability_areas,
            products=row.products,
            nation=row.nation,
            status=row.status,
            disabled_reason=row.disabled_reason,
            previous_secret_expires_at=row.previous_secret_expires_at if row.previous_secret else None,
            version=row.version,
            created_at=row.created_at,
        )


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(description="The signing secret (Standard Webhooks `whsec_...`); shown only now")


class SubscriptionPatch(BaseModel):
    """What is given replaces what was there; what is left out stays."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"products": ["155mm artillery round"], "nations": []}]},
    )

    url: str | None = Field(default=None, max_length=2000)
    description: str | None = Field(default=None, max_length=500)
    event_types: list[str] | None = Field(default=None, min_length=1, max_length=50)
    nations: list[FilterTerm] | None = Field(default=None, max_length=50)
    capability_areas: list[FilterTerm] | None = Field(default=None, max_length=50)
    products: list[FilterTerm] | None = Field(default=None, max_length=50)


class DisableIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "endpoint being migrated"}]}
    )

    reason: str = Field(min_length=1, max_length=500)


class SubscriptionSecret(SubscriptionOut):
    secret: str = Field(
        description="The new signing secret; shown only now. The previous one also signs (a second "
        "`v1,` entry in `webhook-signature`) until `previous_secret_expires_at`."
    )


class PingOut(BaseModel):
    message_id: str = Field(description="The ping's `webhook-id`")
    ok: bool = Field(description="The endpoint answered 2xx")
    status_code: int | None
    latency_ms: float
    error: str | None = Field(description="Why no answer came (refused address, timeout, connection)")


class AttemptOut(BaseModel):
    attempted_at: datetime
    status_code: int | None
    error: str | None
    latency_ms: float
    response_body: str | None = Field(
        description="The start of the endpoint's answer (at most `max_response_bytes` are read)"
    )

    @classmethod
    def of(cls, row: AttemptRow) -> AttemptOut:
        return cls(
            attempted_at=row.attempted_at,
            status_code=row.status_code,
            error=row.error,
            latency_ms=row.latency_ms,
            response_body=row.response_body,
        )


class DeliveryOut(BaseModel):
    id: str
    event_id: str = Field(description="The event's id: the `webhook-id` of every attempt and replay")
    event_type: str
    subject: str = Field(description="The aggregate the event is about: its deliveries go in order")
    status: str = Field(description="`pending`, `delivered` or `failed`")
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    generation: int = Field(description="0 when the event came; n for its n-th replay")
    replay_of: str | None = Field(description="The delivery this replay sends again")
    redelivery_requested_at: datetime | None = Field(
        description="When a redelivery was asked for that has not been attempted yet"
    )
    attempt_log: list[AttemptOut]

    @classmethod
    def of(cls, row: DeliveryRow, attempts: list[AttemptRow]) -> DeliveryOut:
        return cls(
            id=row.id,
            event_id=row.event_id,
            event_type=row.event_type,
            subject=row.subject,
            status=row.status,
            attempts=row.attempts,
            last_status_code=row.last_status_code,
            last_error=row.last_error,
            next_attempt_at=row.next_attempt_at,
            created_at=row.created_at,
            delivered_at=row.delivered_at,
            generation=row.generation,
            replay_of=row.replay_of,
            redelivery_requested_at=row.redelivery_requested_at,
            attempt_log=[AttemptOut.of(a) for a in attempts],
        )


class ReplayIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"since": "2026-12-01T00:00:00Z"}]}
    )

    since: AwareDatetime = Field(description="Every event the subscription received from then on")


class ReplayOut(BaseModel):
    replayed: int = Field(description="How many events are delivered again (new deliveries)")
    since: datetime
    next_since: datetime | None = Field(
        description="Set when more events were there than one replay takes: replay again from here"
    )


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]


class DeliveryList(BaseModel):
    items: list[DeliveryOut]
    next: str | None = Field(default=None, description="The next page (newer ones come first)")


async def subscriber(principal: PrincipalDep) -> subscriptions.Subscriber:
    return subscriptions.Subscriber(
        client_id=principal.client_id, nation=principal.nation, roles=principal.roles
    )


SubscriberDep = Annotated[subscriptions.Subscriber, Depends(subscriber)]


@router.post(
    "", status_code=201, operation_id="createSubscription", summary="Subscribe an endpoint to events"
)
async def create_subscription(
    body: SubscriptionCreate, request: Request, response: Response, who: SubscriberDep
) -> SubscriptionCreated:
    settings = runtime_of(request).settings_as(NotificationsSettings)
    row = await subscriptions.create_subscription(
        unit_of_work(request),
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
async def list_subscriptions(request: Request, who: SubscriberDep) -> SubscriptionList:
    rows = await subscriptions.list_subscriptions(database(request), who)
    return SubscriptionList(items=[SubscriptionOut.of(r) for r in rows])


@router.get("/{subscription_id}", operation_id="getSubscription", summary="One of the caller's subscriptions")
async def get_subscription(
    subscription_id: str, request: Request, response: Response, who: SubscriberDep
) -> SubscriptionOut:
    row = await subscriptions.get_subscription(database(request), who, subscription_id)
    response.headers["ETag"] = etag(row.version)
    return SubscriptionOut.of(row)


IfMatch = Annotated[int | None, Depends(if_match_version)]


def _answer(response: Response, row: SubscriptionRow) -> SubscriptionOut:
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
    response: Response,
    who: SubscriberDep,
    expected: IfMatch,
) -> SubscriptionOut:
    changes = subscriptions.SubscriptionChanges(**body.model_dump(exclude_unset=True))
    row = await subscriptions.update_subscription(
        unit_of_work(request), _settings(request), who, subscription_id, expected, changes
    )
    return _answer(response, row)


@router.delete(
    "/{subscription_id}",
    status_code=204,
    operation_id="deleteSubscription",
    summary="Delete a subscription (If-Match required); what still waits for it is not sent",
)
async def delete_subscription(
    subscription_id: str, request: Request, who: SubscriberDep, expected: IfMatch
) -> Response:
    await subscriptions.change_status(
        unit_of_work(request), who, subscription_id, expected, SubscriptionAction.DELETE
    )
    return Response(status_code=204)


@router.post(
    "/{subscription_id}/rotate-secret",
    operation_id="rotateSubscriptionSecret",
    summary="A new signing secret, shown once; the previous one also signs for a grace period",
)
async def rotate_secret(
    subscription_id: str, request: Request, response: Response, who: SubscriberDep, expected: IfMatch
) -> SubscriptionSecret:
    row = await subscriptions.rotate_secret(
        unit_of_work(request), _settings(request), who, subscription_id, expected
    )
    return SubscriptionSecret(**_answer(response, row).model_dump(), secret=row.secret)


@router.post(
    "/{subscription_id}/ping",
    operation_id="pingSubscription",
    summary="Send a signed `icep.notifications.ping.v1` to the endpoint now and report its answer",
)
async def ping_subscription(subscription_id: str, request: Request, who: SubscriberDep) -> PingOut:
    result = await subscriptions.ping(
        database(request), unit_of_work(request), _settings(request), who, subscription_id
    )
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
    subscription_id: str, request: Request, response: Response, who: SubscriberDep, expected: IfMatch
) -> SubscriptionOut:
    row = await subscriptions.change_status(
        unit_of_work(request), who, subscription_id, expected, SubscriptionAction.PAUSE
    )
    return _answer(response, row)


@router.post(
    "/{subscription_id}/resume",
    operation_id="resumeSubscription",
    summary="Resume a paused subscription (what waited goes now), or re-enable a disabled one",
)
async def resume_subscription(
    subscription_id: str, request: Request, response: Response, who: SubscriberDep, expected: IfMatch
) -> SubscriptionOut:
    row = await subscriptions.change_status(
        unit_of_work(request), who, subscription_id, expected, SubscriptionAction.RESUME
    )
    return _answer(response, row)


@router.post(
    "/{subscription_id}/disable",
    operation_id="disableSubscription",
    summary="Disable a subscription, with a reason: nothing is kept or sent for it until it is resumed",
)
async def disable_subscription(
    subscription_id: str,
    body: DisableIn,
    request: Request,
    response: Response,
    who: SubscriberDep,
    expected: IfMatch,
) -> SubscriptionOut:
    row = await subscriptions.change_status(
        unit_of_work(request), who, subscription_id, expected, SubscriptionAction.DISABLE, body.reason
    )
    return _answer(response, row)


@router.get(
    "/{subscription_id}/deliveries",
    operation_id="listDeliveries",
    summary="Deliveries of one subscription, newest first, with their attempts (operators: any's)",
)
async def list_deliveries(
    subscription_id: str,
    request: Request,
    who: SubscriberDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[DeliveryStatus | None, Query()] = None,
) -> DeliveryList:
    found, after = await deliveries.delivery_page(
        database(request), who, subscription_id, limit, status=status, after=cursor
    )
    return DeliveryList(items=[DeliveryOut.of(d, a) for d, a in found], next=next_link(request, after))


@router.get(
    "/{subscription_id}/deliveries/{delivery_id}",
    operation_id="getDelivery",
    summary="One delivery with all its attempts",
)
async def get_delivery(
    subscription_id: str, delivery_id: str, request: Request, who: SubscriberDep
) -> DeliveryOut:
    row, attempts = await deliveries.get_delivery(database(request), who, subscription_id, delivery_id)
    return DeliveryOut.of(row, attempts)


@router.post(
    "/{subscription_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    operation_id="redeliverDelivery",
    summary="Attempt a delivery once more, now (also after it was delivered or failed for good)",
)
async def redeliver(
    subscription_id: str, delivery_id: str, request: Request, who: SubscriberDep
) -> DeliveryOut:
    row, attempts = await deliveries.redeliver(unit_of_work(request), who, subscription_id, delivery_id)
    runtime_of(request).committed()  # wake the dispatcher
    return DeliveryOut.of(row, attempts)


@router.post(
    "/{subscription_id}/replay",
    status_code=202,
    operation_id="replaySubscription",
    summary="Deliver again every event the subscription received since a time (same webhook-id each)",
)
async def replay(subscription_id: str, body: ReplayIn, request: Request, who: SubscriberDep) -> ReplayOut:
    found = await deliveries.replay(
        unit_of_work(request), _settings(request), who, subscription_id, body.since
    )
    if found.replayed:
        runtime_of(request).committed()  # wake the dispatcher
    return ReplayOut(replayed=found.replayed, since=found.since, next_since=found.next_since)
