"""Faults lose nothing and do nothing twice: broker down, crashes around publish and offset commit.

Each test drives the platform through the gateway, breaks one thing for real (stops the broker, ends a
process at a named crash point, as `kill -9` would), repairs it, and then checks every event arrived
exactly once at a real webhook receiver.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from icep.platform.events import decode
from icep.platform.kafka_local import LocalKafka, fetch_jars, free_port
from icep.platform.testing import WebhookReceiver, read_records, wait_for

CREATED = "icep.plans.plan.created.v1"
SUBMITTED = "icep.plans.plan.submitted.v1"


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalKafka]:
    """A broker this test may stop and start again (the shared one must stay up for the others)."""
    fetch_jars()
    broker = LocalKafka(data_dir=tmp_path / "kafka", port=free_port(), controller_port=free_port())
    broker.start()
    try:
        broker.wait_ready(120)
        yield broker
    finally:
        broker.stop()


async def subscribe(client: httpx.AsyncClient, url: str, types: list[str]) -> str:
    r = await client.post("/v1/subscriptions", json={"url": url, "event_types": types})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def hook_ids(receiver: WebhookReceiver) -> Counter[str]:
    return Counter(r.headers["webhook-id"] for r in receiver.received())


#: The processes that use Kafka (the gateway does not), and those with a client busy during the outage below
#: (plans' relay has rows to send, procurement and notifications consume; standards' relay has nothing to send
#: and so no producer yet).
KAFKA_USERS = ("plans", "procurement", "standards", "notifications")
BUSY_DURING_OUTAGE = ("plans", "procurement", "notifications")


def aiokafka_lines(log: Path, since: int) -> list[dict[str, Any]]:
    """The lines aiokafka's loggers wrote to a process's log after byte `since`."""
    lines = []
    for text in log.read_bytes()[since:].decode(errors="replace").splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if isinstance(line, dict) and str(line.get("logger", "")).startswith("aiokafka"):
            lines.append(line)
    return lines


def outage_clients(lines: list[dict[str, Any]], kind: str) -> Counter[str]:
    return Counter(str(line["kafka_client"]) for line in lines if line.get("kafka_outage") == kind)


async def test_broker_down_while_plans_are_submitted(
    start_platform: Any,
    own_broker: LocalKafka,
    plan_body: Callable[..., dict[str, Any]],
    receiver: WebhookReceiver,
) -> None:
    platform = await start_platform(own_broker.bootstrap_servers)
    deu = await platform.as_client("deu-planner")
    logs = {name: platform.launcher.processes[name].log_path for name in KAFKA_USERS}
    try:
        await subscribe(deu, receiver.url, [SUBMITTED])
        before = {name: log.stat().st_size for name, log in logs.items()}
        own_broker.stop()
        plan_ids = []
        for n in range(3):
            plan = (await deu.post("/v1/plans", json=plan_body(f"Plan {n}"))).json()
            r = await deu.post(f"/v1/plans/{plan['id']}/submit", headers={"If-Match": '"1"'})
            assert r.status_code == 200, r.text  # the API does not need the broker: the outbox keeps it
            plan_ids.append(plan["id"])
        assert receiver.received() == []
        # Every process using Kafka notices the outage (aiokafka retries many times a second meanwhile) ...
        for name in BUSY_DURING_OUTAGE:
            log = logs[name]
            await wait_for(
                lambda log=log, name=name: outage_clients(aiokafka_lines(log, before[name]), "started"),
                timeout=30,
                what=f"{name}'s outage warning",
            )
        own_broker.start()
        own_broker.wait_ready(120)

        await wait_for(
            lambda: len(receiver.received()) >= 3, timeout=60, what="three webhooks after the broker is back"
        )
        # ... and says once per client that it lost the broker, and once that it has it again (when it next
        # talks to the broker: the consumers at once, plans' relay as it sends the backlog; a producer with
        # nothing to send says so at its next send).
        for name, client in [
            ("plans", "outbox producer"),
            ("procurement", "consumer"),
            ("notifications", "consumer"),
        ]:
            log = logs[name]
            await wait_for(
                lambda log=log, name=name, client=client: any(
                    c.startswith(client) for c in outage_clients(aiokafka_lines(log, before[name]), "ended")
                ),
                timeout=30,
                what=f"{name}'s {client} connected again",
            )
        for name, log in logs.items():
            lines = aiokafka_lines(log, before[name])
            started = outage_clients(lines, "started")
            assert all(n == 1 for n in started.values()), (name, started)
            assert started or name not in BUSY_DURING_OUTAGE
            assert set(outage_clients(lines, "ended")) <= set(started)
            assert all(n == 1 for n in outage_clients(lines, "ended").values())
            assert all(line["level"] == "WARNING" for line in lines if line.get("kafka_outage") == "started")
            # Beyond those: a few lines at most (a broker answering while it settles), not thousands.
            others = [line for line in lines if "kafka_outage" not in line]
            assert len(others) <= 5, (name, [line["message"] for line in others])
        await platform.settled()
        subjects = sorted(r.json()["subject"] for r in receiver.received())
        assert subjects == sorted(plan_ids)
        records = await read_records(
            own_broker.bootstrap_servers, platform.topic("icep.plans.events"), expect=6
        )
        on_kafka = Counter((e.type, e.subject) for e in (decode(r.key, r.value, r.headers) for r in records))
        assert on_kafka == Counter({(t, p): 1 for p in plan_ids for t in (CREATED, SUBMITTED)})
        assert all(n == 1 for n in hook_ids(receiver).values())
    finally:
        await deu.aclose()


async def test_plans_killed_after_commit_before_publish(
    start_platform: Any,
    kafka_bootstrap: str,
    plan_body: Callable[..., dict[str, Any]],
    receiver: WebhookReceiver,
) -> None:
    platform = await start_platform(kafka_bootstrap)
    platform.restart("plans", {"ICEP_FAULTS": "relay.before_publish"})
    deu = await platform.as_client("deu-planner")
    try:
        await subscribe(deu, receiver.url, [CREATED])
        created = await deu.post("/v1/plans", json=plan_body("Committed, never published"))
        assert created.status_code == 201
        plans = platform.launcher.processes["plans"]
        await wait_for(lambda: not plans.alive(), timeout=30, what="plans to crash before publishing")
        assert plans.process.returncode == 86
        assert receiver.received() == []

        platform.restart("plans", {"ICEP_FAULTS": ""})
        await wait_for(receiver.received, timeout=30, what="the event after the restart")
        await platform.settled()
        [hook] = receiver.received()
        assert hook.json()["subject"] == created.json()["id"]
        records = await read_records(kafka_bootstrap, platform.topic("icep.plans.events"), expect=1)
        ids = [
            e.id
            for e in (decode(r.key, r.value, r.headers) for r in records)
            if e.subject == created.json()["id"]
        ]
        assert ids == [hook.headers["webhook-id"]]  # published once, delivered once
    finally:
        await deu.aclose()


async def test_plans_killed_after_publish_before_marking_sent(
    start_platform: Any,
    kafka_bootstrap: str,
    plan_body: Callable[..., dict[str, Any]],
    receiver: WebhookReceiver,
) -> None:
    platform = await start_platform(kafka_bootstrap)
    platform.restart("plans", {"ICEP_FAULTS": "relay.after_publish"})
    deu = await platform.as_client("deu-planner")
    try:
        await subscribe(deu, receiver.url, [CREATED])
        created = (await deu.post("/v1/plans", json=plan_body("Published, not marked"))).json()
        plans = platform.launcher.processes["plans"]
        await wait_for(lambda: not plans.alive(), timeout=30, what="plans to crash after publishing")
        platform.restart("plans", {"ICEP_FAULTS": ""})

        async def published_twice() -> list[str]:
            records = await read_records(
                kafka_bootstrap, platform.topic("icep.plans.events"), expect=1, timeout=2
            )
            ids = [
                e.id
                for e in (decode(r.key, r.value, r.headers) for r in records)
                if e.subject == created["id"]
            ]
            return ids if len(ids) == 2 else []

        first, second = await wait_for(published_twice, timeout=30, what="the relay to publish the row again")
        assert first == second  # the same CloudEvent id both times
        await wait_for(
            lambda: platform.metric("notifications", "icep_consumer_handled_total", outcome="duplicate"),
            timeout=30,
            what="notifications to see the duplicate",
        )
        await wait_for(receiver.received, timeout=30, what="the webhook")
        await platform.settled()
        assert hook_ids(receiver) == Counter({first: 1})
    finally:
        await deu.aclose()


async def test_notifications_killed_after_handling_before_offset_commit(
    start_platform: Any,
    kafka_bootstrap: str,
    plan_body: Callable[..., dict[str, Any]],
    receiver: WebhookReceiver,
) -> None:
    platform = await start_platform(kafka_bootstrap)
    deu = await platform.as_client("deu-planner")
    try:
        await subscribe(deu, receiver.url, [CREATED])
        platform.restart("notifications", {"ICEP_FAULTS": "consumer.before_commit"})
        created = (await deu.post("/v1/plans", json=plan_body("Handled, offset not committed"))).json()
        notifications = platform.launcher.processes["notifications"]
        await wait_for(
            lambda: not notifications.alive(), timeout=30, what="notifications to crash before committing"
        )
        platform.restart("notifications", {"ICEP_FAULTS": ""})

        await wait_for(
            lambda: platform.metric("notifications", "icep_consumer_handled_total", outcome="duplicate"),
            timeout=30,
            what="the redelivered record to be recognised as a duplicate",
        )
        await wait_for(receiver.received, timeout=30, what="the webhook")
        await platform.settled()
        [hook] = receiver.received()
        assert hook.json()["subject"] == created["id"]
        listing = (await deu.get("/v1/subscriptions")).json()["items"]
        deliveries = (await deu.get(f"/v1/subscriptions/{listing[0]['id']}/deliveries")).json()["items"]
        assert [(d["event_type"], d["status"]) for d in deliveries] == [(CREATED, "delivered")]
        assert len(receiver.received()) == 1
    finally:
        await deu.aclose()
