"""What every service's sample-data loader (`icep seed`) shares: it plays a partner system through the
gateway (a client-credentials token per sample client, checked answers, `If-Match` on every change), so
the samples pass the same rules, events and webhooks as real data; and it says what it did."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import httpx


@dataclass
class SeedReport:
    """What a loader did, by record: created, moved along its states, left as it was, or left alone."""

    created: list[str] = field(default_factory=list)
    advanced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def tell(self, say: Callable[[str], object], records: str) -> None:
        """One line per created, advanced and skipped record, then how many `records` were unchanged."""
        for line in self.created:
            say(f"created  {line}")
        for line in self.advanced:
            say(f"advanced {line}")
        for line in self.skipped:
            say(f"skipped  {line}")
        say(f"{len(self.unchanged)} {records} already present and unchanged")


async def gateway_client(
    http: httpx.AsyncClient, gateway: str, client_id: str, secret: str
) -> httpx.AsyncClient:
    """A client of the gateway that calls as `client_id` (a token from `POST /oauth/token`)."""
    r = await http.post(
        f"{gateway}/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    r.raise_for_status()
    return httpx.AsyncClient(
        base_url=gateway, headers={"Authorization": f"Bearer {r.json()['access_token']}"}, timeout=30
    )


def checked(r: httpx.Response) -> dict[str, Any]:
    """The answer's JSON body, or an error naming the call and the problem the platform answered."""
    if r.status_code >= 400:
        raise RuntimeError(f"{r.request.method} {r.request.url.path} answered {r.status_code}: {r.text}")
    data: dict[str, Any] = r.json()
    return data


def if_match(record: dict[str, Any]) -> dict[str, str]:
    """Every change names the version it was decided on, so a concurrent edit is not overwritten."""
    return {"If-Match": f'"{record["version"]}"'}


def today() -> date:
    return datetime.now(UTC).date()
