"""Authorization everywhere (issue 7): every operation of every service, driven through the gateway by
principals of other nations, partners and wrong roles, is refused with problem JSON and changes nothing;
and no list, count, aggregate, feed or stream shows a caller what is not released to it.

The rules (DESIGN.md "Identity and access", DOMAIN.md "Releasability", and the services' domain rules):
- A record is read by its owner nation and by whoever its releasability names. Reading needs no role: any
  principal of a nation reads what is released to that nation. Acting needs the role (and often the nation).
- NATO staff read a national plan once it is submitted to NATO (its reviewers act on it), never a draft;
  NATO staff always read conformance claims; a clearance's nations always read it.
- Refused: 403 when the caller may read the resource but lacks the role or nation to act; 404 when the
  resource is not released to the caller, exactly as if it did not exist (a 403 would tell it exists).
- Subscriptions are their owner client's (others get 404); NATO operators see every subscription's
  deliveries of events released to NATO (a delivery of one that is not is 404 to them).

The matrix names every operation of the four services' OpenAPI documents; a new endpoint fails
`test_every_operation_is_in_the_matrix` until it is added here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from icep.platform.testing import WebhookReceiver, consumer_caught_up, wait_for
from tests.conftest import FreshToken

PROBLEM = "application/problem+json"
SERVICES = ("plans", "procurement", "standards", "notifications")


def today() -> dt.date:
    """The date now, asked at each use (a run may cross midnight, UTC)."""
    return dt.datetime.now(dt.UTC).date()


Y1 = str(today().year + 1)
TAG = uuid.uuid4().hex[:8]

#: Every development client (deploy/dev-clients.toml), and which of them hold the subscriber role.
CLIENTS = (
    "deu-planner",
    "fra-planner",
    "pol-planner",
    "nato-reviewer",
    "ukr-partner",
    "deu-subscriber",
    *(f"{n}-standards" for n in ("deu", "fra", "pol", "nato")),
    *(f"{n}-procurement" for n in ("deu", "fra", "pol", "nld", "nato", "ukr")),
    "deu-operator",
    "fra-operator",
)
NOT_SUBSCRIBERS = frozenset({"pol-planner", "nato-reviewer"})

NOT_FOUND, FORBIDDEN = 404, 403

#: Everyone but the operators (with the write scope, so the refusal is the role's).
NOT_OPERATORS = {
    "deu-planner": FORBIDDEN,
    "nato-standards": FORBIDDEN,
    "fra-procurement": FORBIDDEN,
    "ukr-partner": FORBIDDEN,
}

Ids = dict[str, str]
Clients = dict[str, httpx.AsyncClient]


def marker(what: str) -> str:
    """A string unique to this run, put in titles and names so a leak can be searched for as text."""
    return f"AUTHZ-{what}-{TAG}"


# --- the matrix -----------------------------------------------------------------------------------------

Body = Callable[[Ids], Any]


@dataclass(frozen=True)
class Op:
    """One operation and who must be refused it.

    `args` fill the path template: a key of the fixture ids, or `=literal`. `body` is what the owner could
    send. `target` names the snapshot (below) that must read the same, as its owner, before and after each
    refused call; its ETag is sent as If-Match, so a refusal is about authorization, never a precondition.
    """

    method: str
    path: str
    refused: Mapping[str, int]
    args: Mapping[str, str] = field(default_factory=dict)
    body: Body | None = None
    target: str | None = None


def plan_body(title: str, start: int, scope: str, product: str, bottleneck: str) -> dict[str, Any]:
    return {
        "title": title,
        "period_start": f"{start}-01-01",
        "period_end": f"{start + 4}-12-31",
        "capability_areas": ["munitions"],
        "releasability": {"scope": scope},
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
                    "surge_per_month": 3500,
                    "surge_days": 60,
                    "lead_time_days": 365,
                    "operator": {"company": "Synthetic Munitions GmbH", "sme": True},
                    "bottlenecks": [
                        {
                            "input": bottleneck,
                            "category": "energetics",
                            "source_countries": ["DEU"],
                            "single_source": True,
                        }
                    ],
                }
            ],
            "measures": [],
        },
    }


def initiative_body(title: str, product: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": title,
        "item": {"product": product, "unit": "rounds", "classification_scheme": "CPV"},
        "capability_area": "munitions",
        "participation_deadline": (today() + dt.timedelta(days=60)).isoformat(),
        **extra,
    }


def supplier_body(name: str, country: str = "DEU", **extra: Any) -> dict[str, Any]:
    code = uuid.uuid4().hex[:8]
    return {
        "organisation_id": f"DE-HRB-{code}",
        "name": name,
        "scale": "sme",
        "country_of_incorporation": country,
        "products": [f"EX-155-{code}"],
        **extra,
    }


def standard_body(number: str, title: str, edition: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "STANAG",
        "number": number,
        "edition": edition,
        "title": title,
        "domain": "land",
        "capability_areas": ["protection"],
        "levels": ["1", "2"],
        **extra,
    }


def later(days: int) -> str:
    return (today() + dt.timedelta(days=days)).isoformat()


# Who may not do it, and with which answer. Reads need no role, so a wrong role is refused only on changes.
OTHER_PLANNERS = {"fra-planner": NOT_FOUND, "ukr-partner": NOT_FOUND}
LEAD_ONLY_FULL = {  # the initiative released to FRA and POL only, led by DEU
    "fra-procurement": FORBIDDEN,
    "pol-procurement": FORBIDDEN,
    "deu-planner": FORBIDDEN,
    "nld-procurement": NOT_FOUND,
    "nato-procurement": NOT_FOUND,
    "ukr-procurement": NOT_FOUND,
}
LEAD_ONLY_OPEN = {  # the initiative released to all Allies, not open to partners, led by DEU
    "fra-procurement": FORBIDDEN,
    "nato-procurement": FORBIDDEN,
    "deu-subscriber": FORBIDDEN,
    "ukr-procurement": NOT_FOUND,
}
PARTICIPANT_OPEN = {
    "nato-procurement": FORBIDDEN,  # NATO staff run initiatives; nations participate
    "fra-planner": FORBIDDEN,
    "deu-planner": FORBIDDEN,
    "ukr-procurement": NOT_FOUND,
}
READ_FULL = {"nld-procurement": NOT_FOUND, "nato-procurement": NOT_FOUND, "ukr-partner": NOT_FOUND}
RESPONSE_OF_DEU = {  # DEU's answer to a standard released to all Allies (not to partners)
    "pol-standards": FORBIDDEN,
    "fra-standards": FORBIDDEN,
    "deu-planner": FORBIDDEN,
    "ukr-partner": NOT_FOUND,
}
CLAIM = {"deu-planner": FORBIDDEN, "nato-reviewer": FORBIDDEN, "fra-standards": NOT_FOUND}
NOT_THE_OWNER = {  # a subscription is its owner client's
    "deu-planner": NOT_FOUND,
    "fra-planner": NOT_FOUND,
    "pol-planner": NOT_FOUND,
    "nato-reviewer": NOT_FOUND,
    "ukr-partner": NOT_FOUND,
}
DELIVERIES = {k: v for k, v in NOT_THE_OWNER.items() if k != "nato-reviewer"}  # NATO operators see all
#: ... but not a delivery of an event not released to NATO (`delivery`: a DEU national plan's creation).
DELIVERY = NOT_THE_OWNER
NO_SUBSCRIBER_ROLE = {"pol-planner": FORBIDDEN, "nato-reviewer": FORBIDDEN}

NOT_OPERATORS = {
    "deu-planner": FORBIDDEN,
    "nato-standards": FORBIDDEN,
    "fra-procurement": FORBIDDEN,
    "ukr-partner": FORBIDDEN,
}
#: No dead letter exists in the world: the role is checked before any lookup.
DEAD_LETTER = {"dead_letter_id": "=01900000-0000-7000-8000-000000000000"}
I_OPEN = {"initiative_id": "initiative_open"}
I_FULL = {"initiative_id": "initiative_full"}
RESPONSE = {"standard_id": "standard_allies", "nation": "=DEU"}
SUB = {"subscription_id": "subscription"}

MATRIX: tuple[Op, ...] = (
    # --- plans ---
    Op(
        "POST",
        "/v1/plans",
        {
            "nato-reviewer": FORBIDDEN,
            "ukr-partner": FORBIDDEN,
            "deu-subscriber": FORBIDDEN,
            "deu-procurement": FORBIDDEN,
        },
        body=lambda ids: plan_body(marker("refused-plan"), 2060, "national", "x", "y"),
    ),
    Op("GET", "/v1/plans/{plan_id}", {**OTHER_PLANNERS, "pol-planner": NOT_FOUND}, {"plan_id": "plan_nat"}),
    Op("GET", "/v1/plans/{plan_id}", {"nato-reviewer": NOT_FOUND}, {"plan_id": "plan_draft"}),
    Op("GET", "/v1/plans/{plan_id}", {"ukr-partner": NOT_FOUND}, {"plan_id": "plan_allies"}),
    Op(
        "PATCH",
        "/v1/plans/{plan_id}",
        {**OTHER_PLANNERS, "nato-reviewer": NOT_FOUND, "deu-subscriber": FORBIDDEN},
        {"plan_id": "plan_draft"},
        lambda ids: {"title": "renamed by someone else"},
        "plan_draft",
    ),
    Op(
        "POST",
        "/v1/plans/{plan_id}/submit",
        {**OTHER_PLANNERS, "nato-reviewer": NOT_FOUND, "deu-procurement": FORBIDDEN},
        {"plan_id": "plan_draft"},
        target="plan_draft",
    ),
    Op(
        "POST",
        "/v1/plans/{plan_id}/start-review",
        {**OTHER_PLANNERS, "deu-planner": FORBIDDEN, "nato-standards": FORBIDDEN},
        {"plan_id": "plan_sub"},
        target="plan_sub",
    ),
    Op(
        "POST",
        "/v1/plans/{plan_id}/accept",
        {**OTHER_PLANNERS, "deu-planner": FORBIDDEN, "nato-procurement": FORBIDDEN},
        {"plan_id": "plan_sub"},
        target="plan_sub",
    ),
    Op(
        "POST",
        "/v1/plans/{plan_id}/return",
        {**OTHER_PLANNERS, "deu-planner": FORBIDDEN, "nato-standards": FORBIDDEN},
        {"plan_id": "plan_sub"},
        lambda ids: {"reasons": ["not yours to return"]},
        "plan_sub",
    ),
    Op(
        "POST",
        "/v1/plans/{plan_id}/redraft",
        {**OTHER_PLANNERS, "nato-reviewer": FORBIDDEN, "deu-subscriber": FORBIDDEN},
        {"plan_id": "plan_sub"},
        target="plan_sub",
    ),
    Op(
        "POST",
        "/v1/plans/{plan_id}/withdraw",
        {**OTHER_PLANNERS, "nato-reviewer": FORBIDDEN, "deu-subscriber": FORBIDDEN},
        {"plan_id": "plan_sub"},
        target="plan_sub",
    ),
    Op(
        "POST",
        "/v1/plans/{plan_id}/release",
        {**OTHER_PLANNERS, "nato-reviewer": FORBIDDEN, "deu-subscriber": FORBIDDEN},
        {"plan_id": "plan_nat"},
        lambda ids: {"releasability": {"scope": "allies_partners", "nations": ["UKR"]}},
        "plan_nat",
    ),
    Op("GET", "/v1/plans/{plan_id}/versions", OTHER_PLANNERS, {"plan_id": "plan_nat"}),
    Op(
        "GET",
        "/v1/plans/{plan_id}/versions/{version}",
        {**OTHER_PLANNERS, "nato-reviewer": NOT_FOUND},  # version 1 is a draft: never NATO's
        {"plan_id": "plan_nat", "version": "=1"},
    ),
    Op(
        "POST",
        "/v1/plans/{plan_id}/commitments/{commitment_key}/progress",
        {**OTHER_PLANNERS, "nato-reviewer": FORBIDDEN, "deu-subscriber": FORBIDDEN},
        {"plan_id": "plan_nat", "commitment_key": "=line-1"},
        lambda ids: {"month": "2031-03-01", "actual_output": 1},
        "plan_nat_actuals",
    ),
    # The months reported on a commitment and their corrections: capacity figures of a national plan.
    Op(
        "GET",
        "/v1/plans/{plan_id}/commitments/{commitment_key}/progress",
        OTHER_PLANNERS,
        {"plan_id": "plan_nat", "commitment_key": "=line-1"},
    ),
    Op(
        "PUT",
        "/v1/capacity/targets",
        {
            "deu-planner": FORBIDDEN,
            "fra-planner": FORBIDDEN,
            "ukr-partner": FORBIDDEN,
            "nato-standards": FORBIDDEN,
        },
        body=lambda ids: {
            "capability_area": "munitions",
            "product": ids["target_product"],
            "year": 2031,
            "required_quantity": 1,
            "unit": "rounds",
        },
        target="target",
    ),
    Op("GET", "/v1/capacity/targets/{target_id}", {"ukr-partner": NOT_FOUND}, {"target_id": "target"}),
    # --- procurement: initiatives ---
    Op(
        "POST",
        "/v1/initiatives",
        {"deu-planner": FORBIDDEN, "ukr-procurement": FORBIDDEN, "ukr-partner": FORBIDDEN},
        body=lambda ids: initiative_body(marker("refused-initiative"), marker("refused-product")),
    ),
    Op("GET", "/v1/initiatives/{initiative_id}", READ_FULL, I_FULL),
    Op("GET", "/v1/initiatives/{initiative_id}", {"ukr-procurement": NOT_FOUND}, I_OPEN),
    Op(
        "POST",
        "/v1/initiatives/{initiative_id}/open",
        LEAD_ONLY_OPEN,
        I_OPEN,
        target="initiative_open",
    ),
    Op(
        "POST",
        "/v1/initiatives/{initiative_id}/join",
        PARTICIPANT_OPEN,
        I_OPEN,
        lambda ids: {"indicative": {Y1: 10}},
        "initiative_open",
    ),
    Op(
        "POST",
        "/v1/initiatives/{initiative_id}/commit",
        PARTICIPANT_OPEN,
        I_OPEN,
        lambda ids: {"firm": {Y1: 10}, "funded": {}},
        "initiative_open",
    ),
    Op(
        "POST",
        "/v1/initiatives/{initiative_id}/withdraw",
        PARTICIPANT_OPEN,
        I_OPEN,
        lambda ids: {"reason": "not ours to withdraw"},
        "initiative_open",
    ),
    Op(
        "POST",
        "/v1/initiatives/{initiative_id}/withdrawals/{nation}/approve",
        LEAD_ONLY_OPEN,
        {**I_OPEN, "nation": "=FRA"},
        target="initiative_open",
    ),
    Op(
        "POST",
        "/v1/initiatives/{initiative_id}/withdrawals/{nation}/refuse",
        LEAD_ONLY_OPEN,
        {**I_OPEN, "nation": "=FRA"},
        target="initiative_open",
    ),
    Op(
        "POST",
        "/v1/initiatives/{initiative_id}/close-participation",
        LEAD_ONLY_OPEN,
        I_OPEN,
        target="initiative_open",
    ),
    Op(
        "POST",
        "/v1/initiatives/{initiative_id}/cancel",
        LEAD_ONLY_OPEN,
        I_OPEN,
        lambda ids: {"reason": "not ours to cancel"},
        "initiative_open",
    ),
    Op(
        "POST",
        "/v1/initiatives/{initiative_id}/tender",
        LEAD_ONLY_FULL,
        I_FULL,
        lambda ids: {
            "lots": [{"id": "lot-9", "title": "More rounds", "quantity": 1}],
            "tender_period_end": later(30),
        },
        "initiative_full",
    ),
    Op(
        "POST",
        "/v1/initiatives/{initiative_id}/bids",
        LEAD_ONLY_FULL,
        I_FULL,
        lambda ids: {
            "lot_id": "lot-1",
            "supplier_id": ids["supplier_clean"],
            "quantity": 1,
            "value": 1.0,
            "currency": "EUR",
        },
        "initiative_full",
    ),
    Op(
        "POST",
        "/v1/initiatives/{initiative_id}/award",
        LEAD_ONLY_FULL,
        I_FULL,
        lambda ids: {
            "awards": [
                {
                    "lot_id": "lot-1",
                    "supplier_id": ids["supplier_clean"],
                    "quantity": 1,
                    "value": 1.0,
                    "currency": "EUR",
                }
            ]
        },
        "initiative_full",
    ),
    Op(
        "POST",
        "/v1/initiatives/{initiative_id}/contracts",
        LEAD_ONLY_FULL,
        I_FULL,
        lambda ids: {
            "award_id": ids["award"],
            "framework": True,
            "value": 1.0,
            "currency": "EUR",
            "period_start": today().isoformat(),
            "period_end": later(365),
            "milestones": [],
        },
        "initiative_full",
    ),
    Op(
        "GET",
        "/v1/initiatives/{initiative_id}/contracts/{contract_id}",
        READ_FULL,
        {**I_FULL, "contract_id": "contract"},
    ),
    Op(
        "POST",
        "/v1/initiatives/{initiative_id}/contracts/{contract_id}/milestones/{milestone_id}",
        LEAD_ONLY_FULL,
        {**I_FULL, "contract_id": "contract", "milestone_id": "=m1"},
        lambda ids: {"met_on": today().isoformat()},
        "initiative_full",
    ),
    Op(
        "POST",
        "/v1/initiatives/{initiative_id}/call-offs",
        LEAD_ONLY_FULL,
        I_FULL,
        lambda ids: {
            "contract_id": ids["contract"],
            "buyer": "FRA",
            "quantity": 1,
            "value": 1.0,
            "currency": "EUR",
            "delivery_by": later(30),
        },
        "initiative_full",
    ),
    Op(
        "GET",
        "/v1/initiatives/{initiative_id}/call-offs/{call_off_id}",
        READ_FULL,
        {**I_FULL, "call_off_id": "call_off"},
    ),
    Op(
        "POST",
        "/v1/initiatives/{initiative_id}/start-delivery",
        LEAD_ONLY_FULL,
        I_FULL,
        target="initiative_full",
    ),
    Op("POST", "/v1/initiatives/{initiative_id}/close", LEAD_ONLY_FULL, I_FULL, target="initiative_full"),
    Op("GET", "/v1/initiatives/{initiative_id}/ocds", READ_FULL, I_FULL),
    Op("GET", "/v1/initiatives/{initiative_id}/ocds/record", READ_FULL, I_FULL),
    Op(
        "GET",
        "/v1/initiatives/{initiative_id}/call-offs/{call_off_id}/ocds",
        READ_FULL,
        {**I_FULL, "call_off_id": "call_off"},
    ),
    Op(
        "GET",
        "/v1/initiatives/{initiative_id}/call-offs/{call_off_id}/ocds/record",
        READ_FULL,
        {**I_FULL, "call_off_id": "call_off"},
    ),
    # --- procurement: demand signals and suppliers ---
    Op(
        "POST",
        "/v1/demand/signals",
        {"nato-procurement": FORBIDDEN, "deu-planner": FORBIDDEN, "ukr-partner": FORBIDDEN},
        body=lambda ids: {
            "product": marker("refused-signal"),
            "capability_area": "munitions",
            "unit": "rounds",
            "firmness": "planned",
            "quantities": {Y1: 5},
        },
    ),
    Op(
        "GET",
        "/v1/demand/signals/{signal_id}",
        {"pol-procurement": NOT_FOUND, "nato-procurement": NOT_FOUND, "ukr-procurement": NOT_FOUND},
        {"signal_id": "signal"},
    ),
    Op(
        "PUT",
        "/v1/demand/signals/{signal_id}",
        {
            "fra-procurement": FORBIDDEN,
            "deu-planner": FORBIDDEN,
            "pol-procurement": NOT_FOUND,
            "nato-procurement": NOT_FOUND,
        },
        {"signal_id": "signal"},
        lambda ids: {"firmness": "funded", "quantities": {Y1: 6}},
        "signal",
    ),
    Op(
        "POST",
        "/v1/suppliers",
        {"deu-planner": FORBIDDEN, "ukr-partner": FORBIDDEN, "nato-reviewer": FORBIDDEN},
        body=lambda ids: supplier_body(marker("refused-supplier")),
    ),
    Op(
        "GET",
        "/v1/suppliers/{supplier_id}",
        {"pol-procurement": NOT_FOUND, "nato-procurement": NOT_FOUND, "ukr-procurement": NOT_FOUND},
        {"supplier_id": "supplier_pm"},
    ),
    Op(
        "POST",
        "/v1/suppliers/{supplier_id}/clear",
        {
            "fra-procurement": FORBIDDEN,
            "deu-planner": FORBIDDEN,
            "pol-procurement": NOT_FOUND,
            "nato-procurement": NOT_FOUND,
        },
        {"supplier_id": "supplier_pm"},
        lambda ids: {"mitigation": "not ours to clear", "adjudicator": "Someone Else"},
        "supplier_pm",
    ),
    Op(
        "POST",
        "/v1/suppliers/{supplier_id}/block",
        {
            "fra-procurement": FORBIDDEN,
            "deu-planner": FORBIDDEN,
            "pol-procurement": NOT_FOUND,
            "ukr-procurement": NOT_FOUND,
        },
        {"supplier_id": "supplier_pm"},
        lambda ids: {"reason": "not ours to block", "adjudicator": "Someone Else"},
        "supplier_pm",
    ),
    # --- standards ---
    Op(
        "POST",
        "/v1/standards",
        {"deu-standards": FORBIDDEN, "nato-reviewer": FORBIDDEN, "ukr-partner": FORBIDDEN},
        body=lambda ids: standard_body(f"8{uuid.uuid4().int % 10**8:08d}", marker("refused-standard")),
    ),
    Op(
        "POST",
        "/v1/standards/conformance",
        {"deu-planner": FORBIDDEN, "ukr-partner": NOT_FOUND},  # UKR may not read the standard
        body=lambda ids: {
            "product": {"manufacturer": "Someone (synthetic)", "product_code": "X-1", "name": "X"},
            "standard_id": ids["standard_allies"],
            "level": "1",
        },
    ),
    Op(
        "GET",
        "/v1/standards/conformance/{claim_id}",
        {"fra-standards": NOT_FOUND, "pol-standards": NOT_FOUND, "ukr-partner": NOT_FOUND},
        {"claim_id": "claim"},
    ),
    Op(
        "POST",
        "/v1/standards/conformance/{claim_id}/start-test",
        CLAIM,
        {"claim_id": "claim"},
        target="claim",
    ),
    Op(
        "POST",
        "/v1/standards/conformance/{claim_id}/verify",
        CLAIM,
        {"claim_id": "claim"},
        lambda ids: {"expires_on": later(365)},
        "claim",
    ),
    Op(
        "POST",
        "/v1/standards/conformance/{claim_id}/reject",
        CLAIM,
        {"claim_id": "claim"},
        lambda ids: {"reason": "not ours to reject"},
        "claim",
    ),
    Op(
        "GET",
        "/v1/standards/{standard_id}",
        {"ukr-partner": NOT_FOUND, "ukr-procurement": NOT_FOUND},
        {"standard_id": "standard_allies"},
    ),
    Op(
        "POST",
        "/v1/standards/{standard_id}/circulate",
        {"deu-standards": FORBIDDEN, "nato-reviewer": FORBIDDEN, "ukr-partner": NOT_FOUND},
        {"standard_id": "standard_study"},
        target="standard_study",
    ),
    Op(
        "POST",
        "/v1/standards/{standard_id}/promulgate",
        # The superseded edition: a newer one is in force, which must not be what answers a non-NATO caller.
        {"deu-standards": FORBIDDEN, "fra-standards": FORBIDDEN, "ukr-partner": NOT_FOUND},
        {"standard_id": "standard_old"},
        target="standard_old",
    ),
    Op(
        "POST",
        "/v1/standards/{standard_id}/cancel",
        {"deu-standards": FORBIDDEN, "nato-reviewer": FORBIDDEN, "ukr-partner": NOT_FOUND},
        {"standard_id": "standard_allies"},
        lambda ids: {"reason": "not ours to cancel"},
        "standard_allies",
    ),
    Op(
        "GET",
        "/v1/standards/{standard_id}/responses",
        {"ukr-partner": NOT_FOUND, "ukr-procurement": NOT_FOUND},
        {"standard_id": "standard_allies"},
    ),
    Op(
        "GET",
        "/v1/standards/{standard_id}/responses/{nation}",
        {"ukr-partner": NOT_FOUND, "ukr-procurement": NOT_FOUND},
        RESPONSE,
    ),
    Op(
        "POST",
        "/v1/standards/{standard_id}/responses/{nation}/ratify",
        RESPONSE_OF_DEU,
        RESPONSE,
        lambda ids: {"reservations": []},
        "response",
    ),
    Op(
        "POST",
        "/v1/standards/{standard_id}/responses/{nation}/decline",
        RESPONSE_OF_DEU,
        RESPONSE,
        target="response",
    ),
    Op(
        "POST",
        "/v1/standards/{standard_id}/responses/{nation}/reservations",
        RESPONSE_OF_DEU,
        RESPONSE,
        lambda ids: {"clause": "5.1", "kind": "will_not_implement", "detail": "not ours to reserve"},
        "response",
    ),
    Op(
        "DELETE",
        "/v1/standards/{standard_id}/responses/{nation}/reservations/{clause}",
        RESPONSE_OF_DEU,
        {**RESPONSE, "clause": "=4.2.1"},
        target="response",
    ),
    Op(
        "POST",
        "/v1/standards/{standard_id}/responses/{nation}/implementation-forecast",
        RESPONSE_OF_DEU,
        RESPONSE,
        lambda ids: {"implementation_forecast": later(400)},
        "response",
    ),
    Op(
        "POST",
        "/v1/standards/{standard_id}/responses/{nation}/implementation",
        RESPONSE_OF_DEU,
        RESPONSE,
        lambda ids: {"implemented_on": today().isoformat()},
        "response",
    ),
    Op(
        "POST",
        "/v1/interchangeability/clearances",
        {"deu-planner": FORBIDDEN, "fra-standards": FORBIDDEN, "ukr-partner": FORBIDDEN},
        body=lambda ids: {  # FRA may clear for itself only
            "item": marker("refused-item"),
            "platform": "PzH 2000 (synthetic)",
            "nations": ["DEU"],
            "status": "verified",
            "basis": {"kind": "trial", "reference": "trial (synthetic)"},
        },
    ),
    Op(
        "GET",
        "/v1/interchangeability/clearances/{clearance_id}",
        {"fra-standards": NOT_FOUND, "nato-standards": NOT_FOUND, "ukr-partner": NOT_FOUND},
        {"clearance_id": "clearance"},
    ),
    Op(
        "PUT",
        "/v1/interchangeability/clearances/{clearance_id}",
        {"deu-planner": FORBIDDEN, "fra-standards": NOT_FOUND, "nato-standards": NOT_FOUND},
        {"clearance_id": "clearance"},
        lambda ids: {"status": "verified", "basis": {"kind": "trial", "reference": "another trial"}},
        "clearance",
    ),
    # --- notifications ---
    Op(
        "POST",
        "/v1/subscriptions",
        NO_SUBSCRIBER_ROLE,
        body=lambda ids: {"url": ids["receiver_url"], "description": marker("refused-subscription")},
    ),
    Op("GET", "/v1/subscriptions/{subscription_id}", NOT_THE_OWNER, SUB),
    Op(
        "PATCH",
        "/v1/subscriptions/{subscription_id}",
        NOT_THE_OWNER,
        SUB,
        lambda ids: {"description": "hijacked"},
        "subscription",
    ),
    Op("DELETE", "/v1/subscriptions/{subscription_id}", NOT_THE_OWNER, SUB, target="subscription"),
    Op(
        "POST",
        "/v1/subscriptions/{subscription_id}/rotate-secret",
        NOT_THE_OWNER,
        SUB,
        target="subscription",
    ),
    Op("POST", "/v1/subscriptions/{subscription_id}/ping", NOT_THE_OWNER, SUB, target="subscription"),
    Op("POST", "/v1/subscriptions/{subscription_id}/pause", NOT_THE_OWNER, SUB, target="subscription"),
    Op("POST", "/v1/subscriptions/{subscription_id}/resume", NOT_THE_OWNER, SUB, target="subscription"),
    Op(
        "POST",
        "/v1/subscriptions/{subscription_id}/disable",
        NOT_THE_OWNER,
        SUB,
        lambda ids: {"reason": "hijacked"},
        "subscription",
    ),
    Op("GET", "/v1/subscriptions/{subscription_id}/deliveries", DELIVERIES, SUB),
    Op(
        "GET",
        "/v1/subscriptions/{subscription_id}/deliveries/{delivery_id}",
        DELIVERY,
        {**SUB, "delivery_id": "delivery"},
    ),
    Op(
        "POST",
        "/v1/subscriptions/{subscription_id}/deliveries/{delivery_id}/redeliver",
        DELIVERY,
        {**SUB, "delivery_id": "delivery"},
        target="delivery",
    ),
    Op(
        "POST",
        "/v1/subscriptions/{subscription_id}/replay",
        DELIVERIES,
        SUB,
        lambda ids: {"since": "2020-01-01T00:00:00Z"},
        "deliveries",
    ),
    Op("GET", "/v1/events", NO_SUBSCRIBER_ROLE),
    Op("GET", "/v1/events/stream", NO_SUBSCRIBER_ROLE),
    # --- every service: the outbox tools are for operators ---
    *(
        op
        for service in SERVICES
        for op in (
            Op("GET", f"/v1/operations/{service}/outbox", NOT_OPERATORS),
            *(
                Op(
                    "POST",
                    f"/v1/operations/{service}/outbox/{{row_id}}/{action}",
                    NOT_OPERATORS,
                    {"row_id": "=0190e4d2-0000-7000-8000-000000000000"},
                    (lambda ids: {"reason": "refused anyway"}) if action == "park" else None,
                )
                for action in ("retry", "park", "unpark")
            ),
        )
    ),
    # --- every service: the audit trail is for operators ---
    Op(
        "GET",
        "/v1/audit",
        {
            "deu-planner": FORBIDDEN,
            "nato-standards": FORBIDDEN,
            "fra-procurement": FORBIDDEN,
            "ukr-partner": FORBIDDEN,
        },
    ),
    # --- each consuming service: its dead letters are for operators (docs/operations/dead-letters.md) ---
    *(
        Op(method, f"/v1/operations/{service}/dead-letters{tail}", NOT_OPERATORS, args)
        for service in ("procurement", "notifications")
        for method, tail, args in (
            ("GET", "", {}),
            ("GET", "/{dead_letter_id}", DEAD_LETTER),
            ("POST", "/{dead_letter_id}/redrive", DEAD_LETTER),
            ("POST", "/redrive", {}),
            ("DELETE", "/{dead_letter_id}", DEAD_LETTER),
            ("POST", "/purge", {}),
        )
    ),
)

#: What each target reads as (its owner, the path): the same before and after every refused call.
SNAPSHOTS: dict[str, tuple[str, str]] = {
    "plan_nat": ("deu-planner", "/v1/plans/{plan_nat}"),
    "plan_sub": ("deu-planner", "/v1/plans/{plan_sub}"),
    "plan_draft": ("deu-planner", "/v1/plans/{plan_draft}"),
    "plan_nat_actuals": ("deu-planner", "/v1/capacity/summary?product={plan_nat_product}"),
    "target": ("nato-reviewer", "/v1/capacity/targets/{target}"),
    "initiative_open": ("deu-procurement", "/v1/initiatives/{initiative_open}"),
    "initiative_full": ("deu-procurement", "/v1/initiatives/{initiative_full}"),
    "signal": ("deu-procurement", "/v1/demand/signals/{signal}"),
    "supplier_pm": ("deu-procurement", "/v1/suppliers/{supplier_pm}"),
    "standard_study": ("nato-standards", "/v1/standards/{standard_study}"),
    "standard_old": ("nato-standards", "/v1/standards/{standard_old}"),
    "standard_allies": ("nato-standards", "/v1/standards/{standard_allies}"),
    "response": ("deu-standards", "/v1/standards/{standard_allies}/responses/DEU"),
    "claim": ("deu-standards", "/v1/standards/conformance/{claim}"),
    "clearance": ("deu-standards", "/v1/interchangeability/clearances/{clearance}"),
    "subscription": ("deu-subscriber", "/v1/subscriptions/{subscription}"),
    "delivery": ("deu-subscriber", "/v1/subscriptions/{subscription}/deliveries/{delivery}"),
    "deliveries": ("deu-subscriber", "/v1/subscriptions/{subscription}/deliveries"),
}


# --- what may not leak ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Secret:
    """A restricted record: who must see it (so the check can fail) and who must never find a trace of it.
    Its needles (its id, and the markers in its title, name or product) are in the fixture's `needles`."""

    entitled: str
    denied: tuple[str, ...]


