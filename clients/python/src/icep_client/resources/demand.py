"""The nations' demand signals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from icep_client.models import DemandSignal

if TYPE_CHECKING:
    from icep_client.client import IcepClient

__all__ = ["DemandSignals"]


class DemandSignals:
    """`/v1/demand/signals` (listDemandSignals, getDemandSignal)."""

    def __init__(self, client: IcepClient) -> None:
        self._client = client

    async def get(self, signal_id: str) -> DemandSignal:
        return await self._client.fetch(DemandSignal, "GET", f"/v1/demand/signals/{signal_id}")

    def list(
        self, *, nation: str | None = None, product: str | None = None, page_size: int = 50
    ) -> AsyncIterator[DemandSignal]:
        """Every demand signal the caller may see, narrowed by nation or product, following the pages'
        cursors."""
        return self._client.paginate(
            DemandSignal, "/v1/demand/signals", {"nation": nation, "product": product, "limit": page_size}
        )
