"""Conformance verifications expire on their date by the service's own schedule, each exactly once, across
restarts of the service (a restart runs the schedule again at once)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from icep.platform.db import create_engine
from icep.platform.events import decode
from icep.platform.testing import read_records, wait_for

EXPIRED = "icep.standards.conformance.expired.v1"


async def _expire_in_the_database(url: str, claim_ids: list[str]) -> None:
    """Time passes: the verifications' dates come (the API rightly refuses a date in the past)."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE conformance_claims SET expires_on = :day WHERE id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)
                ),
                {"day": dt.date.today() - dt.timedelta(days=1), "ids": claim_ids},
            )
    finally:
        await engine.dispose()


async def test_expiry_fires_exactly_once_across_restarts(kafka_bootstrap: str, start_platform: Any) -> None:
    running = await start_platform(kafka_bootstrap, {"ICEP_STANDARDS_EXPIRY_INTERVAL_SECONDS": "0.3"})
    nato = await running.as_client("nato-standards")
    deu = await running.as_client("deu-standards")
    try:
        body = {
            "kind": "STANAG",
            "number": "4569",
            "edition": 3,
            "title": "Protection levels for occupants of logistic and light armoured vehicles",
            "domain": "land",
            "levels": ["1", "2", "3", "4"],
        }
        sid = (await nato.post("/v1/standards", json=body)).json()["id"]
        await nato.post(f"/v1/standards/{sid}/circulate", headers={"If-Match": '"1"'})
        assert (
            await nato.post(f"/v1/standards/{sid}/promulgate", headers={"If-Match": '"2"'})
        ).status_code == 200
        claims = []
        for code in ("BOXER-A", "BOXER-B", "BOXER-C"):
            product = {"manufacturer": "ARTEC (synthetic)", "product_code": code, "name": "Boxer"}
            r = await deu.post(
                "/v1/standards/conformance", json={"product": product, "standard_id": sid, "level": "4"}
            )
            assert r.status_code == 201, r.text
            claims.append(r.json()["id"])
        tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
        for cid in claims[:2]:
            await nato.post(f"/v1/standards/conformance/{cid}/start-test", headers={"If-Match": '"1"'})
            r = await nato.post(
                f"/v1/standards/conformance/{cid}/verify",
                json={"expires_on": tomorrow, "evidence": ["report 1"]},
                headers={"If-Match": '"2"'},
            )
            assert r.json()["status"] == "verified"
        # The schedule runs, but nothing is due yet.
        runs = "icep_standards_expiry_runs_total"
        before = await running.metric("standards", runs, service="standards")
        await wait_for(
            lambda: _more(running, runs, before + 2),
            timeout=30,
            interval=0.1,
            what="two runs of the schedule",
        )
        assert (await deu.get(f"/v1/standards/conformance/{claims[0]}")).json()["status"] == "verified"

        # The service is down when the dates come; it catches up when it starts, and again after a restart.
        url = running.launcher.env["ICEP_STANDARDS_DATABASE_URL"]
        running.launcher.stop("standards")
        await _expire_in_the_database(url, claims)  # the third claim is not verified: it never expires
        running.launcher.start("standards")
        running.launcher.wait_ready("standards", 60, topics=True)

        async def expired_events() -> list[Any]:
            records = await read_records(running.bootstrap, running.topic("icep.standards.events"))
            return [e for e in (decode(r.key, r.value, r.headers) for r in records) if e.type == EXPIRED]

        async def both_expired() -> bool:
            return len(await expired_events()) >= 2

        await wait_for(both_expired, timeout=30, interval=0.2, what="the expired events")
        for _ in range(2):
            running.restart("standards")
            await wait_for(
                lambda: _more(running, runs, 3),
                timeout=30,
                interval=0.1,
                what="the schedule to run after restart",
            )
        await wait_for(
            lambda: _zero(running, "icep_outbox_backlog"),
            timeout=30,
            interval=0.1,
            what="the outbox to drain",
        )

        got = await expired_events()
        assert sorted(e.subject for e in got) == sorted(claims[:2])
        assert {e.data["expires_on"] for e in got} == {(dt.date.today() - dt.timedelta(days=1)).isoformat()}
        for cid in claims[:2]:
            claim = (await deu.get(f"/v1/standards/conformance/{cid}")).json()
            assert claim["status"] == "expired" and claim["history"][-1]["by"] == "schedule"
        assert (await deu.get(f"/v1/standards/conformance/{claims[2]}")).json()["status"] == "claimed"
        assert (
            await running.metric("standards", "icep_standards_conformance_expired_total", service="standards")
            == 0
        )
    finally:
        await nato.aclose()
        await deu.aclose()


async def _more(running: Any, name: str, at_least: float) -> bool:
    return await running.metric("standards", name, service="standards") >= at_least


async def _zero(running: Any, name: str) -> bool:
    return await running.metric("standards", name, service="standards") == 0