SECRETS: dict[str, Secret] = {
    "plan_nat": Secret("deu-planner", ("fra-planner", "pol-planner", "ukr-partner", "fra-procurement")),
    "plan_draft": Secret("deu-planner", ("nato-reviewer", "nato-standards", "fra-planner")),
    "plan_allies": Secret("fra-planner", ("ukr-partner", "ukr-procurement")),
    "target": Secret("fra-planner", ("ukr-partner",)),
    "initiative_full": Secret("fra-procurement", ("nld-procurement", "nato-procurement", "ukr-procurement")),
    "initiative_open": Secret("nld-procurement", ("ukr-procurement", "ukr-partner")),
    "signal": Secret("fra-procurement", ("pol-procurement", "nato-procurement", "ukr-procurement")),
    "supplier_pm": Secret("fra-procurement", ("pol-procurement", "nato-procurement", "ukr-procurement")),
    "standard_allies": Secret("fra-standards", ("ukr-partner", "ukr-procurement")),
    "claim": Secret("nato-standards", ("fra-standards", "pol-standards", "ukr-partner")),
    "clearance": Secret("deu-standards", ("fra-standards", "nato-standards", "ukr-partner")),
    "subscription": Secret("deu-subscriber", ("deu-planner", "fra-planner", "nato-reviewer")),
}


