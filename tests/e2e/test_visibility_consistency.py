"""One visibility rule for reads and for events (issue 12, item 3).

The platform is started once. Each nation with development clients (deploy/dev-clients.toml) has one
subscriber, whose webhook subscription (to a real local receiver) and event feed take every event of the
producing services. Then every event type of plans, procurement and standards is driven through the
gateway, and after each action, for each event it raised:

- the nations whose subscribers received it by webhook are the nations whose feed shows it (the feed says
  also what a nation did not get: each page tells how far it looked);
- those nations are the nations whose development clients read the event's subject with 200 (every client
  of a nation answers alike: reading needs no role), unless the event's contract declares another
  audience (`EventPayload.audience`): `narrower` (only the named among the readers) or `wider` (the
  readers of the part it carries: for a plan's capacity figures, who sees them in the capacity summary).

A contract event type that is not driven fails the test, as a new operation fails the authorization
matrix.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import sqlalchemy as sa

import icep.contracts.plans
import icep.contracts.procurement
import icep.contracts.standards
from icep.contracts.base import Audience, EventPayload, all_event_types
from icep.platform.db import create_engine
from icep.platform.testing import WebhookReceiver, wait_for
from tests.conftest import DEV_SECRETS, FreshToken

PRODUCERS = (icep.contracts.plans, icep.contracts.procurement, icep.contracts.standards)


def today() -> dt.date:
    """The date now, asked at each use: a run that crosses midnight (UTC) must not compare with the date
    the module was imported on."""
    return dt.datetime.now(dt.UTC).date()


Y1 = str(today().year + 1)
TAG = uuid.uuid4().hex[:8]

#: Each nation's subscriber: its webhooks and its feed.
SUBSCRIBERS = {
    "DEU": "deu-subscriber",
    "FRA": "fra-planner",
    "POL": "pol-standards",
    "NLD": "nld-procurement",
    "NATO": "nato-standards",
    "UKR": "ukr-partner",
}
NATIONS = tuple(SUBSCRIBERS)
#: Every development client reads, by its nation.
READERS = {cid: cid.split("-")[0].upper() for cid in DEV_SECRETS}

#: Where a client reads the aggregate an event's subject names.
AGGREGATE_PATHS = {
    "plan": "/v1/plans/{}",
    "capability_target": "/v1/capacity/targets/{}",
    "standard": "/v1/standards/{}",
    "conformance": "/v1/standards/conformance/{}",
    "interchangeability": "/v1/interchangeability/clearances/{}",
    "initiative": "/v1/initiatives/{}",
    "supplier": "/v1/suppliers/{}",
    "demand_signal": "/v1/demand/signals/{}",
}
#: The parts an event may declare released wider than its aggregate, and how this test reads them.
WIDER_PARTS = {"capacity figures"}


def contract_types() -> dict[str, type[EventPayload]]:
    """Every event type of the producing services, from their contracts modules."""
    names = {m.__name__ for m in PRODUCERS}
    return {t: c for t, c in all_event_types().items() if c.__module__ in names}


def aggregate_path(event: dict[str, Any]) -> str:
    model = all_event_types()[event["type"]]
    if model.aggregate == "response":
        standard_id, nation = str(event["subject"]).rsplit(":", 1)
        return f"/v1/standards/{standard_id}/responses/{nation}"
    return AGGREGATE_PATHS[model.aggregate].format(event["subject"])


def test_every_event_declares_a_checkable_audience() -> None:
    """Declarations name payload fields that exist, a part this test can read, and a reason."""
    for event_type, model in contract_types().items():
        audience = model.audience
        assert isinstance(audience, Audience), event_type
        if audience.relation == "same_as_aggregate":
            assert not audience.only and not audience.part, event_type
            continue
        assert audience.reason.strip(), event_type
        if audience.relation == "narrower":
            assert audience.only, event_type
            for name in audience.only:
                assert name == "NATO" or name in model.model_fields, (event_type, name)
        else:
            assert audience.part in WIDER_PARTS, (event_type, audience.part)
        model_path = aggregate_path({"type": event_type, "subject": "x:DEU"})
        assert model_path.startswith("/v1/"), event_type


# --- the harness ----------------------------------------------------------------------------------------


@dataclass
class Harness:
    clients: dict[str, httpx.AsyncClient]
    receiver: WebhookReceiver
    cursors: dict[str, int | None] = field(default_factory=lambda: dict.fromkeys(NATIONS))
    #: nation -> event id -> the event as its feed showed it
    feed: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {n: {} for n in NATIONS})
    checked: set[str] = field(default_factory=set)
    driven: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    async def act(
        self, client_id: str, method: str, path: str, body: Any = None, version: int | str | None = None
    ) -> dict[str, Any]:
        headers = {} if version is None else {"If-Match": "*" if version == "*" else f'"{version}"'}
        r = await self.clients[client_id].request(method, path, json=body, headers=headers)
        assert r.status_code in (200, 201), f"{client_id} {method} {path}: {r.status_code} {r.text}"
        return dict(r.json())

    # -- what each nation's subscriber got

    async def _poll(self, nation: str) -> None:
        client = self.clients[SUBSCRIBERS[nation]]
        while True:
            cursor = self.cursors[nation]
            params: dict[str, Any] = {"limit": 500, **({} if cursor is None else {"after": cursor})}
            r = await client.get("/v1/events", params=params)
            assert r.status_code == 200, r.text
            page = r.json()
            for item in page["items"]:
                self.feed[nation][item["id"]] = item
            self.cursors[nation] = page["last_position"]
            if not page["more"]:
                return

    async def poll(self) -> None:
        await asyncio.gather(*(self._poll(n) for n in NATIONS))

    def unchecked(self) -> dict[str, dict[str, Any]]:
        return {i: e for n in NATIONS for i, e in self.feed[n].items() if i not in self.checked}

    def in_feed(self, event_id: str) -> set[str]:
        return {n for n in NATIONS if event_id in self.feed[n]}

    def by_webhook(self) -> dict[str, set[str]]:
        got: dict[str, set[str]] = {}
        for request in self.receiver.received():
            got.setdefault(request.json()["id"], set()).add(request.path.rsplit("/", 1)[1])
        return got

    # -- who reads

    async def _nations_reading(self, path: str, readable: Any = None) -> set[str]:
        clients = list(self.clients)
        answers = await asyncio.gather(*(self.clients[c].get(path) for c in clients))
        by_nation: dict[str, set[bool]] = {}
        for cid, r in zip(clients, answers, strict=True):
            assert r.status_code in (200, 404), f"{cid} GET {path}: {r.status_code} {r.text}"
            seen = r.status_code == 200 and (readable is None or readable(r.json()))
            by_nation.setdefault(READERS[cid], set()).add(seen)
        for nation, seen in by_nation.items():
            if len(seen) > 1:
                self.problems.append(f"GET {path}: {nation}'s clients answer differently (a role-based read)")
        return {n for n, seen in by_nation.items() if True in seen}

    async def expected(self, event: dict[str, Any]) -> set[str]:
        """The nations that should receive `event`: its aggregate's readers, as its contract declares."""
        audience = all_event_types()[event["type"]].audience.for_payload(event["data"])
        readers = await self._nations_reading(aggregate_path(event))
        if audience.relation == "narrower":
            named = {str(event["data"][f]) for f in audience.only if f != "NATO"}
            return readers & (named | ({"NATO"} & set(audience.only)))
        if audience.relation == "wider":
            data = event["data"]
            path = f"/v1/capacity/summary?product={data['product']}&nation={data['nation']}"
            figures = await self._nations_reading(
                path, lambda body: any(line["committed"] > 0 for line in body["items"])
            )
            if not readers <= figures:
                self.problems.append(f"{event['type']}: the plan's readers {readers} do not see its figures")
            return figures
        return readers

    # -- one action, checked

    async def check(self, what: str, *expect: tuple[str, str]) -> None:
        """Wait for the events `expect` ((type without `icep.` and `.v1`, subject)) the action raised, then
        compare, for every event not checked yet, who got it with who should."""
        wanted = {(f"icep.{t}.v1", s) for t, s in expect}
        assert all(t in contract_types() for t, _ in wanted), wanted

        async def arrived() -> bool:
            await self.poll()
            return wanted <= {(e["type"], e["subject"]) for e in self.unchecked().values()}

        await wait_for(arrived, timeout=60, interval=0.1, what=f"the events of {what}")
        await self.poll()  # every feed has now looked past these events
        events = self.unchecked()
        last = max(e["position"] for e in events.values())
        assert all((self.cursors[n] or 0) >= last for n in NATIONS), (self.cursors, last)

        def webhooks_in() -> bool:
            got = self.by_webhook()
            return all(self.in_feed(i) <= got.get(i, set()) for i in events)

        await wait_for(webhooks_in, timeout=60, interval=0.1, what=f"the webhooks of {what}")
        webhooks = self.by_webhook()
        expected = await asyncio.gather(*(self.expected(e) for e in events.values()))
        for (event_id, event), should in zip(events.items(), expected, strict=True):
            feed, hooks = self.in_feed(event_id), webhooks.get(event_id, set())
            label = f"{what}: {event['type']} (releasableto {event['releasableto']})"
            declared = all_event_types()[event["type"]].subject.of(event["data"])
            if event["subject"] != declared:
                # The API documents state each type's subject from this declaration.
                self.problems.append(f"{label}: subject {event['subject']!r}, declared {declared!r}")
            if hooks != feed:
                self.problems.append(f"{label}: webhooks to {sorted(hooks)}, feed to {sorted(feed)}")
            if feed != should:
                self.problems.append(f"{label}: received by {sorted(feed)}, read by {sorted(should)}")
            self.checked.add(event_id)
            self.driven.add(event["type"])


