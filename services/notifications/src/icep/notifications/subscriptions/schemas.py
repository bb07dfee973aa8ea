"""Request and answer bodies of the subscription routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from icep.notifications.subscriptions.model import Subscription

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
    event_types: list[str] = Field(default=["*"], max_length=50)
    nations: list[FilterTerm] = Field(
        default=[],
        max_length=50,
        description="Only events owned by these nations (the `nation` attribute); empty: any nation. "
        "This narrows, never widens: an event goes only to subscribers whose nation may see it.",
    )
    capability_areas: list[FilterTerm] = Field(
        default=[],
        max_length=50,
        description="Only events whose data has one of these `capability_area`s (or `capability_areas`); "
        "empty: no filter. An event without the field does not match a filter on it.",
    )
    products: list[FilterTerm] = Field(
        default=[],
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
    def of(cls, row: Subscription) -> SubscriptionOut:
        return cls(
            id=row.id,
            url=row.url,
            description=row.description,
            event_types=row.event_types,
            nations=row.nations,
            capability_areas=row.capability_areas,
            products=row.products,
            nation=row.nation,
            status=row.status.value,
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


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]