@dataclass(frozen=True)
class Listing:
    """A list or aggregate, and the secrets it could show."""

    path: str
    secrets: tuple[str, ...]
    params: Mapping[str, str] = field(default_factory=dict)
    #: Secret -> the client that must see it here, where that is not the secret's own `entitled`.
    entitled: Mapping[str, str] = field(default_factory=dict)


PAGE = {"limit": "200"}
LISTINGS: tuple[Listing, ...] = (
    Listing("/v1/plans", ("plan_nat", "plan_draft", "plan_allies"), PAGE),
    Listing("/v1/capacity/summary", ("plan_nat", "plan_allies", "target")),
    Listing("/v1/capacity/timeline", ("plan_nat", "plan_allies", "target")),
    Listing("/v1/capacity/timeline.svg", ("plan_nat", "plan_allies", "target")),
    Listing("/v1/capacity/dependencies", ("plan_nat", "plan_allies")),
    Listing("/v1/capacity/targets", ("target",)),
    Listing("/v1/initiatives", ("initiative_full", "initiative_open"), PAGE),
    # Disclosure control: until its demand is settled an initiative's demand is the lead nation's (and NATO
    # staff's) alone, participants' included (docs/visibility.md).
    Listing(
        "/v1/demand",
        ("initiative_full", "initiative_open", "signal"),
        entitled={"initiative_full": "deu-procurement", "initiative_open": "deu-procurement"},
    ),
    Listing("/v1/demand/signals", ("signal",), PAGE),
    Listing("/v1/suppliers", ("supplier_pm",), PAGE),
    Listing("/v1/standards", ("standard_allies",), PAGE),
    Listing("/v1/standards/progress", ("standard_allies",), {"nations": "DEU,POL"}),
    Listing("/v1/standards/conformance", ("claim",), PAGE),
    Listing("/v1/interchangeability/clearances", ("clearance",), PAGE),
    Listing("/v1/subscriptions", ("subscription",)),
)
#: Answers that echo what was asked (a product, an item, a standard number): checked one by one below.
ANSWERS = frozenset(
    {
        ("GET", "/v1/demand-capacity"),
        ("GET", "/v1/interoperability"),
        ("GET", "/v1/interchangeability"),
    }
)


