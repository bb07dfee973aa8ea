"""NATO standards, the nations' answers to them, and the interoperability verdicts between nations."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from icep_client.models import Interoperability, Standard, StandardResponse
from icep_client.wire import precondition

if TYPE_CHECKING:
    from icep_client.client import IcepClient

__all__ = ["Standards"]


def _day(value: date | str) -> str:
    return value.isoformat() if isinstance(value, date) else value


class Standards:
    """`/v1/standards` and `/v1/interoperability`. A nation's answer is changed with the answer as read
    (its ETag goes in `If-Match`)."""

    def __init__(self, client: IcepClient) -> None:
        self._client = client

    async def get(self, standard_id: str) -> Standard:
        return await self._client.fetch(Standard, "GET", f"/v1/standards/{standard_id}")

    def search(
        self,
        *,
        number: str | None = None,
        q: str | None = None,
        capability_area: str | None = None,
        status: str | None = None,
        page_size: int = 50,
    ) -> AsyncIterator[Standard]:
        """Every standard that matches, following the pages' cursors."""
        params = {"number": number, "q": q, "capability_area": capability_area, "status": status}
        return self._client.paginate(Standard, "/v1/standards", {**params, "limit": page_size})

    async def responses(self, standard_id: str) -> list[StandardResponse]:
        """Every nation's answer the caller may see."""
        response = await self._client.request("GET", f"/v1/standards/{standard_id}/responses")
        return [StandardResponse.model_validate(item) for item in response.json()["items"]]

    async def response(self, standard_id: str, nation: str) -> StandardResponse:
        return await self._client.fetch(
            StandardResponse, "GET", f"/v1/standards/{standard_id}/responses/{nation}"
        )

    async def _answer(
        self, answer: StandardResponse, action: str, json: Any, if_match: str | None
    ) -> StandardResponse:
        return await self._client.fetch(
            StandardResponse,
            "POST",
            f"/v1/standards/{answer.standard_id}/responses/{answer.nation}/{action}",
            json=json,
            if_match=precondition(answer, if_match),
        )

    async def ratify(
        self,
        answer: StandardResponse,
        *,
        reservations: Sequence[Mapping[str, Any]] = (),
        if_match: str | None = None,
    ) -> StandardResponse:
        """Ratify, perhaps with reservations (`{"clause", "kind", "detail"}`)."""
        json = {"reservations": [dict(r) for r in reservations]}
        return await self._answer(answer, "ratify", json, if_match)

    async def decline(self, answer: StandardResponse, *, if_match: str | None = None) -> StandardResponse:
        return await self._answer(answer, "decline", None, if_match)

    async def reserve(
        self, answer: StandardResponse, *, clause: str, kind: str, detail: str, if_match: str | None = None
    ) -> StandardResponse:
        """A reservation (`kind`: will_not_implement or limited) on one clause."""
        return await self._answer(
            answer, "reservations", {"clause": clause, "kind": kind, "detail": detail}, if_match
        )

    async def forecast_implementation(
        self, answer: StandardResponse, on: date | str, *, if_match: str | None = None
    ) -> StandardResponse:
        return await self._answer(
            answer, "implementation-forecast", {"implementation_forecast": _day(on)}, if_match
        )

    async def record_implementation(
        self, answer: StandardResponse, on: date | str, *, if_match: str | None = None
    ) -> StandardResponse:
        return await self._answer(answer, "implementation", {"implemented_on": _day(on)}, if_match)

    async def interoperability(self, nations: Sequence[str], standards: Sequence[str]) -> Interoperability:
        """The verdict between each pair of `nations` over `standards` (ids, or numbers for the edition
        in force)."""
        return await self._client.fetch(
            Interoperability,
            "GET",
            "/v1/interoperability",
            params={"nations": list(nations), "standards": list(standards)},
        )
