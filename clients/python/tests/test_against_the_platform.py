"""icep-client against the real platform (Kafka, the five processes, through the gateway), as a partner
uses it: a journey through plans, the capacity picture, pagination, the feed from `latest`, the stream
resumed from `Last-Event-ID` and live; standards answers, interoperability and a joint initiative; a real
signed webhook through a subscription, taken by the receiver helper once; and the README's Python
quickstart, run as written."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from icep_client import Event, FeedEvent, IcepClient, NotFound, PreconditionFailed, Standard, WebhookReceiver

from icep.platform.kafka_local import free_port
from icep.platform.testing import wait_for

ROOT = Path(__file__).resolve().parents[3]
#: The development clients' secrets (deploy/dev-clients.toml), as tests/conftest.py has them.
DEV_SECRETS: dict[str, str] = sys.modules["tests.conftest"].DEV_SECRETS
PRODUCT = "155mm artillery round"
PLAN_EVENTS = ["icep.plans.plan.*"]


def sdk(platform: Any, client_id: str) -> IcepClient:
    return IcepClient(platform.gateway, client_id, DEV_SECRETS[client_id])


def plan_fields(title: str) -> dict[str, Any]:
    return {
        "title": title,
        "period_start": "2025-01-01",
        "period_end": "2029-12-31",
        "capability_areas": ["munitions"],
        "releasability": {"scope": "allies"},
        "content": {
            "commitments": [
                {
                    "key": "unterluess-155",
                    "product": PRODUCT,
                    "capability_area": "munitions",
                    "site": "Unterluess (synthetic figures)",
                    "site_country": "DEU",
                    "unit": "rounds",
                    "baseline_per_month": 4000,
                    "current_per_month": 8000,
                    "target_per_month": 20000,
                    "ramp": [{"on": "2026-01-01", "output_per_month": 12000}],
                    "operator": {"company": "Synthetic Munitions GmbH", "sme": False},
                }
            ]
        },
    }


async def first(events: AsyncIterator[FeedEvent], subject: str, timeout: float = 60) -> FeedEvent:
    """The first event about `subject`, then the iterator is closed (the stream's connection too)."""

    async def find() -> FeedEvent:
        async for e in events:
            if e.subject == subject:
                return e
        raise AssertionError("the events ended")

    try:
        return await asyncio.wait_for(find(), timeout)
    finally:
        await events.aclose()  # type: ignore[attr-defined]


async def test_a_partner_journey_through_the_sdk(platform: Any) -> None:
    async with sdk(platform, "deu-planner") as deu, sdk(platform, "nato-reviewer") as nato:
        start = await deu.events.latest()
        assert deu.auth.fetched == 1 and start >= 0

        # Created once, also when the call is made again with the same Idempotency-Key.
        key = str(uuid.uuid4())
        plan = await deu.plans.create(**plan_fields("SDK journey"), idempotency_key=key)
        assert (plan.status, plan.version, plan.etag) == ("draft", 1, '"1"')
        assert (await deu.plans.create(**plan_fields("SDK journey"), idempotency_key=key)).id == plan.id

        # Submitted under If-Match; the stale version then is refused with a typed error.
        submitted = await deu.plans.submit(plan)
        assert (submitted.status, submitted.etag) == ("submitted", '"2"')
        with pytest.raises(PreconditionFailed) as stale:
            await deu.plans.withdraw(plan)
        assert stale.value.status == 412 and stale.value.type.endswith("precondition-failed")
        with pytest.raises(NotFound):
            await deu.plans.get(str(uuid.uuid4()))

        # NATO reviews and accepts it: its capacity counts in the Alliance picture.
        accepted = await nato.plans.accept(await nato.plans.start_review(await nato.plans.get(plan.id)))
        assert accepted.status == "accepted"
        lines = await deu.capacity.summary(product=PRODUCT)
        assert any("DEU" in line.nations and line.committed > 0 for line in lines), lines

        # A month reported, then corrected: the history keeps who changed what, the timeline the figure.
        reported = await deu.plans.report_progress(
            accepted, "unterluess-155", month="2026-03-01", actual_output=11000
        )
        corrected = await deu.plans.report_progress(
            accepted, "unterluess-155", month="2026-03-01", actual_output=11500
        )
        assert (reported.revision, corrected.revision, corrected.previous_output) == (1, 2, 11000)
        [month] = (await deu.plans.progress_history(accepted, "unterluess-155")).items
        assert (month.actual_output, month.first_reported_by) == (11500, "deu-planner")
        assert [(c.previous_output, c.actual_output, c.corrected_by) for c in month.corrections] == [
            (11000, 11500, "deu-planner")
        ]
        timeline = await deu.capacity.timeline(product=PRODUCT, nation="DEU", first="2026-03", last="2026-03")
        assert (timeline.first, timeline.last) == ("2026-03", "2026-03")
        [deu_line] = [s for s in timeline.series if s.nation == "DEU"]
        assert [(p.month, p.committed, p.actual) for p in deu_line.points] == [
            ("2026-03", corrected.planned_output, 11500)
        ]
        # DEU's operators read the plan's audit trail as typed entries, a page of one at a time.
        async with sdk(platform, "deu-operator") as ops:
            trail = [e async for e in ops.audit.list(resource_id=plan.id, page_size=1)]
        actions = {(e.action, e.client_id, e.outcome) for e in trail}
        assert {
            ("createPlan", "deu-planner", "success"),
            ("acceptPlan", "nato-reviewer", "success"),
        } <= actions
        assert len(trail) == len({e.id for e in trail})

        chart = await deu.capacity.timeline_svg(product=PRODUCT, first="2026-01", last="2026-06")
        assert chart.lstrip().startswith(("<svg", "<?xml")) and PRODUCT.split()[0] in chart

        # A list across pages: one plan per page, every one of ours once.
        drafts = [await deu.plans.create(**plan_fields(f"SDK page {n}")) for n in range(2)]
        listed = [p.id async for p in deu.plans.list(nation="DEU", page_size=1)]
        assert {plan.id, *(d.id for d in drafts)} <= set(listed) and len(listed) == len(set(listed))

        # The feed from `latest`: the plan's events, none of before.
        seen: list[str] = []

        async def follow() -> None:
            async for e in deu.events.follow(after=start, types=PLAN_EVENTS, poll_interval=0.2):
                assert e.position > start
                if e.subject == plan.id:
                    seen.append(e.type.split(".")[3])
                # Events of different plans may come in any order (each plan's are in order): the plan's
                # last event ends the wait, not another plan's.
                if seen[-1:] == ["accepted"]:
                    return

        await asyncio.wait_for(follow(), 60)
        assert seen == ["created", "submitted", "review_started", "accepted"]

        # The stream: the first event after `start`, then resumed from its Last-Event-ID.
        created = await first(deu.events.stream(last_event_id=start, types=PLAN_EVENTS), plan.id)
        assert created.type == "icep.plans.plan.created.v1"
        resumed = await first(deu.events.stream(last_event_id=created.position, types=PLAN_EVENTS), plan.id)
        assert resumed.type == "icep.plans.plan.submitted.v1" and resumed.position > created.position

        # And live: a stream opened now gets the next plan's event as it happens. (The streams above are
        # closed at the service first, so that the one open next is this one.)
        await wait_for(lambda: streams_open(platform, 0), timeout=30, what="the streams above closed")
        live = deu.events.stream(types=PLAN_EVENTS)
        reading = asyncio.create_task(anext(live))
        try:
            await wait_for(lambda: streams_open(platform, 1), timeout=30, what="the stream open")
            fresh = await deu.plans.create(**plan_fields("SDK live"))
            got = await asyncio.wait_for(reading, 60)
            assert (got.type, got.subject) == ("icep.plans.plan.created.v1", fresh.id)
        finally:
            reading.cancel()
            with contextlib.suppress(BaseException):
                await reading
            await live.aclose()  # type: ignore[attr-defined]
        await wait_for(lambda: streams_open(platform, 0), timeout=30, what="the stream closed at the service")


async def streams_open(platform: Any, count: int) -> bool:
    found = await platform.metric("notifications", "icep_event_streams_open", service="notifications")
    return bool(found == count)


async def test_standards_answers_and_a_joint_initiative_through_the_sdk(platform: Any) -> None:
    async with (
        sdk(platform, "nato-standards") as nato,
        sdk(platform, "deu-standards") as deu,
        sdk(platform, "fra-standards") as fra,
    ):
        number = f"9{uuid.uuid4().int % 10**8:08d}"
        drafted = await nato.fetch(
            Standard,
            "POST",
            "/v1/standards",
            json={
                "kind": "STANAG",
                "number": number,
                "edition": 1,
                "title": "Protection levels for occupants of light armoured vehicles (synthetic)",
                "covering_publications": ["AEP-55"],
                "domain": "land",
                "capability_areas": ["protection"],
                "levels": ["1", "2", "3"],
            },
        )
        circulated = await nato.fetch(
            Standard, "POST", f"/v1/standards/{drafted.id}/circulate", if_match=drafted.etag
        )
        await nato.fetch(Standard, "POST", f"/v1/standards/{drafted.id}/promulgate", if_match=circulated.etag)
        assert [s.id async for s in deu.standards.search(number=number)] == [drafted.id]
        assert (await deu.standards.get(drafted.id)).status == "promulgated"

        # Each nation answers with the answer as read (If-Match), one with a reservation.
        deu_answer = await deu.standards.ratify(await deu.standards.response(drafted.id, "DEU"))
        assert (deu_answer.status, deu_answer.version) == ("ratified", 2)
        fra_answer = await fra.standards.ratify(
            await fra.standards.response(drafted.id, "FRA"),
            reservations=[{"clause": "4.2", "kind": "limited", "detail": "level 3 on wheeled vehicles only"}],
        )
        assert fra_answer.status == "ratified_with_reservations"
        assert [r.clause for r in fra_answer.reservations] == ["4.2"]
        answers = {a.nation: a.status for a in await deu.standards.responses(drafted.id)}
        assert answers["DEU"] == "ratified" and answers["FRA"] == "ratified_with_reservations"
        verdict = await deu.standards.interoperability(["DEU", "FRA"], [drafted.id])
        [pair] = verdict.pairs
        assert pair.nations == ["DEU", "FRA"] and pair.verdict and pair.reasons
        assert [s.standard_id for s in verdict.standards] == [drafted.id]

    async with sdk(platform, "deu-procurement") as lead, sdk(platform, "fra-procurement") as fra_buyer:
        product = f"155mm round {uuid.uuid4().hex[:6]} (synthetic)"
        year = datetime.date.today().year + 1
        proposed = await lead.initiatives.propose(
            title="155mm ammunition for PzH 2000 (synthetic)",
            item={"product": product, "unit": "rounds"},
            capability_area="munitions",
            participation_deadline=datetime.date.today() + datetime.timedelta(days=60),
        )
        opened = await lead.initiatives.open(proposed)
        assert (opened.status, opened.lead_nation) == ("open", "DEU")
        joined = await fra_buyer.initiatives.join(await fra_buyer.initiatives.get(opened.id), {year: 1000})
        committed = await fra_buyer.initiatives.commit(joined, {year: 800}, funded={year: 800})
        [fra_part] = [p for p in committed.participations if p.nation == "FRA"]
        assert (fra_part.status, fra_part.firm) == ("committed", {str(year): 800})
        assert [i.id async for i in lead.initiatives.list(product=product, page_size=1)] == [opened.id]


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        await wait_for(lambda: server.started, timeout=10, what="the webhook receiver")
        yield f"http://127.0.0.1:{port}/hooks"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


async def test_a_signed_webhook_reaches_the_receiver_once(platform: Any) -> None:
    handed: list[Event] = []
    receivers: list[WebhookReceiver] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receivers[0](scope, receive, send)

    async with serving(app) as url, sdk(platform, "deu-planner") as deu:
        subscription = await deu.subscriptions.create(url, event_types=PLAN_EVENTS, description="icep-client")
        assert subscription.secret.startswith("whsec_")
        receivers.append(WebhookReceiver(subscription.secret, handed.append))
        receiver = receivers[0]
        assert subscription.id in {s.id for s in await deu.subscriptions.list()}

        plan = await deu.plans.create(**plan_fields("SDK webhook"))
        await wait_for(lambda: bool(handed), timeout=60, what="the plan's webhook")
        [event] = handed
        assert (event.type, event.subject) == ("icep.plans.plan.created.v1", plan.id)

        async def delivered() -> Any:
            found = [d async for d in deu.subscriptions.deliveries(subscription, status="delivered")]
            return found or None

        [delivery] = await wait_for(delivered, timeout=30, what="the delivery recorded")
        assert delivery.event_id == event.id
        # Sent again by the platform (same webhook-id): answered, not handed over twice.
        await deu.subscriptions.redeliver(subscription, delivery.id)
        await wait_for(lambda: receiver.duplicates == 1, timeout=60, what="the redelivery received")
        assert [e.id for e in handed] == [event.id] and receiver.rejected == 0

        paused = await deu.subscriptions.pause(subscription)
        assert paused.status == "paused"
        await deu.subscriptions.delete(paused)
        with pytest.raises(NotFound):
            await deu.subscriptions.get(subscription.id)


QUICKSTART_HEADING = "### In Python, with icep-client"
_PYTHON = re.compile(r"^```python\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def python_quickstart(readme: str) -> str:
    """The one `python` block under the README's Python quickstart heading."""
    assert readme.count(f"\n{QUICKSTART_HEADING}\n") == 1, f"README.md has no single {QUICKSTART_HEADING!r}"
    section = readme.split(f"\n{QUICKSTART_HEADING}\n", 1)[1]
    section = re.split(r"\n#{1,3} ", section, maxsplit=1)[0]
    blocks = _PYTHON.findall(section)
    assert len(blocks) == 1, f"{QUICKSTART_HEADING!r} has {len(blocks)} python blocks; one is expected"
    return str(blocks[0])


async def test_the_readme_python_quickstart_works_as_written(platform: Any, tmp_path: Path) -> None:
    script = tmp_path / "quickstart.py"
    script.write_text(python_quickstart((ROOT / "README.md").read_text()))
    reader = {k: v for k, v in os.environ.items() if k not in ("ICEP", "CLIENT_ID", "CLIENT_SECRET")}
    env = {
        **reader,
        "ICEP": platform.gateway,
        "CLIENT_ID": "deu-planner",
        "CLIENT_SECRET": DEV_SECRETS["deu-planner"],
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 120)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = output.decode()
    assert process.returncode == 0, text
    [plan_line] = [line for line in text.splitlines() if line.startswith("plan ")]
    _, plan_id, status = plan_line.split()
    assert status == "submitted"
    assert f"listed {plan_id}" in text.splitlines()
    events = [line for line in text.splitlines() if line.startswith("event ") and line.endswith(plan_id)]
    assert events == [
        f"event icep.plans.plan.created.v1 {plan_id}",
        f"event icep.plans.plan.submitted.v1 {plan_id}",
    ]
    async with sdk(platform, "deu-planner") as deu:
        assert (await deu.plans.get(plan_id)).status == "submitted"