# --- coverage -------------------------------------------------------------------------------------------


def app_operations() -> set[tuple[str, str]]:
    """(method, path template) of every operation in the services' OpenAPI documents."""
    found: set[tuple[str, str]] = set()
    for name in SERVICES:
        app = importlib.import_module(f"icep.{name}.app").create_app()
        for path, item in app.openapi()["paths"].items():
            found |= {(m.upper(), path) for m in item if m in ("get", "post", "put", "patch", "delete")}
    return found


def test_every_operation_is_in_the_matrix() -> None:
    in_apps = app_operations()
    listed = {(op.method, op.path) for op in MATRIX} | {("GET", x.path) for x in LISTINGS} | ANSWERS
    assert len(in_apps) > 90
    assert sorted(in_apps - listed) == [], "operations nobody checks: add them to the authorization matrix"
    assert sorted(listed - in_apps) == [], "the matrix names operations the services no longer have"
    assert all(op.refused for op in MATRIX)
    for op in MATRIX:
        assert set(op.refused) <= set(CLIENTS), op
        assert op.target is None or op.target in SNAPSHOTS, op
        assert set(op.args) == {p.split("}")[0] for p in op.path.split("{")[1:]}, op
    for secret in SECRETS.values():
        assert secret.entitled not in secret.denied and set(secret.denied) <= set(CLIENTS)


