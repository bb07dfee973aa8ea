from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import FastAPI
from prometheus_client import Counter

import icep.procurement
from icep.platform.app import Runtime, ServiceSpec, service_app
from icep.procurement import openapi_tags
from icep.procurement.demand import routes as demand_routes
from icep.procurement.events import procurement_events
from icep.procurement.handlers import HANDLERS, SUBSCRIBED_TOPICS
from icep.procurement.initiatives import routes as initiative_routes
from icep.procurement.initiatives import tender_routes
from icep.procurement.models import metadata, tables
from icep.procurement.ocds import routes as ocds_routes
from icep.procurement.settings import ProcurementSettings, configure_lists
from icep.procurement.suppliers import routes as supplier_routes
from icep.procurement.suppliers import use_cases as suppliers

MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"

RESCREEN_RUNS = Counter(
    "icep_procurement_rescreen_runs", "Runs of the supplier re-screening schedule", ["service"]
)
RESCREENED = Counter(
    "icep_procurement_suppliers_rescreened", "Suppliers screened again against changed lists", ["service"]
)


async def rescreen_suppliers(runtime: Runtime) -> None:
    """Screen again, at start and on every interval, each supplier last screened under other lists than
    the configured ones (so a change of the lists reaches everyone on the next start). Supervised by the
    platform: a failed run is retried after a backoff."""
    settings = runtime.settings_as(ProcurementSettings)
    assert runtime.uow is not None
    lists = settings.screening_lists()
    while True:
        RESCREENED.labels(settings.service_name).inc(await suppliers.rescreen_suppliers(runtime.uow, lists))
        RESCREEN_RUNS.labels(settings.service_name).inc()
        await asyncio.sleep(settings.rescreen_interval_seconds)


def create_app(settings: ProcurementSettings | None = None) -> FastAPI:
    settings = settings or ProcurementSettings()
    configure_lists(settings)  # the lists registrations are screened against, as the schedule's
    return service_app(
        ServiceSpec(
            tags=openapi_tags.TAGS,
            settings=settings,
            title="ICEP Procurement",
            description=(icep.procurement.__doc__ or "").strip(),
            routers=[
                initiative_routes.router,
                tender_routes.router,
                ocds_routes.router,
                demand_routes.router,
                demand_routes.capacity_router,
                supplier_routes.router,
            ],
            metadata=metadata,
            tables=tables,
            migrations_dir=MIGRATIONS,
            events=procurement_events,
            handlers=HANDLERS,
            subscribe_topics=SUBSCRIBED_TOPICS,
            background=[("supplier-rescreening", rescreen_suppliers)],
        )
    )
