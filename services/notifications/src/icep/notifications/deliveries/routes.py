"""HTTP routes of a subscription's deliveries (its owner's, and operators'): thin, one use case each."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from icep.notifications.deliveries import use_cases as deliveries
from icep.notifications.deliveries.model import DeliveryStatus
from icep.notifications.deliveries.schemas import DeliveryList, DeliveryOut, ReplayIn, ReplayOut
from icep.notifications.settings import NotificationsSettings
from icep.notifications.subscriptions.routes import SubscriberDep
from icep.platform.app import DatabaseDep, UnitOfWorkDep, runtime_of
from icep.platform.http import next_link
from icep.platform.openapi import from_body, from_path, links

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])


def _settings(request: Request) -> NotificationsSettings:
    settings = runtime_of(request).settings_as(NotificationsSettings)
    return settings


@router.get(
    "/{subscription_id}/deliveries",
    operation_id="listDeliveries",
    openapi_extra=links(
        "getDelivery",
        "redeliverDelivery",
        subscription_id=from_path("subscription_id"),
        delivery_id=from_body("items/0/id"),
    ),
    summary="Deliveries of one subscription, with their attempts",
)
async def list_deliveries(
    subscription_id: str,
    request: Request,
    db: DatabaseDep,
    who: SubscriberDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[DeliveryStatus | None, Query()] = None,
) -> DeliveryList:
    """The deliveries of one subscription, newest first, in pages, with their attempts (status code, error,
    timing), narrowed by status. Read and acted on by the subscription's client; by operators (role
    `operator`) of its nation; and by NATO's operators, who see only deliveries of events released to NATO.
    Anyone else gets 404."""
    found, after = await deliveries.delivery_page(
        db, who, subscription_id, limit, status=status, after=cursor
    )
    return DeliveryList(items=[DeliveryOut.of(d, a) for d, a in found], next=next_link(request, after))


@router.get(
    "/{subscription_id}/deliveries/{delivery_id}",
    operation_id="getDelivery",
    summary="One delivery with all its attempts",
)
async def get_delivery(
    subscription_id: str, delivery_id: str, db: DatabaseDep, who: SubscriberDep
) -> DeliveryOut:
    """One delivery with all its attempts. Read and acted on by the subscription's client; by operators (role
    `operator`) of its nation; and by NATO's operators, who see only deliveries of events released to NATO.
    Anyone else gets 404."""
    row, attempts = await deliveries.get_delivery(db, who, subscription_id, delivery_id)
    return DeliveryOut.of(row, attempts)


@router.post(
    "/{subscription_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    operation_id="redeliverDelivery",
    summary="Attempt a delivery once more, now",
)
async def redeliver(
    subscription_id: str, delivery_id: str, request: Request, uow: UnitOfWorkDep, who: SubscriberDep
) -> DeliveryOut:
    """Attempt a delivery once more, now (also after it was delivered or failed for good), with the same
    `webhook-id`: receivers deduplicate by it. The event's release is checked again. 202: the attempt is
    queued. Read and acted on by the subscription's client; by operators (role `operator`) of its nation; and
    by NATO's operators, who see only deliveries of events released to NATO. Anyone else gets 404."""
    row, attempts = await deliveries.redeliver(uow, who, subscription_id, delivery_id)
    runtime_of(request).committed()  # wake the dispatcher
    return DeliveryOut.of(row, attempts)


@router.post(
    "/{subscription_id}/replay",
    status_code=202,
    operation_id="replaySubscription",
    summary="Replay a subscription's events since a time",
)
async def replay(
    subscription_id: str, body: ReplayIn, request: Request, uow: UnitOfWorkDep, who: SubscriberDep
) -> ReplayOut:
    """Deliver again every event the subscription received since a time, in order, each with its original
    `webhook-id`; releasability and the current filters are checked again (what would not be sent now is not).
    202: the deliveries are queued. Read and acted on by the subscription's client; by operators (role
    `operator`) of its nation; and by NATO's operators, who see only deliveries of events released to NATO.
    Anyone else gets 404."""
    found = await deliveries.replay(uow, _settings(request), who, subscription_id, body.since)
    if found.replayed:
        runtime_of(request).committed()  # wake the dispatcher
    return ReplayOut(replayed=found.replayed, since=found.since, next_since=found.next_since)