# --- the platform's state for the module ----------------------------------------------------------------


@pytest.fixture(scope="module")
async def principals(platform: Any) -> AsyncIterator[Clients]:
    made = {
        cid: httpx.AsyncClient(base_url=platform.gateway, auth=FreshToken(platform, cid), timeout=30)
        for cid in CLIENTS
    }
    try:
        yield made
    finally:
        for client in made.values():
            await client.aclose()


@dataclass
class World:
    ids: Ids
    #: What would betray each secret: its id and the markers in its text.
    needles: dict[str, tuple[str, ...]]
    clients: Clients

    def path(self, template: str, args: Mapping[str, str]) -> str:
        return template.format_map({k: v[1:] if v.startswith("=") else self.ids[v] for k, v in args.items()})


async def send(
    client: httpx.AsyncClient, method: str, path: str, body: Any = None, version: int | None = None
) -> dict[str, Any]:
    """A call the fixture needs to succeed: a creation (no If-Match) or a change of `version`."""
    headers = {"If-Match": f'"{version}"'} if version is not None else {}
    r = await client.request(method, path, json=body, headers=headers)
    assert r.status_code in (200, 201), f"{method} {path}: {r.status_code} {r.text}"
    return dict(r.json())


async def settled(platform: Any) -> None:
    """Every event of the producing services is published and consumed by notifications and procurement."""
    consumers = {
        "notifications": ("plans", "procurement", "standards"),
        "procurement": ("plans", "standards"),
    }

    async def quiet() -> bool:
        for name in ("plans", "procurement", "standards"):
            if await platform.metric(name, "icep_outbox_backlog", service=name) != 0:
                return False
        for consumer, producers in consumers.items():
            for producer in producers:
                group, topic = (
                    f"{platform.namespace}icep-{consumer}",
                    platform.topic(f"icep.{producer}.events"),
                )
                if not await consumer_caught_up(platform.bootstrap, group, topic):
                    return False
        return True

    condition: Callable[[], bool | Awaitable[bool]] = quiet
    await wait_for(condition, timeout=90, interval=0.2, what="every event to be consumed")


