"""The typed lists beyond plans, initiatives, standards and deliveries (suppliers, demand signals,
conformance claims, clearances, the audit trail, dead letters) against a scripted HTTP server on
127.0.0.1: each follows `next` page after page with its filters, reads every item as its model, and
`get` reads one with its ETag. A last check holds the helpers to the OpenAPI document: every
cursor-paginated list has a typed helper, and each helper's filters are the operation's parameters."""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from icep_client import (
    AuditEntry,
    Clearance,
    ConformanceClaim,
    DeadLetter,
    DeadLetterSummary,
    DemandSignal,
    IcepClient,
    NotFound,
    RetryPolicy,
    Supplier,
)
from icep_client.models import IcepModel, Versioned
from icep_client.resources.clearances import Clearances
from icep_client.resources.conformance import ConformanceClaims
from icep_client.resources.demand import DemandSignals
from icep_client.resources.events import Events
from icep_client.resources.initiatives import Initiatives
from icep_client.resources.operations import Audit, DeadLetters
from icep_client.resources.plans import Plans
from icep_client.resources.standards import Standards
from icep_client.resources.subscriptions import Subscriptions
from icep_client.resources.suppliers import Suppliers

OPENAPI = json.loads((Path(__file__).resolve().parents[3] / "docs" / "api" / "openapi.json").read_text())

RELEASABILITY = {"owner": "DEU", "scope": "allies", "nations": [], "marking": "NATO UNCLASSIFIED"}
CHANGE = {"action": "create", "status": "new", "by": "deu-planner", "at": "2026-03-01T09:30:00Z", "note": ""}
POSITION = {"topic": "icep.procurement.events", "partition": 0, "offset": 41}


def supplier(n: int) -> dict[str, Any]:
    return {
        "id": f"s{n}",
        "nation": "DEU",
        "name": f"Pulverwerk {n} GmbH",
        "organisation_id": f"DE-{n}",
        "country_of_incorporation": "DEU",
        "scale": "sme",
        "products": ["155mm"],
        "ownership_chain": [{"name": "Holding AG", "country": "DEU", "share_percent": 100}],
        "ultimate_parent": "Holding AG",
        "ultimate_parent_country": "DEU",
        "screening": "clear",
        "matches": [],
        "lists_version": "2026-03-01",
        "adjudicated": [],
        "adjudicator": None,
        "mitigation": None,
        "blocked_reason": None,
        "awardable": True,
        "releasability": RELEASABILITY,
        "history": [CHANGE],
        "version": 2,
    }


def signal(n: int) -> dict[str, Any]:
    return {
        "id": f"d{n}",
        "nation": "POL",
        "capability_area": "munitions",
        "product": "155mm",
        "unit": "rounds",
        "quantities": {"2027": 1000 * n, "2028": 2000},
        "firmness": "funded",
        "releasability": RELEASABILITY,
        "updated_at": "2026-03-02T10:00:00Z",
        "version": 1,
    }


def claim(n: int) -> dict[str, Any]:
    return {
        "id": f"c{n}",
        "standard_id": "std-4569",
        "nation": "FRA",
        "product": {"product_code": f"P-{n}", "name": "Fuze", "manufacturer": "Thales"},
        "level": None,
        "evidence": ["https://example.org/report.pdf"],
        "status": "under_test",
        "expires_on": "2028-12-31",
        "rejection_reason": None,
        "releasability": RELEASABILITY,
        "history": [CHANGE],
        "version": 3,
    }


def clearance(n: int) -> dict[str, Any]:
    return {
        "id": f"k{n}",
        "item": "DM121",
        "platform": f"PzH 2000 #{n}",
        "nations": ["DEU", "NLD"],
        "status": "restricted",
        "restrictions": ["charge 5 only"],
        "basis": {"kind": "trial", "reference": "TR-2026-07"},
        "releasability": RELEASABILITY,
        "history": [CHANGE],
        "updated_at": "2026-03-03T08:00:00Z",
        "version": 1,
    }


def audit_entry(n: int) -> dict[str, Any]:
    return {
        "id": f"a{n}",
        "time": "2026-03-04T12:00:00Z",
        "service": "plans",
        "kind": "change",
        "action": "submit",
        "outcome": "success",
        "method": "POST",
        "path": f"/v1/plans/p{n}/submit",
        "status": 200,
        "problem_type": None,
        "resource_type": "plan",
        "resource_id": f"p{n}",
        "owner_nation": "DEU",
        "client_id": "deu-planner",
        "client_nation": "DEU",
        "roles": ["planner"],
        "trace_id": None,
    }


def dead_letter(n: int) -> dict[str, Any]:
    return {
        "id": f"x{n}",
        "service": "procurement",
        "consumer_group": "procurement",
        "event_id": f"0193-{n}",
        "event_type": "icep.plans.plan.accepted.v1",
        "owner_nation": "DEU",
        "error": "ValueError: no such initiative",
        "attempts": 5,
        "origin": POSITION,
        "dead_letter": {**POSITION, "topic": "icep.procurement.dlq", "offset": n},
        "dead_lettered_at": "2026-03-05T07:00:00Z",
        "status": "waiting",
        "redrive_count": 0,
        "redriven_at": None,
        "resolved_at": None,
    }


