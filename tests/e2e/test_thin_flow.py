"""The walking skeleton end to end, through the gateway, as a partner system would use it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
from standardwebhooks import Webhook

from icep.platform.events import decode
from icep.platform.testing import WebhookReceiver, read_records, wait_for

SUBMITTED = "icep.plans.plan.submitted.v1"


async def subscribe(client: httpx.AsyncClient, url: str, types: list[str]) -> dict[str, Any]:
    r = await client.post("/v1/subscriptions", json={"url": url, "description": "e2e", "event_types": types})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    assert body["secret"].startswith("whsec_")
    return body


async def test_submitted_plan_reaches_the_subscriber_signed_and_traced(
    start_platform: Any,
    kafka_bootstrap: str,
    plan_body: Callable[..., dict[str, Any]],
    receiver: WebhookReceiver,
) -> None:
    platform = await start_platform(kafka_bootstrap, traced=True)  # its spans are read below
    deu = await platform.as_client("deu-planner")
    fra = await platform.as_client("fra-planner")
    other = WebhookReceiver().start()
    try:
        sub = await subscribe(deu, receiver.url, ["icep.plans.plan.submitted.*"])
        fra_sub = await subscribe(fra, other.url, ["icep.plans.*"])
        # The secret is shown once: reading the subscription again does not reveal it.
        again = await deu.get(f"/v1/subscriptions/{sub['id']}")
        assert again.status_code == 200 and "secret" not in again.json()

        created = await deu.post("/v1/plans", json=plan_body())
        assert created.status_code == 201, created.text
        plan = created.json()
        assert plan["status"] == "draft" and plan["nation"] == "DEU"
        submitted = await deu.post(
            f"/v1/plans/{plan['id']}/submit", headers={"If-Match": created.headers["ETag"]}
        )
        assert submitted.status_code == 200, submitted.text
        assert submitted.json()["status"] == "submitted"

        [hook] = await wait_for(receiver.received, timeout=30, what="the webhook")
        # Signature per Standard Webhooks, checked with the reference library.
        payload = Webhook(sub["secret"]).verify(hook.body, hook.headers)
        assert payload["type"] == SUBMITTED
        assert payload["subject"] == plan["id"]
        assert payload["source"] == "/icep/plans"
        assert payload["data"]["plan_id"] == plan["id"]
        assert payload["data"]["submitted_by"] == "deu-planner"
        assert payload["data"]["version"] == 2
        # One id from end to end: the CloudEvent id on Kafka is the webhook-id.
        records = await read_records(kafka_bootstrap, platform.topic("icep.plans.events"), expect=2)
        events = [decode(r.key, r.value, r.headers) for r in records]
        [on_kafka] = [e for e in events if e.type == SUBMITTED and e.subject == plan["id"]]
        assert hook.headers["webhook-id"] == on_kafka.id == payload["id"]

        # FRA may not see a German draft's submission: no delivery was even created for it.
        fra_deliveries = await fra.get(f"/v1/subscriptions/{fra_sub['id']}/deliveries")
        assert fra_deliveries.status_code == 200 and fra_deliveries.json()["items"] == []
        assert other.received() == []
        # And FRA cannot read DEU's subscription either.
        assert (await fra.get(f"/v1/subscriptions/{sub['id']}")).status_code == 404

        # One trace: gateway -> plans -> Kafka -> notifications -> webhook.
        trace_id = hook.headers["traceparent"].split("-")[1]

        def spans_in_trace() -> set[tuple[str, str]]:
            return {(s.service, s.name) for s in platform.collector.collected() if s.trace_id == trace_id}

        # Spans arrive in batches, in no particular order: wait for the ones that prove the chain.
        expected = {
            ("icep-plans", f"send {platform.topic('icep.plans.events')}"),
            ("icep-notifications", f"process {platform.topic('icep.plans.events')}"),
            ("icep-notifications", "webhook deliver"),
        }
        found = await wait_for(
            lambda: expected <= spans_in_trace() and spans_in_trace(),
            timeout=30,
            what="publish, process and deliver spans in the webhook's trace",
        )
        assert {"icep-gateway", "icep-plans", "icep-notifications"} <= {service for service, _ in found}

        # The JSON log line of the submission carries the same trace id.
        log_lines = [json.loads(line) for line in platform.launcher.log_tail("plans", 500).splitlines()]
        [submit_log] = [e for e in log_lines if plan["id"] in e["message"] and "submitted" in e["message"]]
        assert submit_log["trace_id"] == trace_id and submit_log["service"] == "plans"
    finally:
        other.stop()
        await deu.aclose()
        await fra.aclose()


async def test_failed_deliveries_are_retried_and_recorded(
    start_platform: Any,
    kafka_bootstrap: str,
    plan_body: Callable[..., dict[str, Any]],
    receiver: WebhookReceiver,
) -> None:
    platform = await start_platform(kafka_bootstrap)
    receiver.script = [500, 503]
    deu = await platform.as_client("deu-planner")
    try:
        sub = await subscribe(deu, receiver.url, ["icep.plans.*"])
        plan = (await deu.post("/v1/plans", json=plan_body())).json()
        await wait_for(lambda: len(receiver.received()) == 3, timeout=30, what="two failures and a success")
        ids = {r.headers["webhook-id"] for r in receiver.received()}
        assert len(ids) == 1  # the same message each time, so the receiver can deduplicate

        async def delivered() -> dict[str, Any] | None:
            items = (await deu.get(f"/v1/subscriptions/{sub['id']}/deliveries")).json()["items"]
            return items[0] if items and items[0]["status"] == "delivered" else None

        delivery = await wait_for(delivered, timeout=10, what="the delivery marked delivered")
        assert delivery["event_type"] == "icep.plans.plan.created.v1"
        assert delivery["attempts"] == 3
        assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 503, 204]
        assert plan["id"]
    finally:
        await deu.aclose()
