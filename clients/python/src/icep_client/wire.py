"""Small helpers between HTTP and the models: query parameters, answers read as models."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import httpx

from icep_client.models import IcepModel, Versioned

M = TypeVar("M", bound=IcepModel)
Params = Mapping[str, Any]


def query(params: Params | None) -> dict[str, Any]:
    """Query parameters without the ones left out (None); sequences are sent comma-separated."""
    out: dict[str, Any] = {}
    for name, value in (params or {}).items():
        if value is None:
            continue
        out[name] = (
            ",".join(str(v) for v in value) if isinstance(value, list | tuple | set | frozenset) else value
        )
    return out


def body(**fields: Any) -> dict[str, Any]:
    """A request body of the fields given (None: left out, so the API's default applies)."""
    return {name: value for name, value in fields.items() if value is not None}


def parse(model: type[M], response: httpx.Response) -> M:
    """The answer as `model`; a versioned resource keeps the answer's `ETag` for `If-Match`."""
    found = model.model_validate(response.json())
    if isinstance(found, Versioned):
        found.with_etag(response.headers.get("ETag"))
    return found


def precondition(resource: Versioned | str, if_match: str | None) -> str:
    """What `If-Match` sends: the ETag given, else the one of the resource as it was read."""
    if if_match is not None:
        return if_match
    if isinstance(resource, Versioned):
        return resource.etag
    raise ValueError(
        "pass the resource as you read it (its ETag is sent as If-Match), or if_match= "
        '(an ETag such as \'"3"\', or "*" for whatever version is current)'
    )


def ident(resource: Any) -> str:
    """The id of a resource given as a model or as its id."""
    return resource if isinstance(resource, str) else str(resource.id)
