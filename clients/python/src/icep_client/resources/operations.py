"""For operators (role `operator`): the audit trail across the services, and the dead letters of the
services' consumers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from icep_client.models import AuditEntry, DeadLetter, DeadLetterSummary

if TYPE_CHECKING:
    from icep_client.client import IcepClient

__all__ = ["Audit", "DeadLetters"]

#: The services whose consumers keep dead letters the API serves.
DeadLetterService = Literal["notifications", "procurement"]


def _instant(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


class Audit:
    """`/v1/audit` (listAudit): one query over every service's audit trail, newest first."""

    def __init__(self, client: IcepClient) -> None:
        self._client = client

    def list(
        self,
        *,
        nation: str | None = None,
        resource_type: str | None = None,
        resource_id: str | None = None,
        client_id: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        page_size: int = 50,
    ) -> AsyncIterator[AuditEntry]:
        """Every entry the caller may see, narrowed by owner nation, resource, client, action, outcome
        (success, refused, failed) and time (`since` inclusive, `until` exclusive), following the pages'
        cursors."""
        params = {
            "nation": nation,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "client_id": client_id,
            "action": action,
            "outcome": outcome,
            "since": _instant(since),
            "until": _instant(until),
        }
        return self._client.paginate(AuditEntry, "/v1/audit", {**params, "limit": page_size})


class DeadLetters:
    """`/v1/operations/{service}/dead-letters` (listNotificationsDeadLetters, getNotificationsDeadLetter,
    listProcurementDeadLetters, getProcurementDeadLetter), newest first."""

    def __init__(self, client: IcepClient) -> None:
        self._client = client

    async def get(self, service: DeadLetterService, dead_letter_id: str) -> DeadLetter:
        """One dead letter with its record (key, headers, payload)."""
        return await self._client.fetch(
            DeadLetter, "GET", f"/v1/operations/{service}/dead-letters/{dead_letter_id}"
        )

    def list(
        self,
        service: DeadLetterService,
        *,
        status: str | None = None,
        type: str | None = None,
        page_size: int = 50,
    ) -> AsyncIterator[DeadLetterSummary]:
        """Every dead letter of the service's consumer group the caller may see, narrowed by status
        (waiting, redriven, resolved) or event type, following the pages' cursors."""
        return self._client.paginate(
            DeadLetterSummary,
            f"/v1/operations/{service}/dead-letters",
            {"status": status, "type": type, "limit": page_size},
        )
