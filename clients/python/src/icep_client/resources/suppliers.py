"""Suppliers the caller's nation may see, with their screening."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from icep_client.models import Supplier

if TYPE_CHECKING:
    from icep_client.client import IcepClient

__all__ = ["Suppliers"]


class Suppliers:
    """`/v1/suppliers` (listSuppliers, getSupplier)."""

    def __init__(self, client: IcepClient) -> None:
        self._client = client

    async def get(self, supplier_id: str) -> Supplier:
        return await self._client.fetch(Supplier, "GET", f"/v1/suppliers/{supplier_id}")

    def list(
        self,
        *,
        screening: str | None = None,
        nation: str | None = None,
        organisation_id: str | None = None,
        page_size: int = 50,
    ) -> AsyncIterator[Supplier]:
        """Every supplier the caller may see, narrowed by screening status (pending, clear,
        potential_match, cleared, blocked), registering nation or organisation id, following the pages'
        cursors."""
        params = {"screening": screening, "nation": nation, "organisation_id": organisation_id}
        return self._client.paginate(Supplier, "/v1/suppliers", {**params, "limit": page_size})