@pytest.fixture(scope="module")
async def world(platform: Any, principals: Clients) -> AsyncIterator[World]:
    """Created through the gateway by their owners: plans, a capability target, initiatives, a demand
    signal, suppliers, standards, a national answer, a conformance claim, a clearance and a subscription."""
    c = principals
    receiver = WebhookReceiver().start()
    ids: Ids = {"receiver_url": receiver.url}
    needles: dict[str, tuple[str, ...]] = {}
    try:
        # A DEU subscription to DEU's plans being created and submitted, made first so that it gets them.
        sub = await send(
            c["deu-subscriber"],
            "POST",
            "/v1/subscriptions",
            {
                "url": receiver.url,
                "description": marker("subscription"),
                "event_types": ["icep.plans.plan.created.v1", "icep.plans.plan.submitted.v1"],
                "nations": ["DEU"],
            },
        )
        ids["subscription"] = sub["id"]
        needles["subscription"] = (sub["id"], marker("subscription"))

        # Plans: accepted national (DEU and NATO's reviewers), accepted for the Allies, submitted, draft.
        deu, nato = c["deu-planner"], c["nato-reviewer"]

        async def plan(key: str, start: int, scope: str, until: str) -> None:
            title, product, input_ = marker(f"{key}-title"), marker(f"{key}-shell"), marker(f"{key}-nitro")
            p = await send(deu, "POST", "/v1/plans", plan_body(title, start, scope, product, input_))
            steps = {"submitted": [deu], "accepted": [deu, nato, nato]}.get(until, [])
            for who, action in zip(steps, ("submit", "start-review", "accept"), strict=False):
                p = await send(who, "POST", f"/v1/plans/{p['id']}/{action}", version=p["version"])
            ids[f"plan_{key}"] = p["id"]
            ids[f"plan_{key}_product"] = product
            needles[f"plan_{key}"] = (p["id"], title, product, input_)

        await plan("nat", 2030, "national", "accepted")
        await plan("allies", 2035, "allies", "accepted")
        await plan("sub", 2040, "national", "submitted")
        await plan("draft", 2045, "national", "draft")
        ids["target_product"] = marker("target-shell")
        target = {
            "capability_area": "munitions",
            "product": ids["target_product"],
            "year": 2031,
            "required_quantity": 5000,
            "unit": "rounds",
        }
        ids["target"] = (await send(nato, "PUT", "/v1/capacity/targets", target))["id"]
        needles["target"] = (ids["target"], ids["target_product"])

        # Procurement: a clean supplier, a DEU supplier released to FRA only awaiting adjudication, an
        # initiative for all Allies (FRA asks to withdraw), one released to FRA and POL only taken to a
        # framework contract with a call-off, and a demand signal released to FRA only.
        lead, fra = c["deu-procurement"], c["fra-procurement"]
        clean = await send(lead, "POST", "/v1/suppliers", supplier_body("Clean Munitions GmbH (synthetic)"))
        assert clean["screening"] == "clear", clean
        ids["supplier_clean"] = clean["id"]
        pm = await send(
            lead,
            "POST",
            "/v1/suppliers",
            supplier_body(marker("supplier"), "RUS", releasability={"scope": "nations", "nations": ["FRA"]}),
        )
        assert pm["screening"] == "potential_match", pm
        ids["supplier_pm"] = pm["id"]
        needles["supplier_pm"] = (pm["id"], marker("supplier"))

        async def initiative(key: str, **extra: Any) -> dict[str, Any]:
            title, product = marker(f"{key}-initiative"), marker(f"{key}-product")
            i = await send(lead, "POST", "/v1/initiatives", initiative_body(title, product, **extra))
            i = await send(lead, "POST", f"/v1/initiatives/{i['id']}/open", version=i["version"])
            i = await send(
                fra, "POST", f"/v1/initiatives/{i['id']}/join", {"indicative": {Y1: 1000}}, i["version"]
            )
            firm = {"firm": {Y1: 1000}, "funded": {}}
            i = await send(fra, "POST", f"/v1/initiatives/{i['id']}/commit", firm, i["version"])
            ids[f"initiative_{key}"] = i["id"]
            needles[f"initiative_{key}"] = (i["id"], title, product)
            return i

        i = await initiative("open")
        await send(fra, "POST", f"/v1/initiatives/{i['id']}/withdraw", {"reason": "budget"}, i["version"])

        i = await initiative("full", releasability={"scope": "nations", "nations": ["FRA", "POL"]})
        iid = i["id"]
        i = await send(lead, "POST", f"/v1/initiatives/{iid}/close-participation", version=i["version"])
        tender = {
            "lots": [{"id": "lot-1", "title": "HE rounds", "quantity": 1000}],
            "tender_period_end": later(30),
        }
        i = await send(lead, "POST", f"/v1/initiatives/{iid}/tender", tender, i["version"])
        offer = {
            "lot_id": "lot-1",
            "supplier_id": clean["id"],
            "quantity": 1000,
            "value": 4e6,
            "currency": "EUR",
        }
        i = await send(lead, "POST", f"/v1/initiatives/{iid}/bids", offer, i["version"])
        i = await send(lead, "POST", f"/v1/initiatives/{iid}/award", {"awards": [offer]}, i["version"])
        ids["award"] = i["awards"][0]["id"]
        contract = {
            "award_id": ids["award"],
            "framework": True,
            "value": 4e6,
            "currency": "EUR",
            "period_start": today().isoformat(),
            "period_end": later(730),
            "milestones": [{"id": "m1", "title": "First batch", "due": later(90), "quantity": 500}],
        }
        i = await send(lead, "POST", f"/v1/initiatives/{iid}/contracts", contract, i["version"])
        ids["contract"] = i["contract_id"]
        call_off = {
            "contract_id": ids["contract"],
            "buyer": "FRA",
            "quantity": 100,
            "value": 4e5,
            "currency": "EUR",
            "delivery_by": later(120),
        }
        i = await send(lead, "POST", f"/v1/initiatives/{iid}/call-offs", call_off, i["version"])
        ids["call_off"] = i["call_off_id"]

        signal_product = marker("signal-shell")
        signal = await send(
            lead,
            "POST",
            "/v1/demand/signals",
            {
                "product": signal_product,
                "capability_area": "munitions",
                "unit": "rounds",
                "firmness": "planned",
                "quantities": {Y1: 4000},
                "releasability": {"scope": "nations", "nations": ["FRA"]},
            },
        )
        ids["signal"], ids["signal_product"] = signal["id"], signal_product
        needles["signal"] = (signal["id"], signal_product)

        # Standards (NATO's, released to all Allies and no partner): Ed. 1 superseded by Ed. 2, which DEU
        # ratified with a reservation, and a study; a national claim, a national clearance.
        staff = c["nato-standards"]

        async def standard(number: str, title: str, until: str, **extra: Any) -> dict[str, Any]:
            s = await send(staff, "POST", "/v1/standards", standard_body(number, title, **extra))
            for action in {"study": [], "promulgated": ["circulate", "promulgate"]}[until]:
                s = await send(staff, "POST", f"/v1/standards/{s['id']}/{action}", version=s["version"])
            return s

        common, study = (f"9{uuid.uuid4().int % 10**8:08d}" for _ in range(2))
        old = await standard(common, marker("allies-standard"), "promulgated")
        allies = await standard(
            common, marker("allies-standard"), "promulgated", edition=2, supersedes=old["id"]
        )
        draft = await standard(study, marker("study-standard"), "study")
        ids |= {
            "standard_old": old["id"],
            "standard_allies": allies["id"],
            "standard_study": draft["id"],
            "standard_allies_number": common,
        }
        needles["standard_allies"] = (allies["id"], old["id"], common, marker("allies-standard"))
        reservation = {"clause": "4.2.1", "kind": "limited", "detail": "synthetic limits"}
        await send(
            c["deu-standards"],
            "POST",
            f"/v1/standards/{allies['id']}/responses/DEU/ratify",
            {"reservations": [reservation]},
            version=1,
        )
        claim = await send(
            c["deu-standards"],
            "POST",
            "/v1/standards/conformance",
            {
                "product": {
                    "manufacturer": "Example (synthetic)",
                    "product_code": marker("claim-code"),
                    "name": "Example vehicle",
                },
                "standard_id": allies["id"],
                "level": "1",
                "releasability": {"scope": "national"},
            },
        )
        ids["claim"] = claim["id"]
        needles["claim"] = (claim["id"], marker("claim-code"))
        item = marker("clearance-item")
        clearance = await send(
            c["deu-standards"],
            "POST",
            "/v1/interchangeability/clearances",
            {
                "item": item,
                "platform": "PzH 2000 (synthetic)",
                "nations": ["DEU"],
                "status": "verified",
                "basis": {"kind": "trial", "reference": "firing trial (synthetic)"},
                "releasability": {"scope": "national"},
            },
        )
        ids["clearance"], ids["clearance_item"] = clearance["id"], item
        needles["clearance"] = (clearance["id"], item)

        # Last, an initiative open to UKR: something a partner may see, on the feed and the stream.
        await send(
            lead,
            "POST",
            "/v1/initiatives",
            initiative_body(marker("ukr-initiative"), marker("ukr-product"), open_to_partners=["UKR"]),
        )

        # Everything consumed: the feed holds it all, procurement knows the capacity, the webhook went out.
        await settled(platform)

        async def delivered() -> str | None:
            r = await c["deu-subscriber"].get(f"/v1/subscriptions/{sub['id']}/deliveries")
            items = r.json()["items"] if r.status_code == 200 else []
            done = [
                d
                for d in items
                if d["status"] == "delivered"
                and d["subject"] == ids["plan_nat"]
                and d["event_type"] == "icep.plans.plan.created.v1"
            ]
            return str(done[0]["id"]) if done and all(d["status"] == "delivered" for d in items) else None

        found: Callable[[], str | Awaitable[str | None] | None] = delivered
        delivery = await wait_for(found, timeout=60, interval=0.2, what="the webhook delivery")
        assert delivery is not None
        ids["delivery"] = delivery
        yield World(ids, needles, c)
    finally:
        receiver.stop()


