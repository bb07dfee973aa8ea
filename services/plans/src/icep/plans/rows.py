"""The base of the plans service's table classes: one registry, so every aggregate's rows share one metadata
(gathered in `icep.plans.models`)."""

from __future__ import annotations

from sqlalchemy.orm import registry
from sqlmodel import SQLModel


class PlansTable(SQLModel, registry=registry()):
    pass
