"""HTTP routes of the standards service. The walking skeleton serves only health, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["standards"])
