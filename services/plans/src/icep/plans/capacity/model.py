"""The Alliance capacity picture: summary lines and supply-chain dependencies, in plain Python."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class SummaryFilter:
    capability_area: str | None = None
    product: str | None = None
    year: int | None = None
    nation: str | None = None


@dataclass
class SummaryLine:
    capability_area: str
    product: str
    unit: str
    year: int
    requirement: int | None = None
    committed: int = 0
    actual: int | None = None
    actual_through: date | None = None
    nations: set[str] | None = None
    commitments: int = 0

    @property
    def gap(self) -> int | None:
        """Requirement not covered by committed capacity (negative: more committed than required)."""
        return None if self.requirement is None else self.requirement - self.committed


@dataclass
class Dependency:
    input: str
    category: str
    commitments: int = 0
    single_sourced: int = 0
    by_country: dict[str, int] | None = None
    dependents: list[dict[str, str]] | None = None
