"""The base of every model, and the parts every resource shares (releasability, history)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, PrivateAttr

__all__ = ["Change", "IcepModel", "Releasability", "Versioned"]


class IcepModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    #: The OpenAPI schema (components/schemas) this model mirrors.
    __schema__: ClassVar[str] = ""


class Versioned(IcepModel):
    """A resource changed under optimistic concurrency: `etag` is what `If-Match` sends back."""

    version: int
    _etag: str | None = PrivateAttr(default=None)

    @property
    def etag(self) -> str:
        """The `ETag` the answer carried, else the one the API gives this version (`"<version>"`)."""
        return self._etag or f'"{self.version}"'

    def with_etag(self, etag: str | None) -> Versioned:
        self._etag = etag
        return self


class Releasability(IcepModel):
    __schema__ = "ReleasabilityOut"
    owner: str
    scope: str
    nations: list[str]
    marking: str


class Change(IcepModel):
    """One entry of a record's history."""

    __schema__ = "ChangeOut"
    action: str
    status: str
    by: str
    at: datetime
    note: str
