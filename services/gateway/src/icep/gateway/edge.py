"""What the gateway accepts at its edge before anything else: request paths it can forward safely, and
forwarding headers (`X-Forwarded-For` and friends) only from proxies it is told to trust; and the headers
it adds to every answer for browsers (security headers, CORS).

Paths. The gateway routes on the raw path it received and sends exactly that path upstream. A path that a
later hop could read differently is refused with 400 before routing and before the token check: dot
segments (`.`, `..`, also percent-encoded as `%2e`), encoded slashes (`%2f`), backslashes (raw or `%5c`)
and bytes outside ASCII. Otherwise `/v1/plans/../../metrics` would be routed as a plans path and then
normalised by the HTTP client (or the service) to `/metrics`.

Forwarding headers. The client address is the TCP peer's, unless the peer is in the configured trusted
networks (`ICEP_GATEWAY_FORWARDED_ALLOW_IPS`, default none): then it is the right-most address of
`X-Forwarded-For` that is not itself a trusted proxy, and `X-Forwarded-Proto` gives the scheme. The rate
limits, the stream caps and the logs use that address. What reaches the services is rebuilt by the proxy
(see `Proxy._headers`): headers from untrusted peers are never passed on.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from icep.gateway.ratelimit import RATE_LIMIT_HEADERS, encoded_headers
from icep.gateway.routing import ROUTES
from icep.platform.problems import problem

# --- paths --------------------------------------------------------------------------------------------

_DOT_SEGMENTS = (b".", b"..")


def raw_path_of(scope: Scope) -> bytes:
    """The path as the caller sent it (no query); servers that keep no raw path give the decoded one."""
    raw: bytes | None = scope.get("raw_path")
    return raw if raw else scope["path"].encode("utf-8")


def path_refusal(raw_path: bytes) -> str | None:
    """Why `raw_path` (the path of the request line, undecoded) cannot be forwarded; None if it can.

    Cheap for ordinary paths: the segment scan runs only when a dot is in the path.
    """
    if not raw_path.isascii():
        return "bytes outside ASCII (percent-encode them)"
    if b"\\" in raw_path:
        return "a backslash"
    path = raw_path
    if b"%" in path:
        lowered = path.lower()
        if b"%2f" in lowered:
            return "an encoded slash (%2F)"
        if b"%5c" in lowered:
            return "an encoded backslash (%5C)"
        path = lowered.replace(b"%2e", b".")
    if b"." in path:
        for segment in path.split(b"/"):
            # `..;x` is a dot segment to servers that strip path parameters.
            if segment.split(b";", 1)[0] in _DOT_SEGMENTS:
                return "a dot segment (. or ..)"
    return None


def under_route(path: bytes, upstream: str) -> bool:
    """Whether `path` lies under one of `upstream`'s route prefixes (`/v1/plans` or `/v1/plans/...`)."""
    text = path.decode("ascii", "replace")
    return any(
        owner == upstream and (text == prefix or text.startswith(prefix + "/"))
        for prefix, owner in ROUTES.items()
    )


