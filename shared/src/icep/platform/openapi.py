"""What every service's OpenAPI document says beyond its routes: security, errors, headers.

FastAPI documents what a route declares; the platform adds what every `/v1` operation shares, so no
route has to repeat it and no document forgets it:

- the OAuth2 client-credentials scheme (tokens from the gateway's `POST /oauth/token`), required by
  every `/v1` operation;
- RFC 9457 problem responses (`application/problem+json`) for every error an operation can give,
  including FastAPI's request validation (422), which the platform answers as problem JSON too
  (`problems.py`), not as FastAPI's `HTTPValidationError`;
- `Idempotency-Key` on every POST and `Idempotent-Replayed` on its answers, `If-Match` answers (412,
  428), and the `ETag`, `Location`, `Retry-After` and `RateLimit` response headers.

`install_openapi(app)` makes `app.openapi()` return the completed document; `complete_document` does
the completing on any FastAPI-generated document.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

from icep.platform.problems import PROBLEM_BASE, PROBLEM_MEDIA_TYPE

SECURITY_SCHEME = "OAuth2"
#: The client's own authentication at the token endpoint.
CLIENT_SECRET_SCHEME = "ClientSecretBasic"
#: The scopes a client may hold (see `deploy/dev-clients.toml`); a token carries a subset. Every service
#: enforces them per operation (`icep.platform.auth.required_scope`): reads need `read`, changes `write`.
SCOPES: dict[str, str] = {
    "read": "Reading: every GET and HEAD operation, the event stream and the feed",
    "write": "Changing: every POST, PUT, PATCH and DELETE operation",
}
#: Scopes each operation requires, by method (as `icep.platform.auth.required_scope` enforces them).
REQUIRED_SCOPES: dict[str, list[str]] = {
    method: ["read" if method in ("get", "head", "options") else "write"]
    for method in ("get", "put", "post", "delete", "options", "head", "patch", "trace")
}
READ_METHODS = frozenset({"get", "head"})
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

#: `Idempotency-Key`: 1 to 255 visible ASCII characters.
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7E]{1,255}$"

_COMPONENTS = "#/components/"
_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": (
        "An RFC 9457 problem detail. `type` identifies the kind of problem (a URI under "
        f"`{PROBLEM_BASE}`); members beyond the standard ones are extensions, e.g. `errors` (the "
        "offending fields of a request that does not match the schema), `current_state` and `action` "
        "(an illegal state transition) or `required_roles` (a missing role)."
    ),
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {
            "type": "string",
            "format": "uri-reference",
            "description": "The problem type",
            "examples": [f"{PROBLEM_BASE}validation"],
        },
        "title": {"type": "string", "description": "Short summary of the problem type"},
        "status": {"type": "integer", "minimum": 100, "maximum": 599, "description": "The HTTP status"},
        "detail": {"type": "string", "description": "What went wrong in this occurrence"},
        "instance": {"type": "string", "description": "The request path the problem occurred on"},
        "errors": {
            "type": "array",
            "description": "Validation problems: each offending field",
            "items": {"$ref": f"{_COMPONENTS}schemas/ProblemFieldError"},
        },
        "current_state": {"type": "string", "description": "Illegal transition: the current state"},
        "action": {"type": "string", "description": "Illegal transition: the action refused"},
        "required_roles": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Forbidden: the roles of which the caller needs one",
        },
        "retry_after": {"type": "integer", "description": "Too many requests: seconds to wait"},
    },
    "additionalProperties": True,
    "examples": [
        {
            "type": f"{PROBLEM_BASE}validation",
            "title": "Unprocessable content",
            "status": 422,
            "detail": "the request does not match the schema",
            "instance": "/v1/plans",
            "errors": [{"location": "body.title", "message": "Field required", "type": "missing"}],
        }
    ],
}

PROBLEM_FIELD_ERROR_SCHEMA: dict[str, Any] = {
    "title": "ProblemFieldError",
    "type": "object",
    "required": ["location", "message", "type"],
    "properties": {
        "location": {
            "type": "string",
            "description": "Where: `body.<field>...`, `query.<name>`, `path.<name>` or `header.<name>`",
        },
        "message": {"type": "string"},
        "type": {"type": "string", "description": "The kind of error, e.g. `missing`, `string_too_long`"},
    },
    "additionalProperties": True,
}

_HEADERS: dict[str, dict[str, Any]] = {
    "ETag": {
        "description": "The version of the resource returned; send it back as `If-Match` to change it",
        "schema": {"type": "string", "examples": ['"3"']},
    },
    "Location": {
        "description": "The path of the created resource",
        "schema": {"type": "string", "examples": ["/v1/plans/0193a4e2-7c1a-7b7e-9f3c-2d4e5f6a7b8c"]},
    },
    "IdempotentReplayed": {
        "description": (
            "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`"
        ),
        "schema": {"type": "string", "enum": ["true"]},
    },
    "RetryAfter": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "string", "pattern": "^[0-9]+$", "examples": ["12"]},
    },
    "RateLimitLimit": {
        "description": "Requests allowed in the window of the limit closest to running out (IETF fields)",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "RateLimitRemaining": {
        "description": "Requests left in that window",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "RateLimitReset": {
        "description": "Seconds until that window resets",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "RateLimitPolicy": {
        "description": "Every limit that applies to the caller, as `<requests>;w=<window seconds>`",
        "schema": {"type": "string", "examples": ["600;w=60"]},
    },
    "WWWAuthenticate": {
        "description": "The authentication scheme to use (`Bearer`)",
        "schema": {"type": "string", "examples": ['Bearer realm="icep"']},
    },
}

_PARAMETERS: dict[str, dict[str, Any]] = {
    "IdempotencyKey": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": (
            "Makes the request safe to retry: a retry with the same key (and the same body) gets the "
            "first answer again, with `Idempotent-Replayed: true`; the same key with another body is "
            "422, and while the first request is still in progress 409. Keys are the caller's own "
            "(a UUID is a good choice), 1 to 255 visible ASCII characters."
        ),
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": IDEMPOTENCY_KEY_PATTERN},
        "example": "5d0f6c8e-3b1a-4f0e-9c55-7f3a2d1b9e40",
    },
}

#: status -> (component name, description, headers)
_ERRORS: dict[int, tuple[str, str, dict[str, str]]] = {
    400: ("BadRequest", "Bad request: the request is malformed (e.g. an invalid Content-Length)", {}),
    401: (
        "Unauthorized",
        "Unauthorized: no bearer token, or one that is invalid or expired",
        {"WWW-Authenticate": "WWWAuthenticate"},
    ),
    403: (
        "Forbidden",
        "Forbidden: the caller lacks a role or right this action needs, or its token lacks the scope "
        "(`insufficient_scope`)",
        {},
    ),
    404: (
        "NotFound",
        "Not found: no such resource, or none the caller's nation may see (the two look the same)",
        {},
    ),
    405: (
        "MethodNotAllowed",
        "Method not allowed: a path parameter holding an encoded `/` addressed another resource",
        {},
    ),
    409: (
        "Conflict",
        "Conflict: an illegal state transition (the problem names `current_state`), a duplicate, a "
        "concurrent change, or a request with the same `Idempotency-Key` still in progress (then with "
        "`Retry-After`)",
        {"Retry-After": "RetryAfter"},
    ),
    412: (
        "PreconditionFailed",
        "Precondition failed: `If-Match` names a version that is no longer current (or no ETag of "
        "this API); read the resource again",
        {},
    ),
    413: ("ContentTooLarge", "Content too large: the request body exceeds the gateway's limit", {}),
    415: ("UnsupportedMediaType", "Unsupported media type: send `application/json`", {}),
    422: (
        "UnprocessableContent",
        "Unprocessable content: the request does not match the schema (`errors` names each offending "
        "field) or breaks a rule, or an `Idempotency-Key` is reused with another request",
        {},
    ),
    428: ("PreconditionRequired", "Precondition required: this change needs an `If-Match` header", {}),
    429: (
        "TooManyRequests",
        "Too many requests: the caller's rate limit is used up; retry after `Retry-After` seconds",
        {"Retry-After": "RetryAfter"},
    ),
    500: ("InternalServerError", "Internal server error: a bug, logged with the request's trace", {}),
    502: ("BadGateway", "Bad gateway: the service behind the gateway gave no valid answer", {}),
    503: (
        "ServiceUnavailable",
        "Service unavailable: the service behind the gateway, or a store it needs, is unreachable",
        {"Retry-After": "RetryAfter"},
    ),
    504: ("GatewayTimeout", "Gateway timeout: the service behind the gateway did not answer in time", {}),
}

#: What the gateway tells a client about its rate limits, on every answer to a `/v1` request.
RATE_LIMIT_HEADERS: dict[str, str] = {
    "RateLimit-Limit": "RateLimitLimit",
    "RateLimit-Remaining": "RateLimitRemaining",
    "RateLimit-Reset": "RateLimitReset",
    "RateLimit-Policy": "RateLimitPolicy",
}

#: Errors any `/v1` operation can give (the gateway's and the platform's).
_ALWAYS = (400, 401, 403, 422, 429, 500, 502, 503, 504)

_PATH_PARAMETER = re.compile(r"\{[^}]+\}")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table for a description (tag descriptions state who reads what in each state)."""
    if any(len(row) != len(headers) for row in rows):
        raise ValueError("every row of a table has one cell per header")

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    return "\n".join([line(headers), "|" + "---|" * len(headers), *(line(row) for row in rows)])


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"{_COMPONENTS}{kind}/{name}"}


