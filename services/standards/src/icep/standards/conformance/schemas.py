"""Request and response bodies of conformance claims."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import BaseModel, Field

from icep.contracts.releasability import ReleasabilityIn, ReleasabilityOut
from icep.standards.conformance.model import ConformanceClaim, ConformanceStatus
from icep.standards.schemas import ChangeOut, In


class ProductOut(BaseModel):
    manufacturer: str
    product_code: str
    name: str


class ProductIn(In):
    manufacturer: str = Field(min_length=1, max_length=200)
    product_code: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=200)


Evidence = list[Annotated[str, Field(min_length=1, max_length=500)]]


class ClaimIn(In):
    product: ProductIn
    standard_id: str = Field(max_length=36)
    level: str | None = Field(default=None, max_length=40)
    evidence: Evidence = Field(default=[], max_length=50)
    releasability: ReleasabilityIn | None = Field(
        default=None, description="Default: all Allies; NATO's standards staff always read a claim"
    )


class EvidenceIn(In):
    evidence: Evidence = Field(default=[], max_length=50)


class VerifyIn(EvidenceIn):
    expires_on: date


class ClaimOut(BaseModel):
    id: str
    nation: str
    product: ProductOut
    standard_id: str
    level: str | None
    status: ConformanceStatus
    evidence: list[str]
    expires_on: date | None
    rejection_reason: str | None
    releasability: ReleasabilityOut
    version: int
    history: list[ChangeOut]

    @classmethod
    def of(cls, c: ConformanceClaim) -> ClaimOut:
        return cls(
            id=c.id,
            nation=c.nation,
            product=ProductOut(
                manufacturer=c.product.manufacturer, product_code=c.product.product_code, name=c.product.name
            ),
            standard_id=c.standard_id,
            level=c.level,
            status=c.status,
            evidence=list(c.evidence),
            expires_on=c.expires_on,
            rejection_reason=c.rejection_reason,
            releasability=ReleasabilityOut.of(c.release),
            version=c.version,
            history=ChangeOut.all(c.history),
        )


class ClaimPage(BaseModel):
    items: list[ClaimOut]
    next: str | None
