"""What the capacity summary and dependencies answer."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field


class SummaryLineOut(BaseModel):
    capability_area: str
    product: str
    unit: str
    year: int
    requirement: int | None
    committed: int
    actual: int | None
    actual_through: date | None
    gap: int | None = Field(description="requirement - committed; positive means not yet covered")
    nations: list[str]
    commitments: int


class SummaryOut(BaseModel):
    items: list[SummaryLineOut]


class DependencyOut(BaseModel):
    input: str
    category: str
    commitments: int
    single_sourced: int
    by_country: dict[str, int]
    dependents: list[dict[str, str]]


class DependenciesOut(BaseModel):
    items: list[DependencyOut]
