"""The subscriptions table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, text
from sqlmodel import Field

from icep.notifications.tables import NotificationsTable
from icep.platform.db import UtcDateTime
from icep.platform.secrets import Sealed

#: A sealed `whsec_` secret (50 characters) is about 180; room for a longer secret or a newer format.
SEALED_SECRET_LENGTH = 400


class SubscriptionRow(NotificationsTable, table=True):
    __tablename__ = "subscriptions"

    id: str = Field(primary_key=True, max_length=36)
    owner: str = Field(index=True, max_length=200)
    nation: str = Field(max_length=8)
    url: str = Field(max_length=2000)
    description: str = Field(default="", max_length=500)
    event_types: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    #: Filters besides the event types (empty: any): owning nations, capability areas, products.
    nations: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default=text("'[]'"))
    )
    capability_areas: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default=text("'[]'"))
    )
    products: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default=text("'[]'"))
    )
    status: str = Field(max_length=20)
    disabled_reason: str | None = Field(default=None, max_length=500)
    #: Sealed at rest (`icep.platform.secrets`): the database holds `icep-sealed:v1:...`, never `whsec_`.
    secret: str = Field(sa_column=Column(Sealed(SEALED_SECRET_LENGTH), nullable=False))
    #: After a rotation the previous secret also signs, until it expires (the grace period). Sealed too.
    previous_secret: str | None = Field(default=None, sa_column=Column(Sealed(SEALED_SECRET_LENGTH)))
    previous_secret_expires_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    version: int
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    #: When the current run of failed attempts began (None while answers come): it is disabled when
    #: that lasts longer than `disable_after_failing_seconds`.
    failing_since: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
