from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

import icep.standards
from icep.platform.app import ServiceSpec, service_app
from icep.standards import api
from icep.standards.handlers import HANDLERS, SUBSCRIBED_TOPICS
from icep.standards.models import metadata, tables
from icep.standards.schedule import expire_conformance
from icep.standards.settings import StandardsSettings

MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"


def create_app(settings: StandardsSettings | None = None) -> FastAPI:
    return service_app(
        ServiceSpec(
            settings=settings or StandardsSettings(),
            title="ICEP Standards",
            description=(icep.standards.__doc__ or "").strip(),
            routers=api.routers,
            metadata=metadata,
            tables=tables,
            migrations_dir=MIGRATIONS,
            handlers=HANDLERS,
            subscribe_topics=SUBSCRIBED_TOPICS,
            background=[("conformance-expiry", expire_conformance)],
        )
    )