async def _expire_claims(url: str, claim_ids: list[str]) -> None:
    """Time passes: the verification's date comes (the API rightly refuses a date in the past)."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE conformance_claims SET expires_on = :day WHERE id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)
                ),
                {"day": today() - dt.timedelta(days=1), "ids": claim_ids},
            )
    finally:
        await engine.dispose()


def later(days: int) -> str:
    return (today() + dt.timedelta(days=days)).isoformat()


def plan_body(start: int, product: str, **releases: Any) -> dict[str, Any]:
    return {
        "title": f"VIS plan {TAG}",
        "period_start": f"{start}-01-01",
        "period_end": f"{start + 4}-12-31",
        "capability_areas": ["munitions"],
        **releases,
        "content": {
            "commitments": [
                {
                    "key": "line-1",
                    "product": product,
                    "capability_area": "munitions",
                    "site": "Line 1 (synthetic)",
                    "site_country": "DEU",
                    "unit": "rounds",
                    "baseline_per_month": 1000,
                    "current_per_month": 1000,
                    "target_per_month": 3000,
                    "ramp": [{"on": f"{start + 1}-01-01", "output_per_month": 3000}],
                    "surge_per_month": None,
                    "surge_days": None,
                    "lead_time_days": 365,
                    "operator": {"company": "Synthetic Munitions GmbH", "sme": True},
                }
            ],
            "measures": [],
        },
    }


def standard_body(number: str, edition: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "STANAG",
        "number": number,
        "edition": edition,
        "title": f"VIS standard {TAG}",
        "domain": "land",
        "capability_areas": ["protection"],
        "levels": ["1", "2"],
        **extra,
    }


def supplier_body(name: str, country: str, **extra: Any) -> dict[str, Any]:
    code = uuid.uuid4().hex[:8]
    return {
        "organisation_id": f"VIS-{code}",
        "name": f"{name} {code} (synthetic)",
        "scale": "sme",
        "country_of_incorporation": country,
        "products": [f"VIS-{code}"],
        **extra,
    }


def initiative_body(product: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": f"VIS initiative {TAG}",
        "item": {"product": product, "unit": "rounds", "classification_scheme": "CPV"},
        "capability_area": "munitions",
        "participation_deadline": later(60),
        **extra,
    }


# --- the test ---------------------------------------------------------------------------------------------


async def test_readers_of_every_aggregate_are_the_receivers_of_its_events(
    kafka_bootstrap: str, start_platform: Any
) -> None:
    platform = await start_platform(kafka_bootstrap, {"ICEP_STANDARDS_EXPIRY_INTERVAL_SECONDS": "0.3"})
    receiver = WebhookReceiver().start()
    clients = {
        cid: httpx.AsyncClient(base_url=platform.gateway, auth=FreshToken(platform, cid), timeout=30)
        for cid in READERS
    }
    h = Harness(clients, receiver)
    try:
        for nation, cid in SUBSCRIBERS.items():
            await h.act(
                cid,
                "POST",
                "/v1/subscriptions",
                {
                    "url": f"{receiver.url}/{nation}",
                    "event_types": ["icep.plans.*", "icep.procurement.*", "icep.standards.*"],
                },
            )
        await _plans(h)
        await _standards(h, platform)
        await _procurement(h)

        # Every webhook due has come, and none more.
        def settled() -> bool:
            got = h.by_webhook()
            return all(h.in_feed(i) == got.get(i, set()) for i in h.checked)

        await wait_for(settled, timeout=60, interval=0.2, what="every webhook, and none more")
    finally:
        receiver.stop()
        for c in clients.values():
            await c.aclose()

    assert not h.problems, "\n".join(h.problems)
    missing = set(contract_types()) - h.driven
    assert not missing, f"event types not driven (add them to this test): {sorted(missing)}"


async def _plans(h: Harness) -> None:
    deu, nato = "deu-planner", "nato-reviewer"
    # A plan released to FRA, its capacity figures to the Allies and Ukraine; returned once, then accepted.
    a = await h.act(
        deu,
        "POST",
        "/v1/plans",
        plan_body(
            2030,
            f"VIS-A-{TAG}",
            releasability={"scope": "nations", "nations": ["FRA"]},
            capacity_releasability={"scope": "allies_partners", "nations": ["UKR"]},
        ),
    )
    pa = a["id"]
    await h.check("a draft", ("plans.plan.created", pa))
    await h.act(deu, "POST", f"/v1/plans/{pa}/submit", version="*")
    await h.check("a submission", ("plans.plan.submitted", pa))
    await h.act(nato, "POST", f"/v1/plans/{pa}/start-review", version="*")
    await h.check("a review", ("plans.plan.review_started", pa))
    await h.act(nato, "POST", f"/v1/plans/{pa}/return", {"reasons": ["ramp unclear"]}, version="*")
    await h.check("a return", ("plans.plan.returned", pa))
    await h.act(deu, "POST", f"/v1/plans/{pa}/redraft", version="*")  # the owner's business alone
    await h.act(deu, "POST", f"/v1/plans/{pa}/submit", version="*")
    await h.check("a second submission", ("plans.plan.submitted", pa))
    await h.act(nato, "POST", f"/v1/plans/{pa}/start-review", version="*")
    await h.check("a second review", ("plans.plan.review_started", pa))
    a = await h.act(nato, "POST", f"/v1/plans/{pa}/accept", version="*")
    await h.check("an acceptance", ("plans.plan.accepted", pa), ("plans.capacity.committed", pa))
    await h.act(
        deu,
        "POST",
        f"/v1/plans/{pa}/commitments/line-1/progress",
        {"month": "2031-03-01", "actual_output": 10},
        version=a["version"],
    )
    await h.check("a shortfall", ("plans.progress.reported", pa), ("plans.shortfall.detected", pa))
    await h.act(
        deu,
        "POST",
        f"/v1/plans/{pa}/release",
        {"releasability": {"scope": "nations", "nations": ["FRA", "POL"]}, "capacity_releasability": None},
        version="*",
    )
    await h.check("a release", ("plans.plan.released", pa))

    # A newer national plan for the same period supersedes it.
    b = await h.act(
        deu, "POST", "/v1/plans", plan_body(2030, f"VIS-B-{TAG}", releasability={"scope": "national"})
    )
    pb = b["id"]
    await h.check("a second draft", ("plans.plan.created", pb))
    for who, action, event in (
        (deu, "submit", "submitted"),
        (nato, "start-review", "review_started"),
    ):
        await h.act(who, "POST", f"/v1/plans/{pb}/{action}", version="*")
        await h.check(f"the second plan {action}", (f"plans.plan.{event}", pb))
    await h.act(nato, "POST", f"/v1/plans/{pb}/accept", version="*")
    await h.check(
        "a superseding acceptance",
        ("plans.plan.accepted", pb),
        ("plans.capacity.committed", pb),
        ("plans.plan.superseded", pa),
    )

    # Withdrawn after submission (NATO saw it), and straight from draft (it never did).
    for submit in (True, False):
        c = await h.act(deu, "POST", "/v1/plans", plan_body(2040, f"VIS-C-{TAG}"))
        await h.check("a draft to withdraw", ("plans.plan.created", c["id"]))
        if submit:
            await h.act(deu, "POST", f"/v1/plans/{c['id']}/submit", version="*")
            await h.check("a submission to withdraw", ("plans.plan.submitted", c["id"]))
        await h.act(deu, "POST", f"/v1/plans/{c['id']}/withdraw", version="*")
        await h.check("a withdrawal", ("plans.plan.withdrawn", c["id"]))

    target = await h.act(
        nato,
        "PUT",
        "/v1/capacity/targets",
        {
            "capability_area": "munitions",
            "product": f"VIS-T-{TAG}",
            "year": 2031,
            "required_quantity": 5000,
            "unit": "rounds",
        },
    )
    await h.check("a capability target", ("plans.capability_target.set", target["id"]))


async def _standards(h: Harness, platform: Any) -> None:
    staff, deu, fra = "nato-standards", "deu-standards", "fra-standards"
    number = f"9{uuid.uuid4().int % 10**7:07d}"
    to_ukr = {"releasability": {"scope": "allies_partners", "nations": ["UKR"]}}
    e1 = (await h.act(staff, "POST", "/v1/standards", standard_body(number, **to_ukr)))["id"]
    await h.check("a draft standard", ("standards.standard.drafted", e1))
    await h.act(staff, "POST", f"/v1/standards/{e1}/circulate", version="*")
    await h.check("a circulation", ("standards.standard.circulated", e1))
    answers = f"/v1/standards/{e1}/responses"
    reservation = {"clause": "4.2.1", "kind": "limited", "detail": "synthetic limits"}
    await h.act(deu, "POST", f"{answers}/DEU/ratify", {"reservations": [reservation]}, version="*")
    await h.check("a ratification", ("standards.response.ratified", f"{e1}:DEU"))
    await h.act(staff, "POST", f"/v1/standards/{e1}/promulgate", version="*")
    await h.check("a promulgation", ("standards.standard.promulgated", e1))
    await h.act(deu, "POST", f"{answers}/DEU/reservations", reservation | {"clause": "5.1"}, version="*")
    await h.check("a reservation", ("standards.response.reservation_recorded", f"{e1}:DEU"))
    await h.act(deu, "DELETE", f"{answers}/DEU/reservations/5.1", version="*")
    await h.check("a reservation withdrawn", ("standards.response.reservation_withdrawn", f"{e1}:DEU"))
    await h.act(
        deu, "POST", f"{answers}/DEU/implementation-forecast", {"implementation_forecast": later(90)}, "*"
    )
    await h.check("a forecast", ("standards.response.implementation_forecast", f"{e1}:DEU"))
    await h.act(deu, "POST", f"{answers}/DEU/implementation", {"implemented_on": today().isoformat()}, "*")
    await h.check("an implementation", ("standards.response.implemented", f"{e1}:DEU"))
    await h.act(staff, "POST", f"{answers}/UKR/decline", version="*")  # NATO records a partner's answer
    await h.check("a partner's answer", ("standards.response.recorded", f"{e1}:UKR"))

    # A national claim verified, then expired; a claim released to POL, rejected.
    def claim(code: str, releasability: dict[str, Any]) -> dict[str, Any]:
        product = {"manufacturer": "Example (synthetic)", "product_code": f"{code}-{TAG}", "name": "Vehicle"}
        return {"product": product, "standard_id": e1, "level": "1", "releasability": releasability}

    k1 = (await h.act(deu, "POST", "/v1/standards/conformance", claim("K1", {"scope": "national"})))["id"]
    await h.check("a national claim", ("standards.conformance.claimed", k1))
    await h.act(staff, "POST", f"/v1/standards/conformance/{k1}/start-test", {"evidence": []}, "*")
    await h.check("a test", ("standards.conformance.test_started", k1))
    verify = {"expires_on": later(1), "evidence": ["report 1 (synthetic)"]}
    await h.act(staff, "POST", f"/v1/standards/conformance/{k1}/verify", verify, "*")
    await h.check("a verification", ("standards.conformance.verified", k1))
    await _expire_claims(platform.launcher.env["ICEP_STANDARDS_DATABASE_URL"], [k1])
    await h.check("an expiry", ("standards.conformance.expired", k1))
    k2_body = claim("K2", {"scope": "nations", "nations": ["POL"]})
    k2 = (await h.act(fra, "POST", "/v1/standards/conformance", k2_body))["id"]
    await h.check("a claim for POL", ("standards.conformance.claimed", k2))
    await h.act(staff, "POST", f"/v1/standards/conformance/{k2}/start-test", {"evidence": []}, "*")
    await h.check("its test", ("standards.conformance.test_started", k2))
    await h.act(staff, "POST", f"/v1/standards/conformance/{k2}/reject", {"reason": "no evidence"}, "*")
    await h.check("a rejection", ("standards.conformance.rejected", k2))

    clearance = await h.act(
        deu,
        "POST",
        "/v1/interchangeability/clearances",
        {
            "item": f"VIS item {TAG}",
            "platform": "PzH 2000 (synthetic)",
            "nations": ["DEU"],
            "status": "verified",
            "basis": {"kind": "trial", "reference": "firing trial (synthetic)"},
            "releasability": {"scope": "nations", "nations": ["NLD"]},
        },
    )
    await h.check("a clearance", ("standards.interchangeability.updated", clearance["id"]))

    # An initiative requiring Ed. 1 is flagged when Ed. 2 supersedes it.
    flagged = await h.act(
        "deu-procurement",
        "POST",
        "/v1/initiatives",
        initiative_body(
            f"VIS-F-{TAG}",
            required_standards=[{"number": number, "edition": 1}],
            releasability={"scope": "nations", "nations": ["FRA"]},
        ),
    )
    await h.check("an initiative requiring a standard", ("procurement.initiative.proposed", flagged["id"]))
    e2_body = standard_body(number, edition=2, supersedes=e1, **to_ukr)
    e2 = (await h.act(staff, "POST", "/v1/standards", e2_body))["id"]
    await h.check("a new edition", ("standards.standard.drafted", e2))
    await h.act(staff, "POST", f"/v1/standards/{e2}/circulate", version="*")
    await h.check("its circulation", ("standards.standard.circulated", e2))
    await h.act(staff, "POST", f"/v1/standards/{e2}/promulgate", version="*")
    await h.check(
        "a superseding edition",
        ("standards.standard.promulgated", e2),
        ("standards.standard.superseded", e1),
        ("procurement.initiative.flagged", flagged["id"]),
    )
    study = (await h.act(staff, "POST", "/v1/standards", standard_body(f"8{number[1:]}")))["id"]
    await h.check("a study", ("standards.standard.drafted", study))
    await h.act(staff, "POST", f"/v1/standards/{study}/cancel", {"reason": "overtaken"}, "*")
    await h.check("a cancellation", ("standards.standard.cancelled", study))


async def _procurement(h: Harness) -> None:
    lead, fra, nld, ukr, nato = (
        "deu-procurement",
        "fra-procurement",
        "nld-procurement",
        "ukr-procurement",
        "nato-procurement",
    )
    clean = await h.act(
        lead,
        "POST",
        "/v1/suppliers",
        supplier_body(
            "Clean Shells GmbH", "DEU", releasability={"scope": "allies_partners", "nations": ["UKR"]}
        ),
    )
    await h.check(
        "a supplier",
        ("procurement.supplier.registered", clean["id"]),
        ("procurement.supplier.screened", clean["id"]),
    )
    adjudicator = {"adjudicator": "Nora Example"}
    for country, action, body, releasability, who in (
        ("RUS", "clear", {"mitigation": "voting trust (synthetic)"}, None, nato),
        (
            "BLR",
            "block",
            {"reason": "controlled (synthetic)"},
            {"scope": "nations", "nations": ["NLD"]},
            lead,
        ),
    ):
        extra = {} if releasability is None else {"releasability": releasability}
        s = await h.act(lead, "POST", "/v1/suppliers", supplier_body("Far Alloys", country, **extra))
        await h.check(
            "a potential match",
            ("procurement.supplier.registered", s["id"]),
            ("procurement.supplier.flagged", s["id"]),
        )
        await h.act(who, "POST", f"/v1/suppliers/{s['id']}/{action}", body | adjudicator, s["version"])
        await h.check(f"an adjudication ({action})", (f"procurement.supplier.{action}ed", s["id"]))

    signal = await h.act(
        lead,
        "POST",
        "/v1/demand/signals",
        {
            "product": f"VIS-S-{TAG}",
            "capability_area": "munitions",
            "unit": "rounds",
            "firmness": "planned",
            "quantities": {Y1: 4000},
            "releasability": {"scope": "nations", "nations": ["FRA"]},
        },
    )
    await h.check("a demand signal", ("procurement.demand_signal.published", signal["id"]))
    await h.act(
        lead,
        "PUT",
        f"/v1/demand/signals/{signal['id']}",
        {"firmness": "funded", "quantities": {Y1: 3000}},
        signal["version"],
    )
    await h.check("a revised signal", ("procurement.demand_signal.published", signal["id"]))

    # An initiative for the Allies and Ukraine, taken from participation to a closed contract.
    i = (
        await h.act(
            lead, "POST", "/v1/initiatives", initiative_body(f"VIS-I-{TAG}", open_to_partners=["UKR"])
        )
    )["id"]
    path = f"/v1/initiatives/{i}"
    await h.check("an initiative", ("procurement.initiative.proposed", i))
    steps: list[tuple[str, str, dict[str, Any] | None, tuple[str, ...]]] = [
        (lead, "open", None, ("initiative.opened",)),
        (fra, "join", {"indicative": {Y1: 1000}}, ("initiative.joined", "initiative.demand_aggregated")),
        (fra, "commit", {"firm": {Y1: 1000}}, ("initiative.committed", "initiative.demand_aggregated")),
        (ukr, "join", {"indicative": {Y1: 50}}, ("initiative.joined", "initiative.demand_aggregated")),
        (nld, "join", {"indicative": {Y1: 200}}, ("initiative.joined", "initiative.demand_aggregated")),
        (nld, "commit", {"firm": {Y1: 200}}, ("initiative.committed", "initiative.demand_aggregated")),
        (nld, "withdraw", {"reason": "reprioritised"}, ("initiative.withdrawal_requested",)),
        (lead, "withdrawals/NLD/refuse", None, ("initiative.withdrawal_refused",)),
        (nld, "withdraw", {"reason": "budget cut"}, ("initiative.withdrawal_requested",)),
        (
            lead,
            "withdrawals/NLD/approve",
            None,
            ("initiative.participant_withdrawn", "initiative.demand_aggregated"),
        ),
        (
            ukr,
            "withdraw",
            {"reason": "reprioritised"},
            ("initiative.participant_withdrawn", "initiative.demand_aggregated"),
        ),
        (lead, "close-participation", None, ("initiative.participation_closed",)),
    ]
    for who, action, body, events in steps:
        await h.act(who, "POST", f"{path}/{action}", body, "*")
        await h.check(f"{who} {action}", *((f"procurement.{e}", i) for e in events))

    tender = {
        "lots": [{"id": "lot-1", "title": "HE rounds", "quantity": 1000}],
        "tender_period_end": later(30),
    }
    offer = {"lot_id": "lot-1", "supplier_id": clean["id"], "quantity": 1000, "value": 4e6, "currency": "EUR"}
    await h.act(lead, "POST", f"{path}/tender", tender, "*")
    await h.check("a tender", ("procurement.tender.published", i))
    await h.act(lead, "POST", f"{path}/bids", offer, "*")
    await h.check("a bid", ("procurement.bid.recorded", i))
    awarded = await h.act(lead, "POST", f"{path}/award", {"awards": [offer]}, "*")
    await h.check("an award", ("procurement.award.made", i))
    contract = {
        "award_id": awarded["awards"][0]["id"],
        "framework": True,
        "value": 4e6,
        "currency": "EUR",
        "period_start": today().isoformat(),
        "period_end": later(730),
        "milestones": [
            {"id": "m1", "title": "First batch", "due": later(90), "quantity": 500},
            {"id": "m2", "title": "Second batch", "due": later(180), "quantity": 500},
        ],
    }
    contract_id = (await h.act(lead, "POST", f"{path}/contracts", contract, "*"))["contract_id"]
    await h.check("a contract", ("procurement.contract.signed", i))
    call_off = {
        "contract_id": contract_id,
        "buyer": "FRA",
        "quantity": 100,
        "value": 4e5,
        "currency": "EUR",
        "delivery_by": later(120),
    }
    await h.act(lead, "POST", f"{path}/call-offs", call_off, "*")
    await h.check("a call-off", ("procurement.call_off.placed", i))
    await h.act(lead, "POST", f"{path}/start-delivery", None, "*")
    await h.check("delivery", ("procurement.initiative.delivering", i))
    milestones = f"{path}/contracts/{contract_id}/milestones"
    await h.act(lead, "POST", f"{milestones}/m1", {"met_on": today().isoformat()}, "*")
    await h.check("a milestone met", ("procurement.milestone.met", i))
    await h.act(lead, "POST", f"{milestones}/m2", {"missed": True, "reason": "propellant shortage"}, "*")
    await h.check("a milestone missed", ("procurement.milestone.missed", i))
    await h.act(lead, "POST", f"{path}/close", None, "*")
    await h.check("a closed initiative", ("procurement.initiative.closed", i))

    # An initiative for FRA and POL only, cancelled.
    x = (
        await h.act(
            lead,
            "POST",
            "/v1/initiatives",
            initiative_body(f"VIS-X-{TAG}", releasability={"scope": "nations", "nations": ["FRA", "POL"]}),
        )
    )["id"]
    await h.check("a restricted initiative", ("procurement.initiative.proposed", x))
    await h.act(lead, "POST", f"/v1/initiatives/{x}/cancel", {"reason": "requirement withdrawn"}, "*")
    await h.check(
        "a cancellation",
        ("procurement.initiative.cancelled", x),
        ("procurement.initiative.demand_aggregated", x),
    )