def problem_content() -> dict[str, Any]:
    return {PROBLEM_MEDIA_TYPE: {"schema": _ref("schemas", "Problem")}}


def components() -> dict[str, dict[str, Any]]:
    """The components every document of the platform carries."""
    responses: dict[str, Any] = {}
    for name, description, headers in _ERRORS.values():
        response: dict[str, Any] = {"description": description, "content": problem_content()}
        response["headers"] = {h: _ref("headers", c) for h, c in {**headers, **RATE_LIMIT_HEADERS}.items()}
        responses[name] = response
    return {
        "schemas": {"Problem": PROBLEM_SCHEMA, "ProblemFieldError": PROBLEM_FIELD_ERROR_SCHEMA},
        "responses": responses,
        "headers": dict(_HEADERS),
        "parameters": dict(_PARAMETERS),
        "securitySchemes": {
            SECURITY_SCHEME: {
                "type": "oauth2",
                "description": (
                    "OAuth2 client credentials: the gateway issues short-lived JWTs at `/oauth/token`; "
                    "send them as `Authorization: Bearer <token>`. Reads need the `read` scope, changes "
                    "the `write` scope; what a caller may do and see beyond that follows from the roles "
                    "and the nation the token carries."
                ),
                "flows": {"clientCredentials": {"tokenUrl": "/oauth/token", "scopes": dict(SCOPES)}},
            },
            CLIENT_SECRET_SCHEME: {
                "type": "http",
                "scheme": "basic",
                "description": (
                    "How a client authenticates at `POST /oauth/token`: HTTP Basic with its client id and "
                    "secret (RFC 6749 section 2.3.1); the form fields `client_id` and `client_secret` are "
                    "the alternative."
                ),
            },
        },
    }


