from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

import icep.procurement
from icep.platform.app import ServiceSpec, service_app
from icep.procurement import api
from icep.procurement.handlers import HANDLERS, SUBSCRIBED_TOPICS
from icep.procurement.models import metadata, tables
from icep.procurement.settings import ProcurementSettings

MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"


def create_app(settings: ProcurementSettings | None = None) -> FastAPI:
    return service_app(
        ServiceSpec(
            settings=settings or ProcurementSettings(),
            title="ICEP Procurement",
            description=(icep.procurement.__doc__ or "").strip(),
            routers=[api.router],
            metadata=metadata,
            tables=tables,
            migrations_dir=MIGRATIONS,
            handlers=HANDLERS,
            subscribe_topics=SUBSCRIBED_TOPICS,
        )
    )
