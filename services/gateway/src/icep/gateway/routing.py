"""Where a path goes, and which headers cross the proxy: the gateway's routing rules in plain Python."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

# --- routing ------------------------------------------------------------------------------------------

#: Path prefix -> upstream service. Matched on whole path segments, longest prefix first.
ROUTES: dict[str, str] = {
    "/v1/plans": "plans",
    "/v1/capacity": "plans",
    "/v1/subscriptions": "notifications",
    "/v1/events": "notifications",
    "/v1/deliveries": "notifications",
    "/v1/procurement": "procurement",
    "/v1/initiatives": "procurement",
    "/v1/demand": "procurement",
    "/v1/demand-capacity": "procurement",
    "/v1/suppliers": "procurement",
    "/v1/standards": "standards",
    "/v1/interoperability": "standards",
    "/v1/interchangeability": "standards",
    # Operators' tools of each service (outbox, dead letters): the service's name is in the path.
    "/v1/operations/plans": "plans",
    "/v1/operations/procurement": "procurement",
    "/v1/operations/standards": "standards",
    "/v1/operations/notifications": "notifications",
}

UPSTREAMS: frozenset[str] = frozenset(ROUTES.values())


def _segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s]


@functools.lru_cache(maxsize=256)
def _prefix_segments(prefix: str) -> tuple[str, ...]:
    return tuple(_segments(prefix))


def route(path: str, routes: Mapping[str, str] = ROUTES) -> str | None:
    """The upstream that serves `path`, or None. `/v1/plans` matches `/v1/plans/7`, not `/v1/plansx`."""
    segments = tuple(_segments(path))
    best: tuple[int, str] | None = None
    for prefix, upstream in routes.items():
        wanted = _prefix_segments(prefix)  # split once per prefix, not on every request
        if segments[: len(wanted)] == wanted and (best is None or len(wanted) > best[0]):
            best = (len(wanted), upstream)
    return best[1] if best else None


# --- headers ------------------------------------------------------------------------------------------

#: Hop-by-hop headers (RFC 9110 section 7.6.1): meaningful for one connection only, never forwarded.
HOP_BY_HOP: frozenset[str] = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",  # not standard, but sent by old clients and equally connection-specific
    }
)


def hop_by_hop(headers: Iterable[tuple[str, str]]) -> frozenset[str]:
    """The lower-case names not to forward: the fixed list plus those the Connection header names."""
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
        if token.strip()
    }
    return HOP_BY_HOP | named


def end_to_end(headers: Iterable[tuple[str, str]], *, drop: Iterable[str] = ()) -> list[tuple[str, str]]:
    """The headers a proxy forwards: all but hop-by-hop ones and the extra lower-case names in `drop`."""
    headers = list(headers)
    skip = hop_by_hop(headers) | {d.lower() for d in drop}
    return [(name, value) for name, value in headers if name.lower() not in skip]


def end_to_end_raw(
    headers: Iterable[tuple[bytes, bytes]], drop: frozenset[bytes] = frozenset()
) -> list[tuple[bytes, bytes]]:
    """`end_to_end` on the raw header pairs of an ASGI scope or an HTTP client (bytes, names lower-cased),
    as the proxy forwards them; `drop` holds lower-case names besides `HOP_BY_HOP`."""
    headers = [(name.lower(), value) for name, value in headers]
    skip = _HOP_BY_HOP_RAW | drop
    named = [value for name, value in headers if name == b"connection"]
    if named:
        skip = skip | {t.strip().lower() for value in named for t in value.split(b",") if t.strip()}
    return [(name, value) for name, value in headers if name not in skip]


_HOP_BY_HOP_RAW: frozenset[bytes] = frozenset(name.encode("latin-1") for name in HOP_BY_HOP)