def _has_header(operation: dict[str, Any], name: str) -> bool:
    return any(
        p.get("in") == "header" and str(p.get("name", "")).lower() == name.lower()
        for p in operation.get("parameters", [])
    )


def _error_statuses(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    statuses = list(_ALWAYS)
    changes = method not in READ_METHODS
    if _PATH_PARAMETER.search(path):
        statuses += [404, 405]
    elif changes:
        statuses.append(404)  # a resource the body refers to
    if changes:
        statuses.append(409)
    if "requestBody" in operation:
        statuses += [413, 415]
    if _has_header(operation, "If-Match"):
        statuses += [412, 428]
    return sorted(statuses)


def _complete_operation(path: str, method: str, operation: dict[str, Any]) -> None:
    operation["security"] = [{SECURITY_SCHEME: list(REQUIRED_SCOPES.get(method, []))}]
    if method == "post" and not _has_header(operation, "Idempotency-Key"):
        operation.setdefault("parameters", []).append(_ref("parameters", "IdempotencyKey"))
    responses: dict[str, Any] = operation.setdefault("responses", {})
    single = bool(_PATH_PARAMETER.search(path.rsplit("/", 1)[-1])) or _has_header(operation, "If-Match")
    for status, response in responses.items():
        if "$ref" in response or not status[:1].isdigit():
            continue
        code = int(status)
        if code == 422 and response.get("description") == "Validation Error":
            responses[status] = _ref("responses", _ERRORS[422][0])  # FastAPI's default
            continue
        if code >= 400:
            # Every error the platform gives is problem JSON, whatever the route declared.
            response["content"] = problem_content()
        headers: dict[str, Any] = response.setdefault("headers", {})
        for header, component in RATE_LIMIT_HEADERS.items():
            headers.setdefault(header, _ref("headers", component))
        if not 200 <= code < 300:
            continue
        if code != 204 and (single or code == 201):
            headers.setdefault("ETag", _ref("headers", "ETag"))
        if code == 201:
            headers.setdefault("Location", _ref("headers", "Location"))
        if method == "post":
            headers.setdefault("Idempotent-Replayed", _ref("headers", "IdempotentReplayed"))
    for code in _error_statuses(path, method, operation):
        responses.setdefault(str(code), _ref("responses", _ERRORS[code][0]))


def _complete_errors(operation: dict[str, Any]) -> None:
    """Outside `/v1` (the gateway's own endpoints): error responses a route declared without a body are
    problem JSON (those with another format, like OAuth2 errors, declare their model)."""
    for status, response in operation.get("responses", {}).items():
        if status[:1] in "45" and "$ref" not in response and "content" not in response:
            response["content"] = problem_content()
            if status == "429":
                response["headers"] = {
                    h: _ref("headers", c) for h, c in {**_ERRORS[429][2], **RATE_LIMIT_HEADERS}.items()
                }


def _resolved(document: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/"):
        target: Any = document
        for part in node["$ref"][2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        node = target
    return node


def _add_links(document: dict[str, Any]) -> None:
    """OpenAPI links from each `201 Created` to the operations on what it created: `POST /v1/plans` ->
    `GET /v1/plans/{plan_id}`, `POST /v1/plans/{plan_id}/submit`, ... The new resource's id is the body's
    `<parameter>` (`contract_id`) or, for a top-level collection, its `id`; the request's own path
    parameters carry over, and a top-level resource's `ETag` becomes the `If-Match` of its actions.
    Clients and test tools (schemathesis) follow them from a created resource to its operations."""
    paths: dict[str, Any] = document.get("paths", {})
    for path, item in paths.items():
        created = item.get("post", {}).get("responses", {}).get("201")
        if not path.startswith("/v1/") or not isinstance(created, dict) or "$ref" in created:
            continue
        schema = _resolved(document, created.get("content", {}).get("application/json", {}).get("schema"))
        properties = schema.get("properties", {}) if isinstance(schema, dict) else {}
        known = [name[1:-1] for name in _PATH_PARAMETER.findall(path)]
        links: dict[str, Any] = {}
        for other, other_item in paths.items():
            match = re.fullmatch(re.escape(path) + r"/\{([^}/]+)\}(/.*)?", other)
            if match is None:
                continue
            new, rest = match.group(1), match.group(2) or ""
            if new in properties:
                new_id = f"$response.body#/{new}"
            elif not known and "id" in properties:
                new_id = "$response.body#/id"
            else:
                continue
            for method in HTTP_METHODS:
                operation = other_item.get(method)
                if not isinstance(operation, dict) or not operation.get("operationId"):
                    continue
                parameters = {name: f"$request.path.{name}" for name in known}
                parameters[new] = new_id
                if not known and "{" not in rest and _has_header(operation, "If-Match"):
                    parameters["header.If-Match"] = "$response.header.ETag"
                links[operation["operationId"]] = {
                    "operationId": operation["operationId"],
                    "parameters": parameters,
                    "description": f"{method.upper()} {other} on the created resource",
                }
        if links:
            created["links"] = links


#: The extension a route's `openapi_extra` carries its declared links in (`links(...)`); the completed
#: document has them as OpenAPI `links` on the response instead.
LINKS_EXTENSION = "x-icep-links"

#: The new resource's id in a `201` answer, and the request's own path parameter, as link expressions.
CREATED_ID = "$response.body#/id"
ETAG = "$response.header.ETag"


def from_path(name: str) -> str:
    """The link expression of the request's own path parameter `name`."""
    return f"$request.path.{name}"


def from_body(pointer: str) -> str:
    """The link expression of a value of the answer's body (`items/0/nation`)."""
    return f"$response.body#/{pointer}"


def links(
    *operation_ids: str, status: int = 200, if_match: bool = False, **parameters: str
) -> dict[str, Any]:
    """`openapi_extra` declaring where an answer leads: an OpenAPI link from the `status` response to each
    operation (create -> act -> read), with the same `parameters` (path parameter -> expression, e.g.
    `plan_id=CREATED_ID`), and the answer's `ETag` as the `If-Match` of those that take one when
    `if_match`. Merge several with `|` for different parameters. Clients and schemathesis' stateful phase
    follow them; `complete_document` checks each target and parameter exists."""
    declared = {op: {"parameters": dict(parameters), "if_match": if_match} for op in operation_ids}
    return {LINKS_EXTENSION: {str(status): declared}}


def merge_links(*declarations: dict[str, Any]) -> dict[str, Any]:
    """Several `links(...)` declarations of one operation in one `openapi_extra`."""
    merged: dict[str, Any] = {}
    for declaration in declarations:
        for status, targets in declaration.get(LINKS_EXTENSION, {}).items():
            merged.setdefault(status, {}).update(targets)
    return {LINKS_EXTENSION: merged}


def _operation_index(document: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """operationId -> (path, method, operation)."""
    return {
        operation["operationId"]: (path_, method, operation)
        for path_, item in document.get("paths", {}).items()
        for method in HTTP_METHODS
        if isinstance(operation := item.get(method), dict) and operation.get("operationId")
    }


def _declared_links(document: dict[str, Any]) -> None:
    """Turn each operation's declared links (`links(...)`) into OpenAPI `links` on its response; they
    replace what `_add_links` inferred for that response. A target or parameter that does not exist is an
    error here, not a dead link in a client."""
    index = _operation_index(document)
    for op_id, (_path, _method, operation) in list(index.items()):
        declared = operation.pop(LINKS_EXTENSION, None)
        if not declared:
            continue
        for status, targets in declared.items():
            response = operation.get("responses", {}).get(status)
            if not isinstance(response, dict) or "$ref" in response:
                raise ValueError(f"{op_id} declares links from a response {status} it does not document")
            found: dict[str, Any] = {}
            for target, spec in sorted(targets.items()):
                if target not in index:
                    raise ValueError(f"{op_id} links to {target}, which is no operation of this document")
                target_path, method, target_op = index[target]
                parameters = dict(spec["parameters"])
                wanted = set(_PATH_PARAMETER_NAMES.findall(target_path))
                unknown = set(parameters) - wanted
                if unknown:
                    raise ValueError(
                        f"{op_id} links to {target} with parameters it has not: {sorted(unknown)}"
                    )
                source_path = set(_PATH_PARAMETER_NAMES.findall(_path))
                strays = [
                    v
                    for v in parameters.values()
                    if v.startswith("$request.path.") and v[14:] not in source_path
                ]
                if strays:
                    raise ValueError(
                        f"{op_id} links to {target} with {strays}, not parameters of its own path"
                    )
                if spec["if_match"] and _has_header(target_op, "If-Match"):
                    parameters["header.If-Match"] = ETAG
                found[target] = {
                    "operationId": target,
                    "parameters": parameters,
                    "description": f"{method.upper()} {target_path}",
                }
            response["links"] = found


_PATH_PARAMETER_NAMES = re.compile(r"\{([^}]+)\}")


def _uses(document: Any, ref: str) -> bool:
    if isinstance(document, dict):
        return document.get("$ref") == ref or any(_uses(v, ref) for v in document.values())
    if isinstance(document, list):
        return any(_uses(v, ref) for v in document)
    return False


def complete_document(document: dict[str, Any]) -> dict[str, Any]:
    """Add the platform's shared parts to a FastAPI-generated document (in place; also returned)."""
    for path, item in document.get("paths", {}).items():
        for method in HTTP_METHODS:
            if method not in item:
                continue
            if path.startswith("/v1/"):
                _complete_operation(path, method, item[method])
            else:
                _complete_errors(item[method])
    _add_links(document)
    _declared_links(document)
    sections = document.setdefault("components", {})
    for section, entries in components().items():
        target = sections.setdefault(section, {})
        for name, value in entries.items():
            if name in target and target[name] != value:
                raise ValueError(f"the document already has a different components/{section}/{name}")
            target[name] = value
    schemas = sections["schemas"]
    # FastAPI's validation error models, now that 422 is problem JSON (unless something else uses them);
    # HTTPValidationError first, as it refers to ValidationError.
    for name in _VALIDATION_SCHEMAS:
        if name in schemas:
            rest = {
                **document,
                "components": {**sections, "schemas": {k: v for k, v in schemas.items() if k != name}},
            }
            if not _uses(rest, f"{_COMPONENTS}schemas/{name}"):
                del schemas[name]
    return document


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` (and `/openapi.json`) return the completed document."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete_document(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
