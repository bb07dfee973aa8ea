"""A poison record end to end: the notifications service's handler fails on plan-created events (a bug,
injected with a failure point), so a DEU plan's `created` event is dead-lettered; an operator finds it
(the operator API through the gateway, and the `icep` CLI with the service's environment), the service is
restarted with the fix, the operator redrives it, and its effect (the event on the catch-up feed) is there
exactly once. The metric `icep_dead_letters_waiting` follows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from icep.platform.testing import wait_for
from tests.conftest import RunningPlatform, _launch, _shutdown

CREATED = "icep.plans.plan.created.v1"
PROBLEM = "application/problem+json"
#: Fast retries, so the poison record is dead-lettered in well under a second.
CONSUMER_ENV = {
    "ICEP_NOTIFICATIONS_CONSUMER_MAX_ATTEMPTS": "2",
    "ICEP_NOTIFICATIONS_CONSUMER_BACKOFF_SECONDS": "0.05",
    "ICEP_DEAD_LETTERS_GAUGE_SECONDS": "0.5",
}
BASE = "/v1/operations/notifications/dead-letters"
#: The bug: notifications' handler fails on plan-created events (procurement does not consume them).
BUG = {"ICEP_FAULTS": f"consumer.fail:{CREATED}"}


@pytest.fixture(scope="module")
async def platform(
    kafka_bootstrap: str, make_database_url: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningPlatform]:
    """The module's platform, started with the bug (one start, no restart to break it)."""
    running = await _launch(kafka_bootstrap, make_database_url, tmp_path_factory, {**CONSUMER_ENV, **BUG})
    try:
        yield running
    finally:
        await _shutdown(running)


