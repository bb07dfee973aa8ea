from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

import icep.standards
from icep.platform.app import ServiceSpec, service_app
from icep.standards import openapi_tags
from icep.standards.answers import routes as answers
from icep.standards.conformance import routes as conformance
from icep.standards.conformance.schedule import expire_conformance
from icep.standards.events import standards_events
from icep.standards.handlers import HANDLERS, SUBSCRIBED_TOPICS
from icep.standards.interchangeability import routes as interchangeability
from icep.standards.interoperability import routes as interoperability
from icep.standards.models import metadata, tables
from icep.standards.settings import StandardsSettings
from icep.standards.standards import routes as standards

MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"

#: In the order the API documents list them; the fixed paths under /v1/standards (progress, conformance)
#: come before /v1/standards/{standard_id}, which would otherwise match them.
ROUTERS = [
    standards.catalogue_router,
    interoperability.progress_router,
    conformance.router,
    standards.router,
    answers.router,
    interoperability.router,
    interchangeability.router,
]


def create_app(settings: StandardsSettings | None = None) -> FastAPI:
    return service_app(
        ServiceSpec(
            tags=openapi_tags.TAGS,
            settings=settings or StandardsSettings(),
            title="ICEP Standards",
            description=(icep.standards.__doc__ or "").strip(),
            routers=ROUTERS,
            events=standards_events,
            metadata=metadata,
            tables=tables,
            migrations_dir=MIGRATIONS,
            handlers=HANDLERS,
            subscribe_topics=SUBSCRIBED_TOPICS,
            background=[("conformance-expiry", expire_conformance)],
        )
    )
