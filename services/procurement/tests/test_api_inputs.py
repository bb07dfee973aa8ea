"""What the procurement API takes: currencies and countries as ISO codes, counts as JSON integers, a named
person on every adjudication. (The models alone, without web, database or Kafka.)"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from icep.platform.errors import PreconditionRequired
from icep.procurement import schema_types as schema_types
from icep.procurement.initiatives import schemas as initiative_schemas
from icep.procurement.suppliers import routes as supplier_routes
from icep.procurement.suppliers import schemas as supplier_schemas

BID = {"lot_id": "L1", "supplier_id": "s1", "quantity": 10, "value": 1e5, "currency": "EUR"}
SUPPLIER = {
    "organisation_id": "HRB-1",
    "name": "Synthetic Munitions GmbH",
    "scale": "sme",
    "country_of_incorporation": "DEU",
}
#: Every input that names a currency, with an otherwise valid body.
WITH_CURRENCY: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (
        initiative_schemas.LotIn,
        {"id": "L1", "title": "Lot 1", "quantity": 10, "estimated_value": 1e5, "currency": "EUR"},
    ),
    (initiative_schemas.BidIn, BID),
    (initiative_schemas.AwardItemIn, BID),
    (
        initiative_schemas.ContractIn,
        {
            "award_id": "a1",
            "value": 1e5,
            "currency": "EUR",
            "period_start": "2026-01-01",
            "period_end": "2027-01-01",
        },
    ),
    (
        initiative_schemas.CallOffIn,
        {
            "contract_id": "c1",
            "buyer": "DEU",
            "quantity": 5,
            "value": 5e4,
            "currency": "EUR",
            "delivery_by": "2027-01-01",
        },
    ),
]


def errors(model: type[BaseModel], body: dict[str, Any]) -> list[tuple[str, ...]]:
    """The locations of the validation errors for `body` sent as JSON (none: it is taken)."""
    try:
        model.model_validate_json(json.dumps(body))
    except ValidationError as e:
        return [tuple(str(x) for x in err["loc"]) for err in e.errors()]
    return []


@pytest.mark.parametrize(("model", "body"), WITH_CURRENCY)
def test_a_currency_is_an_iso_4217_code_that_ocds_knows(model: type[BaseModel], body: dict[str, Any]) -> None:
    assert errors(model, body) == []
    assert errors(model, {**body, "currency": "USD"}) == []
    for wrong in ("ABC", "QQQ", "EUROS", "eur", "XCG"):  # XCG: ISO 4217, newer than OCDS 1.1.5's codelist
        assert errors(model, {**body, "currency": wrong}) == [("currency",)], wrong


def test_the_currency_messages_say_why() -> None:
    with pytest.raises(ValueError, match="not an ISO 4217 currency code"):
        schema_types.iso_currency("ABC")
    with pytest.raises(ValueError, match=r"OCDS 1\.1\.5"):
        schema_types.iso_currency("XCG")
    assert schema_types.iso_currency("GBP") == "GBP"


def test_a_supplier_country_is_an_iso_3166_alpha_3_code() -> None:
    assert errors(supplier_schemas.SupplierCreate, SUPPLIER) == []
    assert errors(supplier_schemas.SupplierCreate, {**SUPPLIER, "country_of_incorporation": "ABC"}) == [
        ("country_of_incorporation",)
    ]
    parent = {"ultimate_parent": "Parent AG", "ultimate_parent_country": "XYZ"}
    assert errors(supplier_schemas.SupplierCreate, {**SUPPLIER, **parent}) == [("ultimate_parent_country",)]
    owners = [{"name": "Fund", "country": "QQQ", "share_percent": 10}]
    assert errors(supplier_schemas.SupplierCreate, {**SUPPLIER, "ownership_chain": owners}) == [
        ("ownership_chain", "0", "country")
    ]
    ok = {**SUPPLIER, "ultimate_parent": "Parent AG", "ultimate_parent_country": "CYP"}
    assert (
        errors(supplier_schemas.SupplierCreate, {**ok, "ownership_chain": [{**owners[0], "country": "NLD"}]})
        == []
    )
    with pytest.raises(ValueError, match="not an ISO 3166-1 alpha-3 country code"):
        schema_types.iso_country("ABC")


def test_a_count_is_a_json_integer_never_a_boolean() -> None:
    for wrong in (True, False, 10.0, "10"):
        assert errors(initiative_schemas.BidIn, {**BID, "quantity": wrong}) == [("quantity",)], wrong
        assert errors(initiative_schemas.AwardItemIn, {**BID, "quantity": wrong}) == [("quantity",)], wrong
    assert errors(initiative_schemas.JoinIn, {"indicative": {"2026": True}}) == [("indicative", "2026")]
    owner = {"name": "Fund", "country": "DEU", "share_percent": True}
    assert errors(supplier_schemas.OwnerIn, owner) == [("share_percent",)]
    assert errors(supplier_schemas.OwnerIn, {**owner, "share_percent": 12.5}) == []
    assert errors(supplier_schemas.OwnerIn, {**owner, "share_percent": 40}) == []


@pytest.mark.parametrize(("model", "body"), WITH_CURRENCY)
def test_money_is_a_json_number_never_a_boolean_or_a_string(
    model: type[BaseModel], body: dict[str, Any]
) -> None:
    field = "estimated_value" if "estimated_value" in body else "value"
    for wrong in (True, False, "100000", None if field == "value" else [1]):
        assert errors(model, {**body, field: wrong}) == [(field,)], wrong
        # As FastAPI validates a parsed body (Python mode), and as the JSON parser does.
        with pytest.raises(ValidationError):
            model.model_validate({**body, field: wrong})
    assert errors(model, {**body, field: 100000}) == []
    assert errors(model, {**body, field: 1.5e5}) == []


def test_money_in_the_event_contracts_refuses_booleans() -> None:
    from pydantic import TypeAdapter

    from icep.contracts.base import MoneyAmount

    money = TypeAdapter(MoneyAmount)
    assert money.validate_json("12") == 12.0 and money.validate_python(2.5) == 2.5
    for wrong in ("true", '"12"'):
        with pytest.raises(ValidationError):
            money.validate_json(wrong)


def test_an_award_may_name_the_product_offered() -> None:
    assert (
        initiative_schemas.AwardItemIn.model_validate({**BID, "product_code": "SM-155-HE"}).product_code
        == "SM-155-HE"
    )
    assert initiative_schemas.AwardItemIn.model_validate(BID).product_code is None
    assert errors(initiative_schemas.AwardItemIn, {**BID, "product_code": ""}) == [("product_code",)]


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (supplier_schemas.MitigationIn, {"mitigation": "voting trust (synthetic)"}),
        (supplier_schemas.BlockIn, {"reason": "no mitigation (synthetic)"}),
    ],
)
def test_an_adjudication_names_the_person(model: type[BaseModel], body: dict[str, Any]) -> None:
    assert errors(model, body) == [("adjudicator",)]
    for nobody in ("", "   ", "x" * 201):
        assert errors(model, {**body, "adjudicator": nobody}) == [("adjudicator",)]
    taken = model.model_validate({**body, "adjudicator": "  Anna Example "})
    assert taken.adjudicator == "Anna Example"  # type: ignore[attr-defined]


def test_an_adjudication_names_the_version_whose_matches_were_seen() -> None:
    with pytest.raises(PreconditionRequired) as e:
        supplier_routes._matches_seen(None)
    assert e.value.status == 428 and "If-Match" in e.value.detail
    assert supplier_routes._matches_seen(4) == 4
