"""National plans: create, read, list (every page), edit, and the lifecycle's actions under If-Match."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from icep_client.models import Plan, Progress, ProgressHistory
from icep_client.wire import body, ident, precondition

if TYPE_CHECKING:
    from icep_client.client import IcepClient

__all__ = ["Plans"]

PlanRef = Plan | str


def _day(value: date | str | None) -> str | None:
    return value.isoformat() if isinstance(value, date) else value


class Plans:
    """`/v1/plans`. Actions take the plan as read (its ETag goes in `If-Match`, so a change made by
    someone else meanwhile is a `PreconditionFailed`, not lost) and return the plan as it is after."""

    def __init__(self, client: IcepClient) -> None:
        self._client = client

    async def create(
        self,
        *,
        title: str,
        period_start: date | str,
        period_end: date | str,
        capability_areas: Sequence[str] = (),
        releasability: Mapping[str, Any] | None = None,
        capacity_releasability: Mapping[str, Any] | None = None,
        content: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Plan:
        """A new draft plan (`releasability`, e.g. `{"scope": "allies"}`, says who may see it once
        accepted; a draft is its nation's alone). Safe to retry: one Idempotency-Key for every attempt."""
        return await self._client.fetch(
            Plan,
            "POST",
            "/v1/plans",
            json=body(
                title=title,
                period_start=_day(period_start),
                period_end=_day(period_end),
                capability_areas=list(capability_areas),
                releasability=releasability,
                capacity_releasability=capacity_releasability,
                content=content,
            ),
            idempotency_key=idempotency_key,
        )

    async def get(self, plan_id: str) -> Plan:
        return await self._client.fetch(Plan, "GET", f"/v1/plans/{plan_id}")

    def list(
        self, *, nation: str | None = None, status: str | None = None, page_size: int = 50
    ) -> AsyncIterator[Plan]:
        """Every plan the caller may see (filtered), following the pages' cursors."""
        return self._client.paginate(
            Plan, "/v1/plans", {"nation": nation, "status": status, "limit": page_size}
        )

    async def edit(self, plan: PlanRef, *, if_match: str | None = None, **changes: Any) -> Plan:
        """Change a draft (`title`, `period_start`, `period_end`, `capability_areas`, `content`)."""
        return await self._client.fetch(
            Plan,
            "PATCH",
            f"/v1/plans/{ident(plan)}",
            json={k: _day(v) if isinstance(v, date) else v for k, v in changes.items()},
            if_match=precondition(plan, if_match),
        )

    async def _act(
        self, plan: PlanRef, action: str, if_match: str | None, json: Any = None, key: str | None = None
    ) -> Plan:
        return await self._client.fetch(
            Plan,
            "POST",
            f"/v1/plans/{ident(plan)}/{action}",
            json=json,
            if_match=precondition(plan, if_match),
            idempotency_key=key,
        )

    async def submit(
        self, plan: PlanRef, *, if_match: str | None = None, idempotency_key: str | None = None
    ) -> Plan:
        """draft -> submitted (for NATO's review)."""
        return await self._act(plan, "submit", if_match, key=idempotency_key)

    async def start_review(self, plan: PlanRef, *, if_match: str | None = None) -> Plan:
        """submitted -> under_review (a reviewer)."""
        return await self._act(plan, "start-review", if_match)

    async def accept(self, plan: PlanRef, *, if_match: str | None = None) -> Plan:
        """under_review -> accepted (a reviewer): its capacity counts in the Alliance picture."""
        return await self._act(plan, "accept", if_match)

    async def return_(self, plan: PlanRef, reasons: Sequence[str], *, if_match: str | None = None) -> Plan:
        """Back to the nation with reasons (a reviewer)."""
        return await self._act(plan, "return", if_match, {"reasons": list(reasons)})

    async def redraft(self, plan: PlanRef, *, if_match: str | None = None) -> Plan:
        """returned -> draft."""
        return await self._act(plan, "redraft", if_match)

    async def withdraw(self, plan: PlanRef, *, if_match: str | None = None) -> Plan:
        return await self._act(plan, "withdraw", if_match)

    async def release(
        self,
        plan: PlanRef,
        releasability: Mapping[str, Any],
        *,
        capacity_releasability: Mapping[str, Any] | None = None,
        if_match: str | None = None,
    ) -> Plan:
        """Who may see the plan (and, wider, its capacity figures) from now on."""
        return await self._act(
            plan,
            "release",
            if_match,
            body(releasability=releasability, capacity_releasability=capacity_releasability),
        )

    async def report_progress(
        self,
        plan: PlanRef,
        commitment_key: str,
        *,
        month: date | str,
        actual_output: int,
        if_match: str | None = None,
    ) -> Progress:
        """The actual output of one commitment in one month (of an accepted plan)."""
        return await self._client.fetch(
            Progress,
            "POST",
            f"/v1/plans/{ident(plan)}/commitments/{commitment_key}/progress",
            json={"month": _day(month), "actual_output": actual_output},
            if_match=precondition(plan, if_match),
        )

    async def progress_history(self, plan: PlanRef, commitment_key: str) -> ProgressHistory:
        """Every month reported against the commitment across the plan's lineage, with each correction
        (who, when, the figure before)."""
        return await self._client.fetch(
            ProgressHistory, "GET", f"/v1/plans/{ident(plan)}/commitments/{commitment_key}/progress"
        )

    async def versions(self, plan_id: str) -> builtins.list[dict[str, Any]]:
        """Every version of the plan, oldest first."""
        response = await self._client.request("GET", f"/v1/plans/{plan_id}/versions")
        items: builtins.list[dict[str, Any]] = response.json()["items"]
        return items