def icep(platform: RunningPlatform, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `icep` command, with the environment the services run with."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "icep"), *args],
        env={**os.environ, **platform.launcher.env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json() if r.content else None


async def feed_ids(client: httpx.AsyncClient) -> list[str]:
    ids: list[str] = []
    page = ok(await client.get("/v1/events", params={"limit": 100}))
    while True:
        ids += [item["id"] for item in page["items"]]
        if not page["more"]:
            return ids
        page = ok(await client.get(page["next"]))


async def test_a_poison_record_is_listed_redriven_after_the_fix_and_applied_once(
    platform: RunningPlatform,
) -> None:
    deu = await platform.as_client("deu-planner")
    operator = await platform.as_client("deu-operator")
    fra_operator = await platform.as_client("fra-operator")
    # NATO's operators see every nation's dead letters and may act on them (a `write` token).
    nato_operator = await platform.as_client("nato-reviewer")
    subscriber = await platform.as_client("deu-subscriber")
    dlq = platform.topic("icep.dlq.icep-notifications")
    try:
        plan = ok(
            await deu.post(
                "/v1/plans",
                json={
                    "title": f"Poisoned {uuid.uuid4().hex[:6]}",
                    "period_start": "2025-01-01",
                    "period_end": "2029-12-31",
                    "capability_areas": ["munitions"],
                    "releasability": {"scope": "allies"},
                },
            ),
            201,
        )

        async def dead_letter() -> dict[str, Any] | None:
            page = ok(await operator.get(BASE, params={"status": "waiting", "type": CREATED}))
            return next((d for d in page["items"] if d["owner_nation"] == "DEU"), None)

        listed = await wait_for(dead_letter, timeout=60, what="the dead letter of the plan's created event")
        event_id = listed["event_id"]
        assert listed["service"] == "notifications" and listed["status"] == "waiting"
        assert listed["error"] == f"InjectedFault: fault point consumer.fail:{CREATED} armed"
        assert listed["origin"]["topic"] == platform.topic("icep.plans.events")
        assert listed["dead_letter"]["topic"] == dlq and listed["attempts"] == 2
        assert event_id not in await feed_ids(subscriber)  # the handler's effect rolled back

        shown = ok(await operator.get(f"{BASE}/{listed['id']}"))
        assert plan["id"] in json.dumps(shown["payload"])
        assert {"name": "ce_id", "value": event_id} in [
            {k: v for k, v in h.items() if v is not None} for h in shown["headers"]
        ]
        # Another nation's operators do not see DEU's dead letters.
        assert all(d["owner_nation"] == "FRA" for d in ok(await fra_operator.get(BASE))["items"])
        hidden = await fra_operator.get(f"{BASE}/{listed['id']}")
        assert hidden.status_code == 404 and hidden.headers["content-type"] == PROBLEM
        refused = await deu.get(BASE)
        assert refused.status_code == 403 and refused.headers["content-type"] == PROBLEM

        async def gauge_is(value: float) -> bool:
            return await platform.metric("notifications", "icep_dead_letters_waiting", topic=dlq) == value

        await wait_for(lambda: gauge_is(1), timeout=30, what="one dead letter waiting on the metric")

        # The CLI, where the service runs: the same dead letter.
        listing = icep(platform, "dead-letters", "list", "notifications", "--status", "waiting", "--json")
        assert listing.returncode == 0, listing.stderr
        rows = [json.loads(line) for line in listing.stdout.splitlines()]
        assert [r["id"] for r in rows if r["event_id"] == event_id] == [listed["id"]]
        show = icep(platform, "dead-letters", "show", "notifications", listed["id"])
        assert show.returncode == 0, show.stderr
        assert "InjectedFault" in show.stdout and event_id in show.stdout and plan["id"] in show.stdout

        # The fix: the service restarted without the bug. Then the redrive, through the gateway.
        platform.restart("notifications", {"ICEP_FAULTS": ""})
        elsewhere = await fra_operator.post(f"{BASE}/{listed['id']}/redrive")
        assert elsewhere.status_code == 404, elsewhere.text  # another nation's dead letter: not there for FRA
        redriven = ok(await operator.post(f"{BASE}/{listed['id']}/redrive"))
        assert redriven["id"] == listed["id"] and redriven["redrive_count"] == 1

        async def resolved() -> bool:
            return bool(ok(await operator.get(f"{BASE}/{listed['id']}"))["status"] == "resolved")

        await wait_for(resolved, timeout=60, what="the dead letter resolved")
        await wait_for(lambda: gauge_is(0), timeout=30, what="no dead letter waiting on the metric")
        assert (await feed_ids(subscriber)).count(event_id) == 1

        again = await nato_operator.post(f"{BASE}/{listed['id']}/redrive")
        assert again.status_code == 409 and again.headers["content-type"] == PROBLEM
        assert again.json()["current_state"] == "resolved"
        # Nothing more happens: the feed still has the event once after the platform settled.
        await platform.settled()
        assert (await feed_ids(subscriber)).count(event_id) == 1

        purged = icep(platform, "dead-letters", "purge", "notifications", "--status", "resolved")
        assert purged.returncode == 0 and "1 dead letter(s) purged" in purged.stdout, purged.stdout
        assert ok(await operator.get(BASE))["items"] == []
        gone = await nato_operator.get(f"{BASE}/{listed['id']}")
        assert gone.status_code == 404 and gone.headers["content-type"] == PROBLEM
        nothing = ok(await nato_operator.post(f"{BASE}/redrive"))
        assert nothing == {"redriven": 0, "items": []}
    finally:
        for client in (deu, operator, fra_operator, nato_operator, subscriber):
            await client.aclose()


async def test_the_lag_of_a_consumer_group_is_printed(platform: RunningPlatform) -> None:
    await platform.settled()
    lag = icep(platform, "consumer", "lag", "notifications")
    assert lag.returncode == 0, lag.stderr
    assert platform.topic("icep.plans.events") in lag.stdout and "total lag 0" in lag.stdout
    # An active group cannot be reprocessed: the command refuses and changes nothing.
    refused = icep(platform, "consumer", "reprocess", "notifications", "--from-offset", "0", "--yes")
    assert refused.returncode == 1 and "is active" in refused.stdout, refused.stdout
