"""What the plans API takes for money: a JSON number, never `true` (lax parsing reads it as 1) nor a
string. (The models alone, without web, database or Kafka.)"""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from icep.plans.plans import schemas as api


@pytest.mark.parametrize("wrong", [True, False, "1000", None])
def test_an_investment_amount_is_a_json_number(wrong: object) -> None:
    body = {"amount": wrong, "currency": "EUR"}
    with pytest.raises(ValidationError) as raised:
        api.InvestmentIn.model_validate_json(json.dumps(body))
    assert [e["loc"] for e in raised.value.errors()] == [("amount",)]
    with pytest.raises(ValidationError):
        api.InvestmentIn.model_validate(body)  # as FastAPI validates a parsed body


def test_integers_and_decimals_are_amounts() -> None:
    assert api.InvestmentIn.model_validate_json('{"amount": 250000000, "currency": "EUR"}').amount == 2.5e8
    assert api.InvestmentIn.model_validate_json('{"amount": 1.5e6, "currency": "EUR"}').amount == 1.5e6


def test_a_plan_is_the_nations_own_unless_said() -> None:
    assert api.PlanReleasabilityIn().scope == "national"
    assert (
        api.PlanCreate.model_validate(
            {"title": "t", "period_start": "2025-01-01", "period_end": "2029-12-31"}
        ).releasability.scope
        == "national"
    )


@pytest.mark.parametrize("scope", ["national", "allies"])
def test_nations_are_named_only_with_a_scope_that_names_nations(scope: str) -> None:
    # Before, plans kept such nations and nobody among them could read the plan: now the caller is told.
    with pytest.raises(ValidationError, match="names no nations"):
        api.PlanReleasabilityIn.model_validate({"scope": scope, "nations": ["FRA"]})
    assert api.PlanReleasabilityIn.model_validate({"scope": "nations", "nations": ["FRA"]}).nations == ["FRA"]
