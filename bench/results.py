"""One benchmark figure and whether it met its target."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Result:
    name: str
    value: float
    unit: str
    target: str
    ok: bool
