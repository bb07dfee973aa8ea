"""Conformance claims: that a product conforms to a standard."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from icep_client.models import ConformanceClaim

if TYPE_CHECKING:
    from icep_client.client import IcepClient

__all__ = ["ConformanceClaims"]


class ConformanceClaims:
    """`/v1/standards/conformance` (listConformanceClaims, getConformanceClaim)."""

    def __init__(self, client: IcepClient) -> None:
        self._client = client

    async def get(self, claim_id: str) -> ConformanceClaim:
        return await self._client.fetch(ConformanceClaim, "GET", f"/v1/standards/conformance/{claim_id}")

    def list(
        self,
        *,
        standard_id: str | None = None,
        product_code: str | None = None,
        status: str | None = None,
        nation: str | None = None,
        page_size: int = 50,
    ) -> AsyncIterator[ConformanceClaim]:
        """Every claim the caller may see, narrowed by standard, product code, status (claimed,
        under_test, verified, rejected, expired) or nation, following the pages' cursors."""
        params = {
            "standard_id": standard_id,
            "product_code": product_code,
            "status": status,
            "nation": nation,
        }
        return self._client.paginate(
            ConformanceClaim, "/v1/standards/conformance", {**params, "limit": page_size}
        )
