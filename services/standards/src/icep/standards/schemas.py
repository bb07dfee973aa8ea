"""Request and response pieces the routes of every aggregate share: strict bodies, the history of a
record, If-Match, the releasability a caller gives.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from icep.contracts import Releasability
from icep.contracts.releasability import ReleasabilityIn
from icep.standards.records import Change

Text = Annotated[str, Field(min_length=1, max_length=200)]


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")


def owned_release(r: ReleasabilityIn | None, owner: str) -> Releasability | None:
    return None if r is None else r.owned_by(owner)


class ChangeOut(BaseModel):
    action: str
    status: str
    by: str
    at: datetime
    note: str

    @classmethod
    def all(cls, history: tuple[Change, ...]) -> list[ChangeOut]:
        return [cls(action=c.action, status=c.status, by=c.by, at=c.at, note=c.note) for c in history]


class CancelIn(In):
    reason: str = Field(min_length=1, max_length=2000)
