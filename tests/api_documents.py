"""What the API document tests share: walking the merged OpenAPI document (the documents themselves are
the `generated`, `openapi` and `asyncapi` fixtures of tests/conftest.py, made once per run)."""

from __future__ import annotations

from typing import Any

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def resolve(document: dict[str, Any], node: Any) -> Any:
    """`node`, following local `$ref`s until it is not a reference."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def v1_operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        if path.startswith("/v1/")
        for method, operation in item.items()
        if method in METHODS
    ]


def schema_at(document: dict[str, Any], schema: Any, pointer: str) -> Any:
    """The schema of the value at `pointer` (`items/0/nation`) in a body of `schema`; None when no such
    value can be there. An object open to any property (`additionalProperties`) admits any pointer."""
    node = resolve(document, schema)
    for part in pointer.split("/"):
        options = [resolve(document, o) for o in node.get("anyOf", node.get("allOf", [node]))]
        found = None
        for option in options:
            if part.isdigit() and option.get("type") == "array":
                found = resolve(document, option.get("items", {}))
            elif part in option.get("properties", {}):
                found = resolve(document, option["properties"][part])
            elif option.get("additionalProperties") is True:
                return option
            if found is not None:
                break
        if found is None:
            return None
        node = found
    return node


def operations_by_id(document: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    return {
        operation["operationId"]: (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


# --- what integrators ask ---------------------------------------------------------------------------------
