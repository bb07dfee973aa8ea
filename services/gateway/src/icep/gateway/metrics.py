"""Gateway metrics by upstream and route template.

Every call under /v1 that the gateway routes to a service is counted as
`icep_gateway_requests_total{upstream,method,route,status}` and timed as
`icep_gateway_request_duration_seconds{...}` (until the answer's head; a stream is not timed to its end).
`route` is the upstream API's route template (`/v1/plans/{plan_id}`), matched against the paths of the
merged OpenAPI document the gateway serves, or `unmatched`: the label set stays bounded whatever paths
callers send.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from icep.gateway.routing import route as upstream_of

log = logging.getLogger("icep.gateway.metrics")

UNMATCHED = "unmatched"
#: Set in the ASGI scope for the platform's `icep_http_request_duration_seconds` too.
SCOPE_ROUTE = "icep.route_template"

REQUESTS = Counter(
    "icep_gateway_requests_total",
    "Calls routed to a service, by upstream, method, route template and status",
    ["upstream", "method", "route", "status"],
)
DURATION = Histogram(
    "icep_gateway_request_duration_seconds",
    "Time to the answer's head of calls routed to a service",
    ["upstream", "method", "route", "status"],
)
#: Methods outside this set are counted as OTHER (a caller cannot invent label values).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _segments(path: str) -> tuple[str, ...]:
    return tuple(s for s in path.split("/") if s)


class RouteTemplates:
    """Match a request path to one of a fixed set of templates (`{name}` stands for one segment). Where
    several match, the one with literal segments earliest wins (`/v1/plans/summary` over
    `/v1/plans/{plan_id}`)."""

    def __init__(self, templates: Iterable[str]) -> None:
        self._by_length: dict[int, list[tuple[tuple[bool, ...], tuple[str, ...], str]]] = {}
        for template in templates:
            parts = _segments(template)
            literal = tuple(not (p.startswith("{") and p.endswith("}")) for p in parts)
            self._by_length.setdefault(len(parts), []).append((literal, parts, template))
        for candidates in self._by_length.values():
            candidates.sort(key=lambda c: c[0], reverse=True)  # literal-first patterns are tried first

    def __len__(self) -> int:
        return sum(len(c) for c in self._by_length.values())

    def match(self, path: str) -> str:
        parts = _segments(path)
        for literal, wanted, template in self._by_length.get(len(parts), ()):
            if all(not lit or w == p for lit, w, p in zip(literal, wanted, parts, strict=True)):
                return template
        return UNMATCHED

    @classmethod
    def from_openapi(cls, path: Path) -> RouteTemplates:
        """The paths under /v1 of an OpenAPI document; none (everything `unmatched`) when it is missing."""
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("no route templates for the gateway metrics (%s): calls are labelled unmatched", exc)
            return cls(())
        return cls(p for p in document.get("paths", {}) if p.startswith("/v1/"))


class GatewayRequestMetrics:
    """ASGI middleware counting the calls under /v1 that belong to an upstream service."""

    def __init__(self, app: ASGIApp, openapi_file: Path) -> None:
        self.app = app
        self.openapi_file = openapi_file
        self._templates: RouteTemplates | None = None

    @property
    def templates(self) -> RouteTemplates:
        if self._templates is None:
            self._templates = RouteTemplates.from_openapi(self.openapi_file)
        return self._templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        upstream = upstream_of(path) if path.startswith("/v1/") else None
        if upstream is None:
            await self.app(scope, receive, send)
            return
        template = self.templates.match(path)
        scope[SCOPE_ROUTE] = template
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        started = time.perf_counter()
        status = 500
        observed = False

        def observe() -> None:
            nonlocal observed
            if not observed:
                observed = True
                labels = (upstream, method, template, str(status))
                REQUESTS.labels(*labels).inc()
                DURATION.labels(*labels).observe(time.perf_counter() - started)

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                observe()
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            observe()
