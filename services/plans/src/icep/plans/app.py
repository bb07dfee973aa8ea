from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from icep.plans import openapi_tags
from icep.plans.capacity import routes as capacity_routes
from icep.plans.events import plans_events
from icep.plans.handlers import HANDLERS
from icep.plans.models import metadata, tables
from icep.plans.plans import routes as plan_routes
from icep.plans.progress import routes as progress_routes
from icep.plans.settings import PlansSettings
from icep.plans.targets import routes as target_routes
from icep.platform.app import ServiceSpec, service_app

MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"


def create_app(settings: PlansSettings | None = None) -> FastAPI:
    return service_app(
        ServiceSpec(
            tags=openapi_tags.TAGS,
            settings=settings or PlansSettings(),
            title="ICEP National Plans",
            description="Allies' National Plans for defence-industrial capacity, and their review.",
            routers=[
                plan_routes.router,
                progress_routes.router,
                target_routes.router,
                capacity_routes.router,
            ],
            metadata=metadata,
            tables=tables,
            migrations_dir=MIGRATIONS,
            handlers=HANDLERS,
            events=plans_events,
        )
    )
