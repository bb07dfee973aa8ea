"""The one message the notifications service itself sends to webhooks: the ping (never on Kafka).

The platform's API documents read `PING_EVENT_TYPE` from this module to describe the webhooks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

#: The type of the test message `POST /v1/subscriptions/{id}/ping` sends (never on Kafka).
PING_EVENT_TYPE = "icep.notifications.ping.v1"


def ping_body(msg_id: str, subscription_id: str, nation: str, at: datetime) -> dict[str, Any]:
    """A ping shaped like every other message (the event envelope), with a small `data`."""
    return {
        "id": msg_id,
        "type": PING_EVENT_TYPE,
        "source": "/icep/notifications",
        "subject": subscription_id,
        "time": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "nation": nation,
        "releasableto": nation,
        "data": {"subscription_id": subscription_id, "message": "ping"},
    }
