"""Small HTTP helpers shared by the services' routes: ETags, If-Match, pagination links."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Header, Request

from icep.platform.errors import PreconditionFailed

_ETAG = re.compile(r'(?:W/)?"?([0-9]{1,18})"?', re.ASCII)


def etag(version: int) -> str:
    return f'"{version}"'


def if_match_version(if_match: Annotated[str | None, Header(alias="If-Match")] = None) -> int | None:
    """The version an `If-Match` header names, or None when absent (`*` also means no check)."""
    if if_match is None or if_match.strip() == "*":
        return None
    match = _ETAG.fullmatch(if_match.strip())
    if match is None:
        raise PreconditionFailed(f"If-Match {if_match!r} is not an ETag this API issued")
    return int(match.group(1))


def next_link(request: Request, cursor: str | None) -> str | None:
    """The next page as a path and query: relative, so it is right behind the gateway (whose host the
    service does not know) and at the service alike."""
    if cursor is None:
        return None
    url = request.url.include_query_params(cursor=cursor)
    return f"{url.path}?{url.query}"