def dead_letter_with_record(n: int) -> dict[str, Any]:
    headers = [{"name": "ce_type", "value": "icep.plans.plan.accepted.v1"}, {"name": "raw", "base64": "AAE="}]
    return {**dead_letter(n), "key": "p1", "headers": headers, "payload": {"plan_id": "p1"}}


@dataclass
class Case:
    """A typed list: how to call it, where it goes, what it sends and what it reads."""

    name: str
    path: str
    item: Callable[[int], dict[str, Any]]
    model: type[IcepModel]
    listing: Callable[[IcepClient], AsyncIterator[Any]]
    #: The query the listing's filters make (besides limit and cursor).
    query: dict[str, str]
    #: None: the API has no item by id (the audit trail).
    get: Callable[[IcepClient, str], Any] | None
    #: What `get` answers with (default: an item of the list) and its model.
    detail: Callable[[int], dict[str, Any]] | None = None
    detail_model: type[IcepModel] | None = None


SINCE = datetime(2026, 3, 1, tzinfo=UTC)

CASES = [
    Case(
        "suppliers",
        "/v1/suppliers",
        supplier,
        Supplier,
        lambda icep: icep.suppliers.list(
            screening="clear", nation="DEU", organisation_id="DE-1", page_size=2
        ),
        {"screening": "clear", "nation": "DEU", "organisation_id": "DE-1"},
        lambda icep, id: icep.suppliers.get(id),
    ),
    Case(
        "demand_signals",
        "/v1/demand/signals",
        signal,
        DemandSignal,
        lambda icep: icep.demand_signals.list(nation="POL", product="155mm", page_size=2),
        {"nation": "POL", "product": "155mm"},
        lambda icep, id: icep.demand_signals.get(id),
    ),
    Case(
        "conformance_claims",
        "/v1/standards/conformance",
        claim,
        ConformanceClaim,
        lambda icep: icep.conformance_claims.list(
            standard_id="std-4569", product_code="P-1", status="under_test", nation="FRA", page_size=2
        ),
        {"standard_id": "std-4569", "product_code": "P-1", "status": "under_test", "nation": "FRA"},
        lambda icep, id: icep.conformance_claims.get(id),
    ),
    Case(
        "clearances",
        "/v1/interchangeability/clearances",
        clearance,
        Clearance,
        lambda icep: icep.clearances.list(item="DM121", platform="PzH 2000", page_size=2),
        {"item": "DM121", "platform": "PzH 2000"},
        lambda icep, id: icep.clearances.get(id),
    ),
    Case(
        "audit",
        "/v1/audit",
        audit_entry,
        AuditEntry,
        lambda icep: icep.audit.list(
            nation="DEU",
            resource_type="plan",
            client_id="deu-planner",
            outcome="success",
            since=SINCE,
            until="2026-04-01T00:00:00Z",
            page_size=2,
        ),
        {
            "nation": "DEU",
            "resource_type": "plan",
            "client_id": "deu-planner",
            "outcome": "success",
            "since": "2026-03-01T00:00:00+00:00",
            "until": "2026-04-01T00:00:00Z",
        },
        None,
    ),
    Case(
        "dead_letters",
        "/v1/operations/procurement/dead-letters",
        dead_letter,
        DeadLetterSummary,
        lambda icep: icep.dead_letters.list(
            "procurement", status="waiting", type="icep.plans.*", page_size=2
        ),
        {"status": "waiting", "type": "icep.plans.*"},
        lambda icep, id: icep.dead_letters.get("procurement", id),
        dead_letter_with_record,
        DeadLetter,
    ),
]


def client(server: Any) -> IcepClient:
    return IcepClient(server.url, "deu-planner", "s3cret", retry=RetryPolicy(attempts=1))


