"""Request and response bodies of interchangeability clearances and answers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field

from icep.contracts import NationCode
from icep.contracts.releasability import ReleasabilityIn, ReleasabilityOut
from icep.platform.http import etag
from icep.standards.interchangeability.model import (
    Answer,
    Basis,
    BasisKind,
    Interchangeability,
    InterchangeabilityStatus,
)
from icep.standards.interchangeability.use_cases import ClearanceInput
from icep.standards.schemas import ChangeOut, In


class BasisOut(BaseModel):
    kind: BasisKind
    reference: str


class BasisIn(In):
    kind: BasisKind
    reference: str = Field(
        min_length=1, max_length=200, description="The standard edition's id, or the firing trial's reference"
    )


class ClearanceChange(In):
    status: InterchangeabilityStatus
    basis: BasisIn
    nations: list[NationCode] | None = Field(default=None, max_length=40)
    restrictions: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(default=[], max_length=20)

    def to_input(self) -> ClearanceInput:
        return ClearanceInput(
            status=self.status,
            basis=Basis(self.basis.kind, self.basis.reference.strip()),
            nations=None if self.nations is None else tuple(self.nations),
            restrictions=tuple(self.restrictions),
        )


class ClearanceIn(ClearanceChange):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "item": "155mm L15A1 HE round",
                    "platform": "PzH 2000",
                    "nations": ["DEU"],
                    "status": "verified",
                    "basis": {"kind": "trial", "reference": "WTD 91 firing trial 2024-17 (synthetic)"},
                }
            ]
        },
    )

    item: str = Field(min_length=1, max_length=200)
    platform: str = Field(min_length=1, max_length=200)
    nations: list[NationCode] = Field(min_length=1, max_length=40)
    releasability: ReleasabilityIn | None = Field(
        default=None, description="Default: all Allies; the nations cleared always read it"
    )


class ClearanceOut(BaseModel):
    id: str
    item: str
    platform: str
    nations: list[str]
    status: InterchangeabilityStatus
    basis: BasisOut
    restrictions: list[str]
    updated_at: datetime
    releasability: ReleasabilityOut
    version: int
    history: list[ChangeOut]

    @classmethod
    def of(cls, c: Interchangeability) -> ClearanceOut:
        return cls(
            id=c.id,
            item=c.item,
            platform=c.platform,
            nations=list(c.nations),
            status=c.status,
            basis=BasisOut(kind=c.basis.kind, reference=c.basis.reference),
            restrictions=list(c.restrictions),
            updated_at=c.updated_at,
            releasability=ReleasabilityOut.of(c.release),
            version=c.version,
            history=ChangeOut.all(c.history),
        )


class ClearancesOut(BaseModel):
    items: list[ClearanceOut]
    next: str | None


class AnswerOut(BaseModel):
    nation: str
    item: str
    platform: str
    answer: Answer
    reasons: list[str]
    clearance_id: str | None


def _clearance(response: Response, c: Interchangeability) -> ClearanceOut:
    response.headers["ETag"] = etag(c.version)
    return ClearanceOut.of(c)
