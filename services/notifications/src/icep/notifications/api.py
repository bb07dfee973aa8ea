"""HTTP routes of the notifications service: thin, one use case each."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from icep.notifications import service
from icep.notifications.models import AttemptRow, DeliveryRow, SubscriptionRow
from icep.notifications.settings import NotificationsSettings
from icep.platform.app import database, runtime_of, unit_of_work
from icep.platform.auth import PrincipalDep
from icep.platform.http import etag

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://partner.example/icep/webhooks",
                    "description": "German MoD planning cell",
                    "event_types": ["icep.plans.*"],
                }
            ]
        },
    )

    url: str = Field(max_length=2000)
    description: str = Field(default="", max_length=500)
    event_types: list[str] = Field(default_factory=lambda: ["*"], max_length=50)


class SubscriptionOut(BaseModel):
    id: str
    url: str
    description: str
    event_types: list[str]
    nation: str
    status: str
    disabled_reason: str | None
    version: int
    created_at: datetime

    @classmethod
    def of(cls, row: SubscriptionRow) -> SubscriptionOut:
        return cls(
            id=row.id,
            url=row.url,
            description=row.description,
            event_types=row.event_types,
            nation=row.nation,
            status=row.status,
            disabled_reason=row.disabled_reason,
            version=row.version,
            created_at=row.created_at,
        )


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(description="The signing secret (Standard Webhooks `whsec_...`); shown only now")


class AttemptOut(BaseModel):
    attempted_at: datetime
    status_code: int | None
    error: str | None
    latency_ms: float

    @classmethod
    def of(cls, row: AttemptRow) -> AttemptOut:
        return cls(
            attempted_at=row.attempted_at,
            status_code=row.status_code,
            error=row.error,
            latency_ms=row.latency_ms,
        )


class DeliveryOut(BaseModel):
    id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    attempt_log: list[AttemptOut]

    @classmethod
    def of(cls, row: DeliveryRow, attempts: list[AttemptRow]) -> DeliveryOut:
        return cls(
            id=row.id,
            event_id=row.event_id,
            event_type=row.event_type,
            status=row.status,
            attempts=row.attempts,
            last_status_code=row.last_status_code,
            next_attempt_at=row.next_attempt_at,
            created_at=row.created_at,
            delivered_at=row.delivered_at,
            attempt_log=[AttemptOut.of(a) for a in attempts],
        )


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]


class DeliveryList(BaseModel):
    items: list[DeliveryOut]


def subscriber(principal: PrincipalDep) -> service.Subscriber:
    return service.Subscriber(client_id=principal.client_id, nation=principal.nation, roles=principal.roles)


SubscriberDep = Annotated[service.Subscriber, Depends(subscriber)]


@router.post(
    "", status_code=201, operation_id="createSubscription", summary="Subscribe an endpoint to events"
)
async def create_subscription(
    body: SubscriptionCreate, request: Request, response: Response, who: SubscriberDep
) -> SubscriptionCreated:
    settings = runtime_of(request).settings
    assert isinstance(settings, NotificationsSettings)
    row = await service.create_subscription(
        unit_of_work(request),
        settings,
        who,
        service.NewSubscription(url=body.url, description=body.description, event_types=body.event_types),
    )
    response.headers["Location"] = f"/v1/subscriptions/{row.id}"
    response.headers["ETag"] = etag(row.version)
    return SubscriptionCreated(**SubscriptionOut.of(row).model_dump(), secret=row.secret)


@router.get("", operation_id="listSubscriptions", summary="The caller's subscriptions")
async def list_subscriptions(request: Request, who: SubscriberDep) -> SubscriptionList:
    rows = await service.list_subscriptions(database(request), who)
    return SubscriptionList(items=[SubscriptionOut.of(r) for r in rows])


@router.get("/{subscription_id}", operation_id="getSubscription", summary="One of the caller's subscriptions")
async def get_subscription(
    subscription_id: str, request: Request, response: Response, who: SubscriberDep
) -> SubscriptionOut:
    row = await service.get_subscription(database(request), who, subscription_id)
    response.headers["ETag"] = etag(row.version)
    return SubscriptionOut.of(row)


@router.get(
    "/{subscription_id}/deliveries",
    operation_id="listDeliveries",
    summary="Deliveries of one subscription, newest first, with their attempts",
)
async def list_deliveries(
    subscription_id: str,
    request: Request,
    who: SubscriberDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DeliveryList:
    found = await service.list_deliveries(database(request), who, subscription_id, limit)
    return DeliveryList(items=[DeliveryOut.of(d, a) for d, a in found])