def serve(server: Any, case: Case, count: int) -> None:
    """`case.path` answers pages of `count` items, each `next` carrying the filters and the cursor as
    the platform's do; `case.path/{id}` answers that item (with an ETag when it has a version), or 404."""
    items = [case.item(i) for i in range(count)]

    def answer(seen: Any) -> Any:
        if seen.path == case.path:
            start = int(seen.query.get("cursor", ["0"])[0])
            size = int(seen.query["limit"][0])
            following = start + size
            filters = {k: v[0] for k, v in seen.query.items() if k not in ("cursor", "limit")}
            link = (
                f"{case.path}?{urlencode({**filters, 'limit': size, 'cursor': following})}"
                if following < len(items)
                else None
            )
            return server.Reply(200, {"items": items[start:following], "next": link})
        wanted = seen.path.removeprefix(case.path + "/")
        for n, item in enumerate(items):
            if item["id"] == wanted:
                found = (case.detail or case.item)(n)
                # (A weak ETag, unlike the `"<version>"` a model falls back on: it shows the header was kept.)
                headers = {"ETag": f'W/"{found["version"]}"'} if "version" in found else {}
                return server.Reply(200, found, headers)
        return server.Reply(
            404, {"type": "about:blank", "title": "Not Found", "status": 404, "detail": wanted}
        )

    server.handler = answer


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_a_typed_list_follows_the_cursor_with_its_filters(server: Any, case: Case) -> None:
    serve(server, case, 5)
    async with client(server) as icep:
        got = [item async for item in case.listing(icep)]
    assert [item.id for item in got] == [case.item(i)["id"] for i in range(5)]
    assert all(type(item) is case.model for item in got)
    assert got[1] == case.model.model_validate(case.item(1))
    requests = server.api()
    assert [r.path for r in requests] == [case.path] * 3
    assert [r.query.get("cursor") for r in requests] == [None, ["2"], ["4"]]
    for request in requests:
        assert {k: v[0] for k, v in request.query.items() if k not in ("cursor", "limit")} == case.query
        assert request.query["limit"] == ["2"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_a_typed_list_of_nothing_asks_once(server: Any, case: Case) -> None:
    serve(server, case, 0)
    async with client(server) as icep:
        assert [item async for item in case.listing(icep)] == []
    assert len(server.api()) == 1


@pytest.mark.parametrize("case", [c for c in CASES if c.get is not None], ids=lambda c: c.name)
async def test_get_reads_one_by_id(server: Any, case: Case) -> None:
    assert case.get is not None
    serve(server, case, 3)
    async with client(server) as icep:
        found = await case.get(icep, case.item(2)["id"])
        with pytest.raises(NotFound):
            await case.get(icep, "missing")
    assert found.id == case.item(2)["id"]
    assert type(found) is (case.detail_model or case.model)
    if isinstance(found, Versioned):
        assert found.etag == f'W/"{found.version}"'
    assert server.api()[0].path == f"{case.path}/{case.item(2)['id']}"


async def test_a_dead_letter_keeps_its_record(server: Any) -> None:
    case = next(c for c in CASES if c.name == "dead_letters")
    serve(server, case, 1)
    async with client(server) as icep:
        found = await icep.dead_letters.get("procurement", "x0")
    assert isinstance(found, DeadLetter)
    assert found.payload == {"plan_id": "p1"} and found.key == "p1"
    assert [(h.name, h.value, h.base64) for h in found.headers] == [
        ("ce_type", "icep.plans.plan.accepted.v1", None),
        ("raw", None, "AAE="),
    ]
    assert found.origin.offset == 41 and found.dead_letter.topic == "icep.procurement.dlq"


# --- the helpers against the OpenAPI document ---------------------------------------------------------

#: Each cursor-paginated list of the API (operationId) and the helper method that iterates it.
TYPED_LISTS: dict[str, Callable[..., Any]] = {
    "listPlans": Plans.list,
    "listInitiatives": Initiatives.list,
    "searchStandards": Standards.search,
    "listDeliveries": Subscriptions.deliveries,
    "listSuppliers": Suppliers.list,
    "listDemandSignals": DemandSignals.list,
    "listConformanceClaims": ConformanceClaims.list,
    "listClearances": Clearances.list,
    "listAudit": Audit.list,
    "listNotificationsDeadLetters": DeadLetters.list,
    "listProcurementDeadLetters": DeadLetters.list,
    # The feed pages by position, not by cursor: `icep.events.follow` and `icep.events.page` read it.
    "readEventFeed": Events.follow,
}


def paginated_lists() -> dict[str, dict[str, Any]]:
    """The GET operations whose answer holds `items` and `next`."""
    schemas = OPENAPI["components"]["schemas"]
    found = {}
    for operations in OPENAPI["paths"].values():
        operation = operations.get("get")
        if operation is None:
            continue
        schema = operation["responses"].get("200", {}).get("content", {}).get("application/json", {})
        ref = schema.get("schema", {}).get("$ref", "")
        properties = schemas.get(ref.rsplit("/", 1)[-1], {}).get("properties", {})
        if "items" in properties and "next" in properties:
            found[operation["operationId"]] = operation
    return found


def test_every_cursor_paginated_list_has_a_typed_helper() -> None:
    assert len(paginated_lists()) >= 12
    assert sorted(paginated_lists()) == sorted(TYPED_LISTS)


@pytest.mark.parametrize("operation_id", sorted(set(TYPED_LISTS) - {"readEventFeed"}))
def test_a_helper_takes_the_filters_its_operation_takes(operation_id: str) -> None:
    operation = paginated_lists()[operation_id]
    filters = {p["name"] for p in operation["parameters"] if p["in"] == "query"} - {"limit", "cursor"}
    keywords = {
        name
        for name, p in inspect.signature(TYPED_LISTS[operation_id]).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    assert keywords - {"page_size"} == filters
