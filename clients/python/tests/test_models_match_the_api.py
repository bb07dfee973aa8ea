"""The SDK's models against the platform's OpenAPI document (docs/api/openapi.json): every field a model
has exists in the schema it names, with a compatible type; every field the schema requires is in the
model; a field the model requires is one the API always sends. A change to the API that the models do
not follow fails here."""

from __future__ import annotations

import json
import types
import typing
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from icep_client import models
from pydantic import BaseModel

OPENAPI = json.loads((Path(__file__).resolve().parents[3] / "docs" / "api" / "openapi.json").read_text())
SCHEMAS: dict[str, Any] = OPENAPI["components"]["schemas"]
MODELS = [
    m
    for m in vars(models).values()
    if isinstance(m, type) and issubclass(m, models.IcepModel) and m.__dict__.get("__schema__")
]


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = SCHEMAS[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def nullable(schema: dict[str, Any]) -> bool:
    return any(option.get("type") == "null" for option in schema.get("anyOf", []))


def problems(annotation: Any, schema: dict[str, Any], where: str) -> list[str]:
    """Why a value of the schema might not be read as `annotation` (empty: compatible)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return []
    if origin in (typing.Union, types.UnionType):
        others = [a for a in args if a is not type(None)]
        assert len(others) == 1, f"{where}: one type or None"
        options = [o for o in schema.get("anyOf", [schema]) if o.get("type") != "null"]
        assert len(options) == 1, f"{where}: the schema offers {options}"
        return problems(others[0], options[0], where)
    if nullable(schema):
        return [f"{where}: the API may send null, the model does not accept it"]
    if "$ref" in schema and isinstance(annotation, type) and issubclass(annotation, BaseModel):
        named = schema["$ref"].rsplit("/", 1)[1]
        expected = getattr(annotation, "__schema__", "")
        return [] if named == expected else [f"{where}: the API sends {named}, the model reads {expected}"]
    schema = resolve(schema)
    kind = schema.get("type")
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [] if kind == "object" else [f"{where}: {kind} is not an object"]
    if origin is list:
        if kind != "array":
            return [f"{where}: {kind} is not an array"]
        return problems(args[0], schema.get("items", {}), f"{where}[]")
    if origin is dict:
        if kind != "object":
            return [f"{where}: {kind} is not an object"]
        values = [schema[k] for k in ("additionalProperties",) if isinstance(schema.get(k), dict)]
        values += list(schema.get("patternProperties", {}).values())
        return [p for v in values for p in problems(args[1], v, f"{where}{{}}")]
    expected = {
        str: ("string", None),
        int: ("integer", None),
        bool: ("boolean", None),
        date: ("string", "date"),
        datetime: ("string", "date-time"),
    }
    if annotation is float:
        return [] if kind in ("number", "integer") else [f"{where}: {kind} is not a number"]
    if annotation in expected:
        want_type, want_format = expected[annotation]
        if kind != want_type or (want_format and schema.get("format") != want_format):
            return [f"{where}: {kind} ({schema.get('format')}) is not {annotation.__name__}"]
        return []
    return [f"{where}: no rule for {annotation!r}"]


def test_every_model_names_a_schema_of_the_api() -> None:
    assert len(MODELS) >= 30
    assert [m.__name__ for m in MODELS if m.__schema__ not in SCHEMAS] == []


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_a_model_reads_what_its_schema_says(model: type[models.IcepModel]) -> None:
    schema = resolve(SCHEMAS[model.__schema__])
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    hints = typing.get_type_hints(model)
    # By the name on the wire: a field may carry another name in Python (`Timeline.first` reads `from`).
    fields = {f.alias or n: (n, f) for n, f in model.model_fields.items()}
    assert sorted(set(fields) - set(properties)) == [], "fields the API does not have"
    assert sorted(required - set(fields)) == [], "fields the API always sends that the model leaves out"
    assert sorted(w for w, (_, f) in fields.items() if f.is_required() and w not in required) == [], (
        "fields the model requires that the API may leave out"
    )
    found = [
        p
        for wire, (name, _) in fields.items()
        for p in problems(hints[name], properties[wire], f"{model.__name__}.{name}")
    ]
    assert found == []


def test_the_check_finds_drift() -> None:
    """The rules above fail on what drift looks like (a check that cannot fail checks nothing)."""
    assert problems(int, {"type": "string"}, "x") != []
    assert problems(str, {"anyOf": [{"type": "string"}, {"type": "null"}]}, "x") != []
    assert problems(datetime, {"type": "string"}, "x") != []
    assert problems(list[str], {"type": "array", "items": {"type": "integer"}}, "x") != []
    assert problems(models.Plan, {"$ref": "#/components/schemas/SubscriptionOut"}, "x") != []
    assert problems(dict[str, int], {"type": "object", "additionalProperties": {"type": "string"}}, "x") != []
    assert problems(float, {"type": "integer"}, "x") == []
