"""Webhook subscriptions: create, list, change, pause, delete, and their deliveries (every page)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from icep_client.models import Delivery, Ping, Subscription, SubscriptionCreated
from icep_client.wire import body, ident, precondition

if TYPE_CHECKING:
    from icep_client.client import IcepClient

__all__ = ["Subscriptions"]

SubscriptionRef = Subscription | str


class Subscriptions:
    """`/v1/subscriptions`. Changes take the subscription as read and send its ETag as `If-Match`."""

    def __init__(self, client: IcepClient) -> None:
        self._client = client

    async def create(
        self,
        url: str,
        *,
        event_types: Sequence[str] | None = None,
        nations: Sequence[str] | None = None,
        capability_areas: Sequence[str] | None = None,
        products: Sequence[str] | None = None,
        description: str | None = None,
        idempotency_key: str | None = None,
    ) -> SubscriptionCreated:
        """Webhooks to `url` for the events the filters accept (`event_types` default: every type).
        Keep the answer's `secret`: it is shown only now, and `verify_webhook` needs it."""
        return await self._client.fetch(
            SubscriptionCreated,
            "POST",
            "/v1/subscriptions",
            json=body(
                url=url,
                event_types=None if event_types is None else list(event_types),
                nations=None if nations is None else list(nations),
                capability_areas=None if capability_areas is None else list(capability_areas),
                products=None if products is None else list(products),
                description=description,
            ),
            idempotency_key=idempotency_key,
        )

    async def get(self, subscription_id: str) -> Subscription:
        return await self._client.fetch(Subscription, "GET", f"/v1/subscriptions/{subscription_id}")

    async def list(self) -> list[Subscription]:
        """The caller's subscriptions (one answer: a client has few)."""
        response = await self._client.request("GET", "/v1/subscriptions")
        return [Subscription.model_validate(item) for item in response.json()["items"]]

    async def update(
        self, subscription: SubscriptionRef, *, if_match: str | None = None, **changes: Any
    ) -> Subscription:
        """Change `url`, `description` or the filters."""
        return await self._client.fetch(
            Subscription,
            "PATCH",
            f"/v1/subscriptions/{ident(subscription)}",
            json={k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()},
            if_match=precondition(subscription, if_match),
        )

    async def delete(self, subscription: SubscriptionRef, *, if_match: str | None = None) -> None:
        etag = precondition(subscription, if_match)
        await self._client.request("DELETE", f"/v1/subscriptions/{ident(subscription)}", if_match=etag)

    async def _act(
        self, subscription: SubscriptionRef, action: str, if_match: str | None, json: Any = None
    ) -> Subscription:
        return await self._client.fetch(
            Subscription,
            "POST",
            f"/v1/subscriptions/{ident(subscription)}/{action}",
            json=json,
            if_match=precondition(subscription, if_match),
        )

    async def pause(self, subscription: SubscriptionRef, *, if_match: str | None = None) -> Subscription:
        """Deliveries wait until `resume`."""
        return await self._act(subscription, "pause", if_match)

    async def resume(self, subscription: SubscriptionRef, *, if_match: str | None = None) -> Subscription:
        return await self._act(subscription, "resume", if_match)

    async def disable(
        self, subscription: SubscriptionRef, reason: str, *, if_match: str | None = None
    ) -> Subscription:
        return await self._act(subscription, "disable", if_match, {"reason": reason})

    async def rotate_secret(
        self, subscription: SubscriptionRef, *, if_match: str | None = None
    ) -> SubscriptionCreated:
        """A new signing secret (the previous one also signs for a grace period)."""
        return await self._client.fetch(
            SubscriptionCreated,
            "POST",
            f"/v1/subscriptions/{ident(subscription)}/rotate-secret",
            if_match=precondition(subscription, if_match),
        )

    async def ping(self, subscription: SubscriptionRef) -> Ping:
        """A signed test message to the endpoint, and how it answered."""
        return await self._client.fetch(Ping, "POST", f"/v1/subscriptions/{ident(subscription)}/ping")

    def deliveries(
        self, subscription: SubscriptionRef, *, status: str | None = None
    ) -> AsyncIterator[Delivery]:
        """Every delivery of the subscription (filtered by status), following the pages' cursors."""
        return self._client.paginate(
            Delivery, f"/v1/subscriptions/{ident(subscription)}/deliveries", {"status": status}
        )

    async def redeliver(self, subscription: SubscriptionRef, delivery_id: str) -> Delivery:
        """Send a delivery's event again (the same `webhook-id`: a receiver drops it if it has it)."""
        return await self._client.fetch(
            Delivery, "POST", f"/v1/subscriptions/{ident(subscription)}/deliveries/{delivery_id}/redeliver"
        )
