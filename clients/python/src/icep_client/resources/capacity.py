"""The Alliance capacity picture over accepted plans."""

from __future__ import annotations

from typing import TYPE_CHECKING

from icep_client.models import SummaryLine

if TYPE_CHECKING:
    from icep_client.client import IcepClient

__all__ = ["Capacity"]


class Capacity:
    """`/v1/capacity/...`: what the caller's nation may see of it."""

    def __init__(self, client: IcepClient) -> None:
        self._client = client

    async def summary(
        self,
        *,
        capability_area: str | None = None,
        product: str | None = None,
        year: int | None = None,
        nation: str | None = None,
    ) -> list[SummaryLine]:
        """Requirement, committed and actual capacity per product and year."""
        response = await self._client.request(
            "GET",
            "/v1/capacity/summary",
            params={"capability_area": capability_area, "product": product, "year": year, "nation": nation},
        )
        return [SummaryLine.model_validate(line) for line in response.json()["items"]]
