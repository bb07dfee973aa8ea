"""Events the notifications service consumes: every type of the subscribed topics, fanned out to the
event log and the subscriptions (`read_models.fan_out`). The platform finds the service's consumer here
(`HANDLERS`, `SUBSCRIBED_TOPICS`), for the app, the API documents and the dead-letter commands."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from icep.notifications.read_models.fan_out import fan_out
from icep.platform.consumer import Handler
from icep.platform.events import ReceivedEvent


async def deliver_to_subscribers(session: AsyncSession, event: ReceivedEvent) -> None:
    await fan_out(session, event)


HANDLERS: dict[str, Handler] = {"*": deliver_to_subscribers}

#: The producing services whose events subscribers may receive.
SUBSCRIBED_TOPICS = ["icep.plans.events", "icep.procurement.events", "icep.standards.events"]
