"""The Alliance capacity picture over accepted plans."""

from __future__ import annotations

from typing import TYPE_CHECKING

from icep_client.models import SummaryLine, Timeline

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

    async def timeline(
        self,
        *,
        capability_area: str | None = None,
        product: str | None = None,
        nation: str | None = None,
        first: str | None = None,
        last: str | None = None,
    ) -> Timeline:
        """Month by month per product (and nation): requirement, committed ramp and actuals; `first` and
        `last` are months as `YYYY-MM` (the API's `from` and `to`)."""
        response = await self._client.request(
            "GET",
            "/v1/capacity/timeline",
            params=self._filters(capability_area, product, nation, first, last),
        )
        return Timeline.model_validate(response.json())

    async def timeline_svg(
        self,
        *,
        capability_area: str | None = None,
        product: str | None = None,
        nation: str | None = None,
        first: str | None = None,
        last: str | None = None,
    ) -> str:
        """The same timeline as an SVG chart, one panel per product (for a review's slides)."""
        response = await self._client.request(
            "GET",
            "/v1/capacity/timeline.svg",
            params=self._filters(capability_area, product, nation, first, last),
        )
        return response.text

    @staticmethod
    def _filters(
        capability_area: str | None,
        product: str | None,
        nation: str | None,
        first: str | None,
        last: str | None,
    ) -> dict[str, str | None]:
        return {
            "capability_area": capability_area,
            "product": product,
            "nation": nation,
            "from": first,
            "to": last,
        }