# --- refusals -------------------------------------------------------------------------------------------


async def call(client: httpx.AsyncClient, method: str, path: str, **kw: Any) -> tuple[int, str, str]:
    """Status, content type and body of one call; a stream is never read (it would not end)."""
    async with client.stream(method, path, **kw) as r:
        kind = r.headers.get("content-type", "")
        text = "" if kind.startswith("text/event-stream") else (await r.aread()).decode()
        return r.status_code, kind, text


async def snapshot(w: World, key: str) -> tuple[str, str]:
    """The target as its owner reads it: its ETag (or `*` when it has none) and its whole answer."""
    owner, template = SNAPSHOTS[key]
    r = await w.clients[owner].get(template.format_map(w.ids))
    assert r.status_code == 200, f"{key}: {r.status_code} {r.text}"
    return r.headers.get("etag", "*"), r.text


async def test_every_operation_refuses_other_nations_partners_and_wrong_roles(world: World) -> None:
    failures: list[str] = []
    checked = 0
    for op in MATRIX:
        path = world.path(op.path, op.args)
        body = op.body(world.ids) if op.body is not None else None
        for client_id, expected in op.refused.items():
            etag, before = await snapshot(world, op.target) if op.target else ("*", "")
            headers = {} if op.method == "GET" else {"If-Match": etag}
            status, kind, text = await call(
                world.clients[client_id], op.method, path, json=body, headers=headers
            )
            where = f"{op.method} {op.path} as {client_id}"
            checked += 1
            if status != expected:
                failures.append(f"{where}: {status}, not {expected}: {text[:300]}")
                continue
            problem = json.loads(text) if kind.startswith(PROBLEM) else None
            slug = {NOT_FOUND: "not-found", FORBIDDEN: "forbidden"}[expected]
            if problem is None or problem.get("status") != expected or not problem["type"].endswith(slug):
                failures.append(f"{where}: not a {expected} problem ({kind}): {text[:300]}")
            if op.target and (after := (await snapshot(world, op.target))[1]) != before:
                failures.append(f"{where}: changed {op.target}: {before} -> {after}")
    assert not failures, f"{len(failures)} of {checked} refusals wrong:\n" + "\n".join(failures)
    assert checked == sum(len(op.refused) for op in MATRIX)


async def test_a_hidden_resource_answers_as_a_missing_one(world: World) -> None:
    """404 for what is not released to the caller says no more than 404 for an id that was never used."""
    for op in MATRIX:
        hidden = [cid for cid, status in op.refused.items() if status == NOT_FOUND]
        ids = [k for k, v in op.args.items() if not v.startswith("=")]
        if not hidden or not ids or op.method != "GET":
            continue
        missing = world.path(op.path, {**op.args, ids[-1]: "=" + str(uuid.uuid4())})
        real = world.path(op.path, op.args)
        for client_id in hidden:
            a = await world.clients[client_id].get(real)
            b = await world.clients[client_id].get(missing)
            assert (a.status_code, a.json()["title"]) == (b.status_code, b.json()["title"]), (
                op.path,
                client_id,
            )
            assert set(a.json()) == set(b.json()), (op.path, client_id)


# --- no leaks in lists, counts, aggregates, answers, the feed and the stream ----------------------------


def traces(text: str, needles: tuple[str, ...]) -> list[str]:
    return [n for n in needles if n in text]


async def test_lists_and_aggregates_show_nothing_not_released(world: World) -> None:
    failures: list[str] = []
    for listing in LISTINGS:
        for key in listing.secrets:
            secret, needles = SECRETS[key], world.needles[key]
            entitled = listing.entitled.get(key, secret.entitled)
            for client_id in (entitled, *secret.denied):
                r = await world.clients[client_id].get(listing.path, params=dict(listing.params))
                assert r.status_code == 200, f"{listing.path} as {client_id}: {r.text}"
                found = traces(r.text, needles)
                if client_id == entitled and not found:
                    failures.append(f"{listing.path}: {client_id} does not see {key}, it should")
                if client_id != entitled and found:
                    failures.append(f"{listing.path}: {client_id} sees {key} ({found})")
    assert not failures, "\n".join(failures)


async def test_nato_operators_see_only_deliveries_of_events_released_to_nato(world: World) -> None:
    """A DEU subscription got the creation of DEU's plans (released to DEU alone: drafts) and their
    submission (to DEU and NATO): NATO's operator lists the submissions' deliveries only."""
    path = world.path("/v1/subscriptions/{subscription_id}/deliveries", SUB)
    owner, nato = [
        (await world.clients[who].get(path, params=PAGE)).json()["items"]
        for who in ("deu-subscriber", "nato-reviewer")
    ]
    submitted = [d["id"] for d in owner if d["event_type"] == "icep.plans.plan.submitted.v1"]
    assert submitted and len(submitted) < len(owner) and [d["id"] for d in nato] == submitted
    assert world.ids["plan_draft"] in json.dumps(owner)
    assert not traces(json.dumps(nato), world.needles["plan_draft"])


async def test_counts_follow_releasability(world: World) -> None:
    """The standard in force counts for an Ally's caller, not for a partner's; a nation's quantities
    in an initiative are the lead nation's, its own and NATO staff's (as the events about them); NATO
    reviewers never read a draft version."""
    c, ids = world.clients, world.ids

    async def in_force(client_id: str) -> int:
        r = await c[client_id].get("/v1/standards/progress", params={"nations": "DEU"})
        assert r.status_code == 200, r.text
        return int(r.json()["nations"][0]["in_force"])

    assert await in_force("fra-standards") == await in_force("ukr-partner") + 1

    path = f"/v1/initiatives/{ids['initiative_open']}"
    fra_as = {
        who: next(p for p in (await c[who].get(path)).json()["participations"] if p["nation"] == "FRA")
        for who in ("deu-procurement", "fra-procurement", "nld-procurement", "nato-procurement")
    }
    assert fra_as["deu-procurement"]["firm"] == fra_as["fra-procurement"]["firm"] == {Y1: 1000}
    assert fra_as["nato-procurement"]["firm"] == {Y1: 1000}
    assert fra_as["nld-procurement"]["firm"] is None
    assert fra_as["nld-procurement"]["withdrawal_reason"] is None

    versions = f"/v1/plans/{ids['plan_nat']}/versions"
    owner = [v["status"] for v in (await c["deu-planner"].get(versions)).json()["items"]]
    reviewer = [v["status"] for v in (await c["nato-reviewer"].get(versions)).json()["items"]]
    assert owner[0] == "draft" and "draft" not in reviewer and reviewer == owner[1:]


