from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from icep.notifications import observe, openapi_tags, retention
from icep.notifications.deliveries import routes as delivery_routes
from icep.notifications.deliveries.dispatcher import WebhookDispatcher
from icep.notifications.deliveries.rows import DeliveryRow
from icep.notifications.events import notifications_events
from icep.notifications.handlers import HANDLERS, SUBSCRIBED_TOPICS
from icep.notifications.models import metadata, tables
from icep.notifications.read_models.feed import log as feed
from icep.notifications.read_models.feed import routes as feed_routes
from icep.notifications.settings import NotificationsSettings
from icep.notifications.subscriptions import routes as subscription_routes
from icep.notifications.subscriptions import sealing
from icep.platform.app import Runtime, ServiceSpec, service_app

MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"


async def dispatch_webhooks(runtime: Runtime) -> None:
    assert runtime.db is not None and runtime.uow is not None
    settings = runtime.settings_as(NotificationsSettings)
    dispatcher = WebhookDispatcher(runtime.db, runtime.uow, settings)
    wakeups = runtime.wakeups
    local_wake = dispatcher.wake
    if wakeups is not None:
        # Deliveries a consumer of any replica created may be in this replica's shards.
        wakeups.watch(DeliveryRow.__table__, "deliveries", DeliveryRow)  # type: ignore[attr-defined]
        wakeups.on("deliveries", dispatcher.wake)
        local_wake = wakeups.unless_listening(dispatcher.wake)
    runtime.after_commit.append(local_wake)
    try:
        await dispatcher.run()
    finally:
        runtime.after_commit.remove(local_wake)
        if wakeups is not None:
            wakeups.off("deliveries", dispatcher.wake)
        await dispatcher.aclose()


def create_app(settings: NotificationsSettings | None = None) -> FastAPI:
    return service_app(
        ServiceSpec(
            tags=openapi_tags.TAGS,
            settings=settings or NotificationsSettings(),
            title="ICEP Notifications",
            description="Signed webhook deliveries, the catch-up feed and the live stream of ICEP events.",
            routers=[subscription_routes.router, delivery_routes.router, feed_routes.router],
            metadata=metadata,
            tables=tables,
            migrations_dir=MIGRATIONS,
            events=notifications_events,
            handlers=HANDLERS,
            subscribe_topics=SUBSCRIBED_TOPICS,
            retention=retention.RULES,
            background=[
                ("webhook-dispatcher", dispatch_webhooks),
                ("event-log-watch", feed.watch),
                ("reseal-signing-secrets", sealing.reseal_at_start),
                ("webhook-observer", observe.keep_observing),
            ],
        )
    )
