"""Interchangeability clearances: which item may be used in which platform, by which nations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from icep_client.models import Clearance

if TYPE_CHECKING:
    from icep_client.client import IcepClient

__all__ = ["Clearances"]


class Clearances:
    """`/v1/interchangeability/clearances` (listClearances, getClearance)."""

    def __init__(self, client: IcepClient) -> None:
        self._client = client

    async def get(self, clearance_id: str) -> Clearance:
        return await self._client.fetch(Clearance, "GET", f"/v1/interchangeability/clearances/{clearance_id}")

    def list(
        self, *, item: str | None = None, platform: str | None = None, page_size: int = 50
    ) -> AsyncIterator[Clearance]:
        """Every clearance the caller may see, narrowed by item or platform, following the pages'
        cursors."""
        return self._client.paginate(
            Clearance,
            "/v1/interchangeability/clearances",
            {"item": item, "platform": platform, "limit": page_size},
        )
