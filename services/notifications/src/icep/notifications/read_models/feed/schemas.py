"""Answer bodies of the feed routes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from icep.notifications.read_models.feed.log import FeedItem


class FeedEvent(BaseModel):
    """An event as webhooks deliver it, with its position on the feed."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "position": 42,
                    "id": "01938a4e-7c1a-7b7e-9f3c-2d4e5f6a7b8c",
                    "type": "icep.plans.plan.submitted.v1",
                    "source": "/icep/plans",
                    "subject": "01938a4e-6b00-7000-8000-000000000001",
                    "time": "2026-03-01T09:30:00Z",
                    "nation": "DEU",
                    "releasableto": "ALLIES",
                    "data": {"plan_id": "01938a4e-6b00-7000-8000-000000000001", "version": 2},
                }
            ]
        }
    )

    position: int = Field(description="The feed cursor of this event (the stream's `id`)")
    id: str
    type: str
    source: str
    subject: str
    time: str = Field(description="When it happened (UTC)", json_schema_extra={"format": "date-time"})
    nation: str = Field(description="The owning nation")
    releasableto: str = Field(description="Who may see it: `DEU`, `DEU,FRA`, `ALLIES`, `ALLIES,UKR`")
    data: dict[str, Any]

    @classmethod
    def of(cls, item: FeedItem) -> FeedEvent:
        return cls.model_validate({**item.event, "position": item.position})


class FeedPage(BaseModel):
    items: list[FeedEvent]
    next: str = Field(
        description="The next page (relative link with `after`): follow it now when `more`, else poll it"
    )
    last_position: int = Field(
        description="The last position looked at, also when the events after the last item were not for "
        "the caller: continue after it, nothing before it is left out"
    )
    more: bool = Field(description="More events may follow at once; false: none until new ones arrive")
