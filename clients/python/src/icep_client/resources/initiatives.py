"""Joint procurement initiatives: propose, read, list (every page), and join, commit or withdraw."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from icep_client.models import Initiative
from icep_client.wire import body, ident, precondition

if TYPE_CHECKING:
    from icep_client.client import IcepClient

__all__ = ["Initiatives"]

InitiativeRef = Initiative | str
#: Quantities per year: `{2026: 12000, 2027: 15000}`.
PerYear = Mapping[int, int] | Mapping[str, int]


def _years(quantities: PerYear | None) -> dict[str, int] | None:
    return None if quantities is None else {str(year): int(q) for year, q in quantities.items()}


class Initiatives:
    """`/v1/initiatives`. Actions take the initiative as read and send its ETag as `If-Match`."""

    def __init__(self, client: IcepClient) -> None:
        self._client = client

    async def propose(
        self,
        *,
        title: str,
        item: Mapping[str, Any],
        capability_area: str,
        participation_deadline: date | str,
        description: str | None = None,
        required_standards: Sequence[Mapping[str, Any]] = (),
        open_to_partners: Sequence[str] = (),
        procuring_entity: str | None = None,
        releasability: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Initiative:
        """A new initiative led by the caller's nation (`item`: `{"product": ..., "unit": ...}`)."""
        deadline = (
            participation_deadline.isoformat()
            if isinstance(participation_deadline, date)
            else participation_deadline
        )
        return await self._client.fetch(
            Initiative,
            "POST",
            "/v1/initiatives",
            json=body(
                title=title,
                item=dict(item),
                capability_area=capability_area,
                participation_deadline=deadline,
                description=description,
                required_standards=[dict(s) for s in required_standards],
                open_to_partners=list(open_to_partners),
                procuring_entity=procuring_entity,
                releasability=releasability,
            ),
            idempotency_key=idempotency_key,
        )

    async def get(self, initiative_id: str) -> Initiative:
        return await self._client.fetch(Initiative, "GET", f"/v1/initiatives/{initiative_id}")

    def list(
        self,
        *,
        product: str | None = None,
        status: str | None = None,
        lead_nation: str | None = None,
        page_size: int = 50,
    ) -> AsyncIterator[Initiative]:
        """Every initiative the caller may see (filtered), following the pages' cursors."""
        params = {"product": product, "status": status, "lead_nation": lead_nation, "limit": page_size}
        return self._client.paginate(Initiative, "/v1/initiatives", params)

    async def act(
        self,
        initiative: InitiativeRef,
        action: str,
        json: Any = None,
        *,
        if_match: str | None = None,
        idempotency_key: str | None = None,
    ) -> Initiative:
        """Any action of the initiative's lifecycle by its path (`open`, `close-participation`,
        `tender`, `bids`, `award`, `start-delivery`, `close`, ...), with its body."""
        return await self._client.fetch(
            Initiative,
            "POST",
            f"/v1/initiatives/{ident(initiative)}/{action}",
            json=json,
            if_match=precondition(initiative, if_match),
            idempotency_key=idempotency_key,
        )

    async def open(self, initiative: InitiativeRef, *, if_match: str | None = None) -> Initiative:
        """proposed -> open: nations may join."""
        return await self.act(initiative, "open", if_match=if_match)

    async def join(
        self, initiative: InitiativeRef, indicative: PerYear, *, if_match: str | None = None
    ) -> Initiative:
        """Join with indicative quantities per year."""
        return await self.act(initiative, "join", {"indicative": _years(indicative)}, if_match=if_match)

    async def commit(
        self,
        initiative: InitiativeRef,
        firm: PerYear,
        *,
        funded: PerYear | None = None,
        if_match: str | None = None,
    ) -> Initiative:
        """Commit firm (and funded) quantities per year."""
        json = body(firm=_years(firm), funded=_years(funded))
        return await self.act(initiative, "commit", json, if_match=if_match)

    async def withdraw(
        self, initiative: InitiativeRef, reason: str, *, if_match: str | None = None
    ) -> Initiative:
        return await self.act(initiative, "withdraw", {"reason": reason}, if_match=if_match)

    async def cancel(
        self, initiative: InitiativeRef, reason: str, *, if_match: str | None = None
    ) -> Initiative:
        return await self.act(initiative, "cancel", {"reason": reason}, if_match=if_match)
