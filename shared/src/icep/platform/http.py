"""Small HTTP helpers shared by the services' routes: ETags, If-Match, pagination links."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import Depends, Header, Request

from icep.platform.errors import PreconditionFailed, PreconditionRequired

_ETAG = re.compile(r'(?:W/)?"?([0-9]{1,18})"?', re.ASCII)

#: What `optional_if_match` gives for `If-Match: *` (RFC 9110: any current representation).
ANY_VERSION: Literal["*"] = "*"

IfMatchCondition = int | Literal["*"] | None


def etag(version: int) -> str:
    return f'"{version}"'


def _parse_if_match(if_match: str) -> int | Literal["*"]:
    value = if_match.strip()
    if value == "*":
        return ANY_VERSION
    match = _ETAG.fullmatch(value)
    if match is None:
        raise PreconditionFailed(f"If-Match {if_match!r} is not an ETag this API issued")
    return int(match.group(1))


_IF_MATCH_DOC = (
    'The ETag of the version you read (e.g. `"3"`), or `*` for whatever version is current. Required to '
    "change an existing resource: 428 without it, 412 when the version is no longer current."
)


def if_match_version(
    if_match: Annotated[str | None, Header(alias="If-Match", description=_IF_MATCH_DOC)] = None,
) -> int | None:
    """The version an `If-Match` header names, for a change of an existing resource.

    A change without `If-Match` is refused with 428 (the caller must say which version it read, so no
    update is lost); `If-Match: *` is the caller's explicit "whatever the current version" and gives None
    (no check); a header that is no ETag of this API is 412."""
    if if_match is None:
        raise PreconditionRequired(
            "this change needs If-Match with the ETag of the version you read (or * to change any version)"
        )
    parsed = _parse_if_match(if_match)
    return parsed if isinstance(parsed, int) else None


#: The version a change was decided on (`If-Match`, required): a route's typed parameter.
IfMatch = Annotated[int | None, Depends(if_match_version)]


def optional_if_match(
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description="Leave out to create; to change what exists, the ETag of the version read (or `*`)",
        ),
    ] = None,
) -> IfMatchCondition:
    """For a request that creates or changes (an upsert): None when absent, `"*"` or the version named.

    The use case decides: absent is fine for a creation and 428 for a change of what exists."""
    return None if if_match is None else _parse_if_match(if_match)


def next_link(request: Request, cursor: str | None) -> str | None:
    """The next page as a path and query: relative, so it is right behind the gateway (whose host the
    service does not know) and at the service alike."""
    if cursor is None:
        return None
    url = request.url.include_query_params(cursor=cursor)
    return f"{url.path}?{url.query}"