async def test_answers_cite_nothing_not_released(world: World) -> None:
    """Demand against capacity, interoperability and interchangeability echo what was asked; the
    figures and records behind them are only what the caller may see."""
    c, ids = world.clients, world.ids

    async def balance(client_id: str, product: str) -> dict[str, Any]:
        r = await c[client_id].get("/v1/demand-capacity", params={"product": product})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def capacity(b: dict[str, Any]) -> int:
        return sum(y["capacity"] for y in b["years"])

    def demand(b: dict[str, Any]) -> int:
        return sum(y["demand"]["total"] for y in b["years"])

    nat = ids["plan_nat_product"]
    assert capacity(await balance("deu-procurement", nat)) > 0
    for denied in ("fra-procurement", "nld-procurement", "ukr-procurement"):
        assert capacity(await balance(denied, nat)) == 0, denied
    allies = ids["plan_allies_product"]
    assert capacity(await balance("fra-procurement", allies)) > 0
    assert capacity(await balance("ukr-procurement", allies)) == 0
    signal = ids["signal_product"]
    assert demand(await balance("fra-procurement", signal)) == 4000
    for denied in ("pol-procurement", "nato-procurement", "ukr-procurement"):
        b = await balance(denied, signal)
        assert demand(b) == 0 and b["unit"] is None, denied

    # Interoperability of a standard the caller may not read: the same answer as for one that never was.
    async def interoperability(client_id: str, standard: str) -> httpx.Response:
        return await c[client_id].get(
            "/v1/interoperability", params={"nations": "DEU,POL", "standards": standard}
        )

    r = await interoperability("fra-standards", ids["standard_allies_number"])
    assert r.status_code == 200 and ids["standard_allies"] in r.text, r.text
    nobody = f"7{uuid.uuid4().int % 10**8:08d}"
    for client_id in SECRETS["standard_allies"].denied:
        for ref in (ids["standard_allies_number"], ids["standard_allies"]):
            hidden, missing = (
                await interoperability(client_id, ref),
                await interoperability(client_id, nobody),
            )
            assert hidden.status_code == missing.status_code == 422, hidden.text
            assert hidden.json()["detail"].replace(ref, nobody) == missing.json()["detail"]

    # Can DEU fire the item: a caller who may not read DEU's clearance gets no trace of it.
    async def can_fire(client_id: str) -> httpx.Response:
        params = {"item": ids["clearance_item"], "platform": "PzH 2000 (synthetic)", "nation": "DEU"}
        return await c[client_id].get("/v1/interchangeability", params=params)

    r = await can_fire("deu-standards")
    assert r.status_code == 200 and r.json()["clearance_id"] == ids["clearance"], r.text
    for denied in SECRETS["clearance"].denied:
        r = await can_fire(denied)
        assert r.status_code == 200, r.text
        assert r.json()["clearance_id"] is None and ids["clearance"] not in r.text, (denied, r.text)
        assert r.json()["answer"] == "no", (denied, r.text)


async def whole_feed(client: httpx.AsyncClient) -> tuple[str, int]:
    """Every page of the caller's feed as text, and the position of the last event on it."""
    pages: list[str] = []
    last = 0
    r = await client.get("/v1/events", params={"limit": 500})
    while True:
        assert r.status_code == 200, r.text
        page = r.json()
        pages.append(r.text)
        last = max([last, *(i["position"] for i in page["items"])])
        if not page["more"]:
            return "\n".join(pages), last
        r = await client.get(page["next"])


async def streamed(client: httpx.AsyncClient, until: int) -> str:
    """The caller's stream from the start of the log, read up to the event at position `until`."""
    received: list[str] = []
    timeout = httpx.Timeout(20, read=60)
    async with client.stream(
        "GET", "/v1/events/stream", headers={"Last-Event-ID": "0"}, timeout=timeout
    ) as r:
        assert r.status_code == 200, await r.aread()

        async def read() -> None:
            # A message is `id`, `event`, then `data`: done once the data of the event at `until` came
            # (the blank line closing it may wait in the decoder for more text).
            position = 0
            async for line in r.aiter_lines():
                name, _, value = line.partition(":")
                if name == "id" and value.strip().isdigit():
                    position = int(value)
                elif name == "data":
                    received.append(value)
                    if position >= until:
                        return

        await asyncio.wait_for(read(), 60)
    return "\n".join(received)


async def test_feed_and_stream_show_nothing_not_released(world: World) -> None:
    feeds: dict[str, tuple[str, int]] = {}
    failures: list[str] = []
    for key, secret in SECRETS.items():
        if key == "subscription":
            continue  # its events go to its nation (DEU), as every subscriber of DEU may learn of it
        for client_id in (secret.entitled, *secret.denied):
            if client_id in NOT_SUBSCRIBERS:
                continue
            if client_id not in feeds:
                feeds[client_id] = await whole_feed(world.clients[client_id])
            found = traces(feeds[client_id][0], world.needles[key])
            if client_id == secret.entitled and not found:
                failures.append(f"feed: {client_id} does not see {key}, it should")
            if client_id != secret.entitled and found:
                failures.append(f"feed: {client_id} sees {key} ({found})")
    assert not failures, "\n".join(failures)

    # The stream from the start of the log holds what the feed holds: the entitled see, the others do not.
    for client_id, keys in (
        ("deu-planner", ()),
        ("fra-planner", ("plan_nat", "plan_draft")),
        ("ukr-partner", ("plan_nat", "plan_allies", "standard_allies", "claim", "clearance")),
        ("nld-procurement", ("initiative_full",)),
    ):
        if client_id not in feeds:
            feeds[client_id] = await whole_feed(world.clients[client_id])
        assert feeds[client_id][1] > 0, f"{client_id} sees no event: the stream check would prove nothing"
        text = await streamed(world.clients[client_id], feeds[client_id][1])
        for key in keys:
            assert not traces(text, world.needles[key]), (client_id, key)
        if client_id == "deu-planner":
            assert world.ids["plan_nat"] in text and world.ids["plan_draft"] in text
        if client_id == "ukr-partner":
            assert marker("ukr-initiative") in text


# --- the audit trail: each nation's operators see their own records' entries ---------------------------

#: DEU's records in the world: DEU's operators find each in the audit trail (its creation at least), NATO's
#: operators too, FRA's operators never (they see FRA's records only).
DEU_RECORDS = (
    "plan_nat",
    "plan_sub",
    "plan_draft",
    "initiative_full",
    "initiative_open",
    "signal",
    "supplier_pm",
    "claim",
    "clearance",
    "subscription",
)


async def whole_trail(client: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    """Every page of the caller's audit trail (through the gateway: every service's, merged)."""
    items: list[dict[str, Any]] = []
    r = await client.get("/v1/audit", params={"limit": "200", **params})
    while True:
        assert r.status_code == 200, r.text
        page = r.json()
        items.extend(page["items"])
        if page["next"] is None:
            return items
        r = await client.get(page["next"])


async def test_the_audit_trail_shows_each_nation_only_its_own_records(world: World) -> None:
    c, ids = world.clients, world.ids
    # FRA tries to submit DEU's draft: refused as if it did not exist, and DEU's operators learn of it.
    tried = await c["fra-planner"].post(f"/v1/plans/{ids['plan_draft']}/submit", headers={"If-Match": "*"})
    assert tried.status_code == NOT_FOUND, tried.text

    async def fra_attempt_seen() -> bool:
        trail = await whole_trail(c["deu-operator"], resource_id=ids["plan_draft"], client_id="fra-planner")
        return any(e["action"] == "submitPlan" and e["outcome"] == "refused" for e in trail)

    await wait_for(fra_attempt_seen, timeout=30, what="FRA's refused attempt in DEU's audit trail")

    names = ("deu-operator", "fra-operator", "nato-reviewer")
    trails = dict(zip(names, await asyncio.gather(*(whole_trail(c[n]) for n in names)), strict=True))
    failures: list[str] = []
    for key in DEU_RECORDS:
        for who in names:
            found = ids[key] in json.dumps(trails[who])
            if who == "fra-operator" and found:
                failures.append(f"/v1/audit: {who} sees entries of DEU's {key}")
            if who != "fra-operator" and not found:
                failures.append(f"/v1/audit: {who} does not see entries of DEU's {key}, it should")
    assert not failures, "\n".join(failures)
    assert {e["owner_nation"] for e in trails["deu-operator"]} == {"DEU"}
    assert {e["owner_nation"] for e in trails["fra-operator"]} <= {"FRA"}
    # NATO's operators see every service's entries, merged newest first, each once.
    nato = trails["nato-reviewer"]
    assert {e["service"] for e in nato} == set(SERVICES)
    order = [e["id"] for e in nato]
    assert order == sorted(order, reverse=True) and len(set(order)) == len(order)
    # Asking for another nation's records by name is an empty answer, not a refusal.
    assert await whole_trail(c["fra-operator"], nation="DEU") == []