class PathGuardMiddleware:
    """Refuses with 400 (problem JSON) every request whose path `path_refusal` refuses, whatever its token."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            reason = path_refusal(raw_path_of(scope))
            if reason is not None:
                response = problem(
                    400,
                    f"the request path contains {reason}; no API path does, so it is not forwarded",
                    slug="invalid-path",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# --- forwarding headers -------------------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Addresses and CIDR networks (`10.0.0.0/8`, `2001:db8::/32`, `127.0.0.1`); `*` is every address."""
    networks: list[Network] = []
    for raw in values:
        value = raw.strip()
        if value == "*":
            networks += [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
        elif value:
            networks.append(ipaddress.ip_network(value, strict=False))
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


@dataclass(frozen=True)
class TrustedProxies:
    networks: tuple[Network, ...]

    def trusts(self, address: str) -> bool:
        ip = _address(address)
        return ip is not None and any(ip in network for network in self.networks)

    def client_address(self, peer: str, forwarded_for: Iterable[str]) -> str:
        """The caller's address: `peer` unless it is trusted; then the right-most `X-Forwarded-For` entry
        that is not a trusted proxy (all trusted: the left-most). An entry that is no address ends the walk
        at the trusted hop that wrote it: garbage never becomes an address."""
        if not self.trusts(peer):
            return peer
        hops = [hop for value in forwarded_for for hop in value.split(",")]
        current = peer
        for hop in reversed(hops):
            ip = _address(hop)
            if ip is None:
                return current
            current = str(ip)
            if not self.trusts(current):
                return current
        return current


#: Where `ForwardedHeadersMiddleware` notes the direct peer when it trusted it (in the request state).
TRUSTED_PEER = "trusted_peer"


class ForwardedHeadersMiddleware:
    """Takes the client address and scheme from the forwarding headers of trusted peers only.

    For a trusted peer, `scope["client"]` becomes the caller's address and `scope["scheme"]` the right-most
    `X-Forwarded-Proto` (http or https); the peer's own address is kept in the request state
    (`TRUSTED_PEER`) for the proxy, which forwards the chain. Untrusted peers' headers change nothing here.
    """

    def __init__(self, app: ASGIApp, proxies: TrustedProxies) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] == "http" and client and self.proxies.trusts(client[0]):
            peer = client[0]
            forwarded_for: list[str] = []
            proto: str | None = None
            for name, value in scope["headers"]:
                if name == b"x-forwarded-for":
                    forwarded_for.append(value.decode("latin-1"))
                elif name == b"x-forwarded-proto":
                    proto = value.decode("latin-1").rsplit(",", 1)[-1].strip().lower()
            address = self.proxies.client_address(peer, forwarded_for)
            if address != peer:
                scope["client"] = (address, 0)
            if proto in ("http", "https"):
                scope["scheme"] = proto
            scope.setdefault("state", {})[TRUSTED_PEER] = peer
        await self.app(scope, receive, send)


# --- browser-facing headers ---------------------------------------------------------------------------

CORS_ALLOW_METHODS: tuple[str, ...] = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
#: Request headers a browser client may send cross-origin (CORS), beyond the always-allowed ones.
CORS_ALLOW_HEADERS: tuple[str, ...] = (
    "Authorization",
    "Content-Type",
    "If-Match",
    "Idempotency-Key",
    "Last-Event-ID",
    "X-Request-Id",
)
#: Response headers a browser client may read cross-origin.
CORS_EXPOSE_HEADERS: tuple[str, ...] = (
    "ETag",
    "Location",
    "Retry-After",
    *RATE_LIMIT_HEADERS,
    "X-Request-Id",
    "Idempotent-Replayed",
)
#: The developer portal and the API documents: their pages load the gateway's own scripts, styles and
#: images, so they get the portal's Content-Security-Policy instead of the API's `default-src 'none'`.
DOCS_PATHS: tuple[str, ...] = ("/docs", "/openapi.json", "/asyncapi.json")
#: Paths the gateway forwards to the services.
PROXIED_PREFIX = "/v1"


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


class SecurityHeadersMiddleware:
    """Sets the security headers on every response that does not set them itself.

    `headers` go everywhere. `content_security_policy` goes on API responses, `docs_content_security_policy`
    on the portal and the API documents (`DOCS_PATHS`).
    Strict-Transport-Security goes only on responses to HTTPS requests (RFC 6797: never over plain HTTP).
    Proxied responses get `Cache-Control: no-store` unless the service chose a caching policy itself.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        headers: Mapping[str, str],
        content_security_policy: str = "",
        docs_content_security_policy: str = "",
        strict_transport_security: str = "",
    ) -> None:
        self.app = app
        self.headers = list(headers.items())
        self.content_security_policy = content_security_policy
        self.strict_transport_security = strict_transport_security
        # The header sets a response can get, encoded once: by (API path, HTTPS, proxied path).
        self._sets: dict[tuple[bool, bool, bool], list[tuple[bytes, bytes]]] = {}
        for api in (False, True):
            for https in (False, True):
                for proxied in (False, True):
                    chosen = list(self.headers)
                    policy = content_security_policy if api else docs_content_security_policy
                    if policy:
                        chosen.append(("Content-Security-Policy", policy))
                    if strict_transport_security and https:
                        chosen.append(("Strict-Transport-Security", strict_transport_security))
                    if proxied:
                        chosen.append(("Cache-Control", "no-store"))
                    self._sets[api, https, proxied] = encoded_headers(chosen)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        extra = self._sets[
            not any(_under(path, docs) for docs in DOCS_PATHS),
            scope.get("scheme") == "https",
            _under(path, PROXIED_PREFIX),
        ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                current: list[tuple[bytes, bytes]] = list(message.get("headers", []))
                present = {k.lower() for k, _ in current}
                message = {**message, "headers": current + [(k, v) for k, v in extra if k not in present]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
