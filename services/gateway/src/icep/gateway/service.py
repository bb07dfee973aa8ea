"""The gateway's use cases and infrastructure: signing keys, token issuing, and the reverse proxy."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from limits import RateLimitItem
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from prometheus_client import Counter, Gauge
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from yarl import URL

from icep.gateway.domain import Client, ClientRegistry, ClientsFile, FileWatch, end_to_end_raw, route
from icep.gateway.edge import TRUSTED_PEER, path_refusal, raw_path_of, under_route
from icep.gateway.models import TokenResponse
from icep.gateway.ratelimit import (
    RATE_LIMIT_HEADERS,
    LimitState,
    MemoryWindows,
    RateLimitPolicy,
    Verdict,
    async_storage_uri,
    is_shared_storage,
    redacted,
)
from icep.gateway.upstream import (
    BROKEN_OFF,
    CONNECT_ERRORS,
    TRANSPORT_ERRORS,
    AiohttpAnswer,
    HttpxAnswer,
    UpstreamAnswer,
    aiohttp_session,
    decoded,
    httpx_client,
    is_utf8_text,
    with_context,
)
from icep.platform.errors import Unauthorized
from icep.platform.ids import new_id
from icep.platform.problems import problem
from icep.platform.telemetry import http_client_call

log = logging.getLogger("icep.gateway")

SIGNING_ALGORITHM = "ES256"

# --- signing keys -------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class SigningKey:
    """One EC P-256 key; its `kid` is the RFC 7638 thumbprint of the public key."""

    kid: str
    created_at: int
    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        private_key = ec.generate_private_key(ec.SECP256R1())
        return cls(
            kid=_thumbprint(private_key.public_key()), created_at=int(time.time()), private_key=private_key
        )

    def public_jwk(self) -> dict[str, str]:
        return {
            **_public_members(self.private_key.public_key()),
            "kid": self.kid,
            "use": "sig",
            "alg": "ES256",
        }

    def to_json(self) -> dict[str, Any]:
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return {"kid": self.kid, "created_at": self.created_at, "private_key_pem": pem.decode("ascii")}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SigningKey:
        private_key = serialization.load_pem_private_key(
            data["private_key_pem"].encode("ascii"), password=None
        )
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or private_key.curve.name != "secp256r1":
            raise ValueError("signing keys must be EC P-256 keys")
        kid = _thumbprint(private_key.public_key())
        if data.get("kid", kid) != kid:
            raise ValueError(f"key {data.get('kid')!r} does not match its thumbprint")
        return cls(kid=kid, created_at=int(data.get("created_at", 0)), private_key=private_key)


def _public_members(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = public_key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64url(numbers.x.to_bytes(32, "big")),
        "y": _b64url(numbers.y.to_bytes(32, "big")),
    }


def _thumbprint(public_key: ec.EllipticCurvePublicKey) -> str:
    # RFC 7638: the required members, sorted, no whitespace, hashed with SHA-256.
    canonical = json.dumps(_public_members(public_key), sort_keys=True, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


class SigningKeys:
    """The gateway's signing keys, kept in a file (mode 0600) so that a restart keeps issued tokens valid.

    The newest key signs; every key in the file is published in the JWKS. So `rotate()` never invalidates a
    token: the old key stays published (and verifies the tokens it signed) until `retire()` removes it.
    Several replicas share the file (a mounted secret on Kubernetes) and so sign with the same key. With a
    `check_interval`, the keys are reread when the file changes (looked at once per interval at most, on
    use), so a rotation by `icep keys rotate` or another replica takes effect without a restart.
    """

    def __init__(self, path: Path, keys: list[SigningKey], *, check_interval: float | None = None) -> None:
        if not keys:
            raise ValueError("at least one signing key is needed")
        self.path = path
        self._keys = list(keys)
        # Not marked yet: the first look rereads the file once, so no change made meanwhile is missed.
        self._watch = FileWatch(path, check_interval) if check_interval is not None else None

    @classmethod
    def load_or_create(cls, path: str | Path, *, check_interval: float | None = None) -> SigningKeys:
        path = Path(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            created = cls(path, [SigningKey.generate()], check_interval=check_interval)
            if created._save(replace=False):
                log.info("created signing key %s in %s", created.current.kid, path)
                return created
            # Another process created the file first: use its key, so both sign alike.
        return cls(path, cls._read(path), check_interval=check_interval)

    @staticmethod
    def _read(path: Path) -> list[SigningKey]:
        with path.open("rb") as f:
            document = json.load(f)
        if path.stat().st_mode & 0o077:
            log.warning("signing key file %s is readable by others; it should be mode 0600", path)
        return [SigningKey.from_json(entry) for entry in document["keys"]]

    def refresh(self, *, now: bool = False) -> None:
        """Reread the file if it changed (at most once per `check_interval` unless `now`).

        A file that cannot be read leaves the keys in use as they are, with an error logged.
        """
        if self._watch is None or not self._watch.changed(now=now):
            return
        self._watch.mark()
        try:
            keys = self._read(self.path)
            if not keys:
                raise ValueError("the file holds no keys")
        except Exception as exc:
            log.error("keeping the signing keys in use: cannot read %s: %s", self.path, exc)
            return
        if [k.kid for k in keys] != [k.kid for k in self._keys]:
            log.info("reloaded signing keys: %s signs, %d published", keys[-1].kid, len(keys))
        self._keys = keys

    @property
    def current(self) -> SigningKey:
        """The key that signs new tokens: the newest."""
        self.refresh()
        return self._keys[-1]

    @property
    def keys(self) -> list[SigningKey]:
        self.refresh()
        return list(self._keys)

    def jwks(self) -> dict[str, Any]:
        self.refresh()
        return {"keys": [key.public_jwk() for key in reversed(self._keys)]}

    def rotate(self) -> SigningKey:
        """Add a new key that signs from now on; older keys stay published so their tokens keep verifying."""
        self._reread()
        key = SigningKey.generate()
        self._keys.append(key)
        self._save(replace=True)
        log.info("rotated signing keys: %s now signs, %d published", key.kid, len(self._keys))
        return key

    def retire(self, kid: str) -> SigningKey:
        """Remove an older key from the file and so from the JWKS: the tokens it signed stop verifying
        (at the gateway at once, at a service once its cached key set ages). The current key cannot go."""
        self._reread()
        key = next((k for k in self._keys if k.kid == kid), None)
        if key is None:
            raise LookupError(f"no signing key {kid!r} in {self.path}")
        if key.kid == self._keys[-1].kid:
            raise ValueError(f"{kid!r} is the current signing key; rotate first, then retire it")
        self._keys.remove(key)
        self._save(replace=True)
        log.info("retired signing key %s, %d published", kid, len(self._keys))
        return key

    def _reread(self) -> None:
        # Before a change: start from the file as it is now, not from what this process read earlier.
        if self.path.exists():
            self._keys = self._read(self.path)

    def _save(self, *, replace: bool) -> bool:
        """Write the file atomically, mode 0600. Without `replace`, False if the file appeared meanwhile."""
        document = {"keys": [key.to_json() for key in self._keys]}
        temporary = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(document, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            if replace:
                os.replace(temporary, self.path)
            else:
                try:
                    os.link(temporary, self.path)  # atomic, and fails if the file exists
                except FileExistsError:
                    return False
            if self._watch is not None:
                self._watch.mark()  # this process's own write needs no rereading
            return True
        finally:
            temporary.unlink(missing_ok=True)


# --- tokens -------------------------------------------------------------------------------------------


class TokenIssuer:
    """Signs short-lived access tokens (JWT, RFC 9068 shape) for authenticated clients."""

    def __init__(self, keys: SigningKeys, *, issuer: str, audience: str, ttl_seconds: int) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds

    def issue(self, client: Client, scopes: Iterable[str] | None = None) -> tuple[str, int]:
        """A signed token for `client` (with `scopes`, default all of the client's) and its lifetime."""
        self.keys.refresh(now=True)  # sign with the newest key, even one rotated in a moment ago
        now = int(time.time())
        granted = sorted(client.scopes if scopes is None else scopes)
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": client.client_id,
            "client_id": client.client_id,
            "nation": client.nation,
            "roles": sorted(client.roles),
            "scope": " ".join(granted),
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_seconds,
            "jti": uuid.uuid4().hex,
        }
        key = self.keys.current
        token = jwt.encode(
            claims, key.private_key, algorithm=SIGNING_ALGORITHM, headers={"kid": key.kid, "typ": "at+jwt"}
        )
        return token, self.ttl_seconds


class OAuthFailure(Exception):
    """An RFC 6749 section 5.2 error: `error` is the registered code, `status` 400 or 401."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


class TokenService:
    """The client-credentials grant: authenticate the client, narrow the scopes, issue the token."""

    def __init__(
        self, clients: ClientsFile | ClientRegistry, issuer: TokenIssuer, *, concurrent_checks: int = 4
    ) -> None:
        self._clients = clients
        self.issuer = issuer
        # Secret checks run scrypt (CPU and 16 MiB each) in threads; bounding them keeps a burst of token
        # requests from starving the proxy or exhausting memory.
        self._checks = asyncio.Semaphore(concurrent_checks)

    async def client_credentials(
        self, *, grant_type: str | None, client_id: str | None, client_secret: str | None, scope: str | None
    ) -> TokenResponse:
        if not grant_type:
            raise OAuthFailure("invalid_request", "grant_type is required")
        if grant_type != "client_credentials":
            raise OAuthFailure("unsupported_grant_type", "only the client_credentials grant is supported")
        if not client_id or client_secret is None:
            raise OAuthFailure("invalid_client", "client authentication is required", status=401)
        # The file is looked at on every token request: a client disabled a moment ago gets no token.
        registry = self._registry(now=True)
        async with self._checks:
            client = await asyncio.to_thread(registry.authenticate, client_id, client_secret)
        if client is None:
            log.info("token refused: client authentication failed for %r", client_id)
            raise OAuthFailure("invalid_client", "client authentication failed", status=401)
        scopes = client.grantable_scopes(scope)
        if scopes is None:
            raise OAuthFailure("invalid_scope", "the requested scope exceeds what this client may have")
        token, expires_in = self.issuer.issue(client, scopes)
        log.info("issued token to %s (%s)", client.client_id, client.nation)
        return TokenResponse(access_token=token, expires_in=expires_in, scope=" ".join(sorted(scopes)))

    @property
    def clients(self) -> ClientRegistry:
        """The registry as it is now (reread when the clients file changed)."""
        return self._registry()

    def _registry(self, *, now: bool = False) -> ClientRegistry:
        return self._clients.registry(now=now) if isinstance(self._clients, ClientsFile) else self._clients

    def ensure_active(self, client_id: str) -> None:
        """Refuse (401) the token of a client disabled or removed since it was issued: its tokens would
        otherwise work until they expire. (A service called directly still accepts them until then.)"""
        client = self.clients.get(client_id)
        if client is None or client.disabled:
            state = "disabled" if client is not None else "no longer registered"
            raise Unauthorized(f"the client {client_id!r} is {state}; its tokens are refused")


# --- request ids --------------------------------------------------------------------------------------
# Accepted or made, returned and logged by the platform's access log (`icep.platform.logs`), outside every
# gateway middleware; the proxy forwards it upstream.


def request_id_of(request: Request) -> str:
    """The request's id (`icep.platform.logs.AccessLogMiddleware` puts it in the request state)."""
    request_id = getattr(request.state, "request_id", None)
    return request_id if isinstance(request_id, str) else new_id()


# --- proxy --------------------------------------------------------------------------------------------

#: Request headers the proxy sets itself rather than passing on (`expect`: the body is already read). The
#: forwarding headers are rebuilt from what the gateway trusts (`Proxy._headers`); `Forwarded` and
#: `X-Real-IP` are never passed on: the services read `X-Forwarded-*` only.
_REPLACED_REQUEST_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "expect",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-for",
        "forwarded",
        "x-real-ip",
        "x-request-id",
    }
)
#: Response headers the gateway writes itself (forwarding them would duplicate them); the RateLimit fields
#: describe the gateway's limits, which only the gateway knows.
_REPLACED_RESPONSE_HEADERS = frozenset(
    {"date", "server", "x-request-id", *(name.lower() for name in RATE_LIMIT_HEADERS)}
)
_REPLACED_REQUEST_RAW = frozenset(name.encode("latin-1") for name in _REPLACED_REQUEST_HEADERS)
_REPLACED_RESPONSE_RAW = frozenset(name.encode("latin-1") for name in _REPLACED_RESPONSE_HEADERS)


class _BodyTooLarge(Exception):
    pass


class _PathOutsideRoute(Exception):
    """The upstream URL would not carry exactly the checked path, under its route's prefix."""


class UpstreamResponse(StreamingResponse):
    """Streams an upstream event stream through and always closes it, also when the caller goes away; then
    it gives back the stream slot it holds (if any), however the stream ended."""

    def __init__(
        self,
        upstream: UpstreamAnswer,
        headers: list[tuple[bytes, bytes]],
        idle_timeout: float | None,
        slot: StreamSlot | None = None,
    ) -> None:
        super().__init__(_relay(upstream, idle_timeout), status_code=upstream.status)
        self.raw_headers = headers
        self._upstream = upstream
        self._slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                await self._upstream.aclose()
            finally:
                if self._slot is not None:
                    self._slot.release()


async def _relay(upstream: UpstreamAnswer, idle_timeout: float | None) -> AsyncIterator[bytes]:
    # Raw bytes: the caller gets exactly what the service sent (still compressed, if it was), chunk by chunk,
    # so Server-Sent Events arrive as they are written.
    chunks = upstream.chunks()
    while True:
        try:
            async with asyncio.timeout(idle_timeout):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        yield chunk


#: The paths of the services' event streams (`text/event-stream`), as path segments.
STREAM_PATHS: frozenset[tuple[str, ...]] = frozenset({("v1", "events", "stream")})
#: Seconds a caller refused a stream is told to wait (`Retry-After`).
STREAM_RETRY_AFTER_SECONDS = 5
OPEN_STREAMS = Gauge("icep_gateway_open_streams", "Event streams open through this gateway process")
STREAMS_REFUSED = Counter(
    "icep_gateway_streams_refused_total",
    "Event streams refused because a cap was reached: `client` (429) or `total` (503)",
    ["cap"],
)


def wants_stream(request: Request) -> bool:
    """Whether `request` asks for an event stream: a stream path, or `text/event-stream` in `Accept`."""
    if tuple(s for s in request.url.path.split("/") if s) in STREAM_PATHS:
        return True
    return any(
        part.split(";", 1)[0].strip().lower() == "text/event-stream"
        for value in request.headers.getlist("accept")
        for part in value.split(",")
    )


class StreamCapReached(Exception):
    """No stream slot: the client has `cap` streams open (`per_client`), or the process has (total)."""

    def __init__(self, cap: int, *, per_client: bool) -> None:
        super().__init__(f"{cap} streams open {'for this client' if per_client else 'in all'}")
        self.cap = cap
        self.per_client = per_client


class StreamSlot:
    """One open stream's place in `StreamSlots`; `release()` gives it back (more calls do nothing)."""

    def __init__(self, slots: StreamSlots, client: str) -> None:
        self._slots = slots
        self.client = client
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots._release(self.client)


class StreamSlots:
    """Caps on the event streams open at once through this process: `total`, and `per_client` for each.

    Rate limits count requests; a stream is one request that then stays open, holding a connection to its
    service. These caps bound what the open ones hold. They count in this process only (each replica has
    its own), and need no lock: the event loop runs one acquire or release at a time.
    """

    def __init__(self, *, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self._open: dict[str, int] = {}
        self._count = 0

    def acquire(self, client: str) -> StreamSlot:
        """A slot for one more stream of `client`; `StreamCapReached` when a cap is reached."""
        if self._open.get(client, 0) >= self.per_client:
            raise StreamCapReached(self.per_client, per_client=True)
        if self._count >= self.total:
            raise StreamCapReached(self.total, per_client=False)
        self._open[client] = self._open.get(client, 0) + 1
        self._count += 1
        OPEN_STREAMS.inc()
        return StreamSlot(self, client)

    def _release(self, client: str) -> None:
        left = self._open.get(client, 0) - 1
        if left > 0:
            self._open[client] = left
        else:
            self._open.pop(client, None)
        self._count -= 1
        OPEN_STREAMS.dec()

    def open_for(self, client: str) -> int:
        return self._open.get(client, 0)

    @property
    def open(self) -> int:
        return self._count


def stream_refused(cap: StreamCapReached, *, instance: str) -> Response:
    """429 when the client has its streams open, 503 when the gateway has; both with `Retry-After`."""
    retry = STREAM_RETRY_AFTER_SECONDS
    if cap.per_client:
        STREAMS_REFUSED.labels("client").inc()
        return problem(
            429,
            f"this client already has {cap.cap} event streams open through this gateway, the most it may; "
            f"close one or retry after {retry} s",
            slug="too-many-streams",
            instance=instance,
            headers={"Retry-After": str(retry)},
            retry_after=retry,
        )
    STREAMS_REFUSED.labels("total").inc()
    return problem(
        503,
        f"this gateway has {cap.cap} event streams open, the most it serves; retry after {retry} s",
        slug="stream-capacity-reached",
        instance=instance,
        headers={"Retry-After": str(retry)},
        retry_after=retry,
    )


class Proxy:
    """Forwards requests to the upstream services, within each client's rate limits (`rate_limits`; None:
    unlimited) and its cap on open event streams (`streams`).

    Each upstream has two pooled HTTP clients: one for ordinary requests (`max_connections`) and one for
    requests that ask for an event stream (as large as the total stream cap). A stream holds its connection
    for as long as it lasts; in a pool of its own it never makes an ordinary request wait for a connection.
    The clients are aiohttp sessions; a request with a header value that is not UTF-8 goes through an httpx
    client instead, which sends octets as received (`icep.gateway.upstream`).
    """

    def __init__(
        self,
        upstreams: Mapping[str, str],
        *,
        timeout: float,
        max_body_bytes: int,
        rate_limits: RateLimits | None = None,
        max_connections: int = 256,
        streams: StreamSlots | None = None,
        max_response_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.upstreams = dict(upstreams)
        self.timeout = timeout
        self.max_body_bytes = max_body_bytes
        self.max_response_bytes = max_response_bytes
        self.rate_limits = rate_limits
        self.streams = streams if streams is not None else StreamSlots(total=1000, per_client=5)
        self.max_connections = max_connections
        #: Each upstream's parsed base URL and its path prefix, parsed once rather than per request.
        self._bases = {
            name: (base, base.raw_path.split(b"?", 1)[0].rstrip(b"/"))
            for name, base in ((name, httpx.URL(url)) for name, url in self.upstreams.items())
        }
        #: Each upstream's origin and path prefix as text, for the aiohttp URL (`_url`).
        self._origins = {
            name: (str(base.copy_with(raw_path=b"/")).rstrip("/"), prefix.decode("ascii"))
            for name, (base, prefix) in self._bases.items()
        }
        #: (upstream, for streams?) -> its session; made at first use, in the running loop.
        self._sessions: dict[tuple[str, bool], aiohttp.ClientSession] = {}
        self._fallback: httpx.AsyncClient | None = None

    def _session(self, upstream: str, stream: bool) -> aiohttp.ClientSession:
        session = self._sessions.get((upstream, stream))
        if session is None:
            session = aiohttp_session(self.streams.total if stream else self.max_connections)
            self._sessions[(upstream, stream)] = session
        return session

    def _fallback_client(self) -> httpx.AsyncClient:
        if self._fallback is None:
            self._fallback = httpx_client(self.max_connections)
        return self._fallback

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        fallback, self._fallback = self._fallback, None
        await asyncio.gather(*(session.close() for session in sessions))
        if fallback is not None:
            await fallback.aclose()

    async def forward(self, request: Request) -> Response:
        """Count `request` against its client's rate limits, then forward it and relay the answer."""
        principal = getattr(request.state, "principal", None)  # set by the token check before this
        verdict = None
        if self.rate_limits is not None and principal is not None:
            verdict = await self.rate_limits.for_client(principal.client_id)
        if verdict is not None and not verdict.allowed:
            return too_many_requests(
                verdict, "client", "this client has used its request budget", instance=request.url.path
            )
        # Streams are capped per client; a request without a principal (none reaches here) per address.
        peer = request.client.host if request.client is not None else "unknown"
        caller = principal.client_id if principal is not None else f"address:{peer}"
        response = await self._forward(request, caller)
        if verdict is not None:
            response.headers.update(verdict.headers(time.time()))
        return response

    async def _forward(self, request: Request, caller: str) -> Response:
        """Forward `request` to the service owning its path and relay the answer (buffered, or streamed for
        an event stream); a stream takes one of `caller`'s stream slots first, and goes through the
        upstream's stream pool."""
        instance = request.url.path
        # Routed on the raw path, the very bytes sent upstream (`_target`), never on a decoded form of it.
        raw_path = raw_path_of(request.scope)
        reason = path_refusal(raw_path)  # PathGuardMiddleware refused these already; a Proxy stands alone
        if reason is not None:
            return problem(400, f"the request path contains {reason}", slug="invalid-path", instance=instance)
        upstream = route(raw_path.decode("ascii"))
        if upstream is None or upstream not in self.upstreams:
            return problem(404, f"no service serves {instance}", slug="not-found", instance=instance)
        try:
            body = await self._read_body(request)
        except _BodyTooLarge:
            return problem(
                413,
                f"the request body exceeds {self.max_body_bytes} bytes",
                slug="content-too-large",
                instance=instance,
            )
        except ValueError:
            return problem(400, "the Content-Length header is invalid", slug="bad-request", instance=instance)

        slot: StreamSlot | None = None
        if wants_stream(request):
            try:
                slot = self.streams.acquire(caller)
            except StreamCapReached as cap:
                return stream_refused(cap, instance=instance)
        return await self._send(request, upstream, slot, caller, body)

    async def _send(
        self, request: Request, upstream: str, slot: StreamSlot | None, caller: str, body: bytes
    ) -> Response:
        """Send to `upstream` and answer with its response, which takes over `slot`; on any other answer
        the slot is given back here."""
        instance = request.url.path
        handed_over = False
        try:
            response = await self._exchange(request, upstream, slot is not None, body)
            if isinstance(response, Response):
                return response
            headers = end_to_end_raw(response.raw_headers, _REPLACED_RESPONSE_RAW)
            streaming = (response.header("content-type") or "").startswith("text/event-stream")
            if not streaming:
                # Buffered: a service that dies mid-answer gives the caller a 502, not a status line
                # followed by a reset. (The slot of a request that asked for a stream is given back below.)
                return await self._buffered(request, upstream, response, headers)
            if slot is None:
                # A stream the request did not announce (a path not in STREAM_PATHS, no Accept): it holds
                # an ordinary connection, but counts against the caps all the same.
                log.warning("%s %s streams but was not sent as a stream", request.method, instance)
                try:
                    slot = self.streams.acquire(caller)
                except StreamCapReached as cap:
                    await response.aclose()
                    return stream_refused(cap, instance=instance)
            answer = UpstreamResponse(response, headers, idle_timeout=None, slot=slot)
            handed_over = True
            return answer
        finally:
            if slot is not None and not handed_over:
                slot.release()

    async def _buffered(
        self, request: Request, upstream: str, response: UpstreamAnswer, headers: list[tuple[bytes, bytes]]
    ) -> Response:
        """The whole upstream answer as one response, read before anything is sent to the caller; a 502
        problem when it cannot be read whole (the service failed mid-answer) or exceeds the size limit."""
        instance = request.url.path
        limit = self.max_response_bytes
        try:
            declared = response.header("content-length")
            # (A HEAD answer's length describes the GET body, which is not sent.)
            if (
                declared is not None
                and declared.isdigit()
                and int(declared) > limit
                and _may_have_body(request.method, response.status)
            ):
                raise _BodyTooLarge
            chunks: list[bytes] = []
            size = 0
            # Bounded like the wait for the head: a service that stalls mid-answer is a failure. (One timer
            # for the whole body, not one per chunk.)
            async with asyncio.timeout(self.timeout):
                async for chunk in response.chunks():
                    size += len(chunk)
                    if size > limit:
                        raise _BodyTooLarge
                    chunks.append(chunk)
        except _BodyTooLarge:
            log.warning(
                "upstream %s answered %s %s with more than %d bytes",
                upstream,
                request.method,
                instance,
                limit,
            )
            return problem(
                502,
                f"the {upstream} service's answer exceeds {limit} bytes",
                slug="upstream-answer-too-large",
                instance=instance,
            )
        except BROKEN_OFF as exc:
            log.warning("upstream %s failed mid-answer on %s %s: %r", upstream, request.method, instance, exc)
            return problem(
                502, f"the {upstream} service's answer broke off", slug="bad-gateway", instance=instance
            )
        finally:
            await response.aclose()
        # One copy at most: a body that came in one chunk is used as it is.
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        answer = Response(body, status_code=response.status)
        # Raw bytes as the service sent them (still compressed, if it was); its Content-Length stays when it
        # sent one (a HEAD answer's describes the GET body), else it is the length read.
        answer.raw_headers = headers
        if response.header("content-length") is None and _may_have_body(request.method, response.status):
            answer.raw_headers.append((b"content-length", str(len(body)).encode("latin-1")))
        return answer

    async def _exchange(
        self, request: Request, upstream: str, stream: bool, body: bytes
    ) -> UpstreamAnswer | Response:
        """The upstream's response (its body not read yet), or the problem that answers for it."""
        instance = request.url.path
        headers = self._headers(request)
        try:
            target = self._target(upstream, request.scope)
            if isinstance(target, URL) and not is_utf8_text(headers):
                target = self._httpx_target(upstream, request.scope)
        except _PathOutsideRoute:
            log.warning(
                "refused %s %s: the upstream URL would differ from the checked path", request.method, instance
            )
            return problem(
                400, "the request path cannot be forwarded as sent", slug="invalid-path", instance=instance
            )
        try:
            async with asyncio.timeout(self.timeout):
                if isinstance(target, URL):
                    return await self._send_aiohttp(request.method, upstream, stream, target, headers, body)
                return await self._send_httpx(request.method, target, headers, body)
        except (TimeoutError, httpx.TimeoutException):
            log.warning("upstream %s timed out on %s %s", upstream, request.method, instance)
            return problem(
                504,
                f"the {upstream} service did not answer in time",
                slug="upstream-timeout",
                instance=instance,
            )
        except CONNECT_ERRORS:
            log.warning("upstream %s unreachable for %s %s", upstream, request.method, instance)
            return problem(
                503, f"the {upstream} service is unavailable", slug="upstream-unavailable", instance=instance
            )
        except TRANSPORT_ERRORS as exc:
            log.warning("upstream %s failed on %s %s: %r", upstream, request.method, instance, exc)
            return problem(
                502, f"the {upstream} service gave no valid answer", slug="bad-gateway", instance=instance
            )
        except ValueError as exc:
            # A header value the HTTP client may not send (a control character; the server in front of the
            # gateway lets some through): the caller's request is at fault, and nothing went upstream.
            log.info("refused %s %s: %s", request.method, instance, exc)
            return problem(400, "a request header cannot be forwarded", slug="bad-request", instance=instance)

    async def _send_aiohttp(
        self,
        method: str,
        upstream: str,
        stream: bool,
        url: URL,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> UpstreamAnswer:
        carrier: dict[str, str] = {}
        with http_client_call(method, str(url), carrier) as call:
            response = await self._session(upstream, stream).request(
                method,
                url,
                headers=with_context(decoded(headers), carrier),
                data=body or None,
                allow_redirects=False,
            )
            call.answered(response.status)
        return AiohttpAnswer(response)

    async def _send_httpx(
        self, method: str, target: httpx.URL, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> UpstreamAnswer:
        client = self._fallback_client()
        # Bytes, as received: the octets of a value that is not UTF-8 go on unchanged.
        outgoing = client.build_request(method, target, headers=headers, content=body or None)
        return HttpxAnswer(await client.send(outgoing, stream=True))

    def _target(self, upstream: str, scope: Scope) -> URL | httpx.URL:
        """The upstream URL: the service's base URL and the caller's raw path and query, unchanged; for
        aiohttp (a `yarl.URL` taken as encoded, so nothing is re-quoted) unless the query holds octets
        outside ASCII, which only the httpx fallback sends as they are.

        `_PathOutsideRoute` if the URL's path is not exactly the checked one or not under a prefix of
        `upstream`'s routes."""
        raw_path = raw_path_of(scope)
        query: bytes = scope.get("query_string", b"")
        if not (raw_path.isascii() and query.isascii()):
            return self._httpx_target(upstream, scope)
        origin, prefix = self._origins[upstream]
        expected = prefix + raw_path.decode("ascii")
        try:
            url = URL(origin + expected + ("?" + query.decode("ascii") if query else ""), encoded=True)
        except ValueError:
            raise _PathOutsideRoute from None
        if url.raw_path != expected or not under_route(raw_path, upstream):
            raise _PathOutsideRoute
        return url

    def _httpx_target(self, upstream: str, scope: Scope) -> httpx.URL:
        """`_target` for the httpx fallback (httpx normalises dot segments and escapes some characters when
        it builds a URL: a path it would change is refused)."""
        base, prefix = self._bases[upstream]
        raw_path = raw_path_of(scope)
        query: bytes = scope.get("query_string", b"")
        expected = prefix + raw_path
        try:
            target = base.copy_with(raw_path=expected + (b"?" + query if query else b""))
        except (UnicodeDecodeError, httpx.InvalidURL):
            raise _PathOutsideRoute from None
        if target.raw_path.split(b"?", 1)[0] != expected or not under_route(raw_path, upstream):
            raise _PathOutsideRoute
        return target

    def _headers(self, request: Request) -> list[tuple[bytes, bytes]]:
        """The request's end-to-end headers, as received (bytes), and the gateway's forwarding headers."""
        incoming: list[tuple[bytes, bytes]] = request.scope["headers"]
        headers = end_to_end_raw(incoming, _REPLACED_REQUEST_RAW)
        # The forwarding headers are the gateway's own. Only a trusted proxy in front of it (a load balancer,
        # see ForwardedHeadersMiddleware) has its chain and its X-Forwarded-Host kept; the peer is appended.
        trusted_peer = request.scope.get("state", {}).get(TRUSTED_PEER)
        host = next((v for k, v in incoming if k.lower() == b"host"), None)
        if trusted_peer is not None:
            chain = [v for k, v in incoming if k.lower() == b"x-forwarded-for"] + [
                trusted_peer.encode("latin-1")
            ]
            host = next((v for k, v in reversed(incoming) if k.lower() == b"x-forwarded-host"), host)
        else:
            client = request.scope.get("client")
            chain = [client[0].encode("latin-1")] if client else []
        if chain:
            headers.append((b"x-forwarded-for", b", ".join(chain)))
        headers.append((b"x-forwarded-proto", request.scope.get("scheme", "http").encode("latin-1")))
        if host:
            headers.append((b"x-forwarded-host", host))
        headers.append((b"x-request-id", request_id_of(request).encode("latin-1")))
        return headers

    async def _read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise ValueError("invalid Content-Length")
            if int(declared) > self.max_body_bytes:
                raise _BodyTooLarge
        # Count what actually arrives too: a chunked body declares no length, and a declared one may lie.
        parts: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _BodyTooLarge
            parts.append(chunk)
        return b"".join(parts)


def _may_have_body(method: str, status: int) -> bool:
    return method != "HEAD" and status >= 200 and status not in (204, 304)


# --- rate limits --------------------------------------------------------------------------------------

RATE_LIMITED = Counter(
    "icep_gateway_rate_limited_total", "Requests refused with 429, by the limit that refused them", ["limit"]
)
RATE_LIMIT_FAIL_OPEN = Counter(
    "icep_gateway_rate_limit_fail_open_total",
    "Requests let through unchecked because the rate-limit storage did not answer",
)


class RateLimiter:
    """Counts requests against limits: in this process's memory, or in a Redis (`limits` storage) that every
    gateway replica shares (then a client has one budget, whichever replica it reaches).

    Moving windows: 600/minute means at most 600 requests in any 60 seconds, with no double burst where
    two fixed windows meet, and a refused caller is told exactly when the oldest request leaves the window.

    In memory the counting is `MemoryWindows`, synchronous: no await, no thread, nothing that can fail.
    Redis is asked through `limits`' asyncio strategy.

    It fails open. When the storage does not answer within `timeout` seconds, the request passes unchecked,
    `icep_gateway_rate_limit_fail_open_total` counts it and a warning is logged (once per outage): losing
    the limits for a while is better than losing the API. After a failure the storage is left alone for
    `retry_interval` seconds, so that an outage does not add its timeout to every request.
    """

    def __init__(self, storage_uri: str, *, timeout: float, retry_interval: float = 1.0) -> None:
        uri = async_storage_uri(storage_uri)
        self.storage_uri = redacted(storage_uri)
        self.timeout = timeout
        self.retry_interval = retry_interval
        self._retry_at = 0.0
        self._failing = False
        #: This process's memory (checked synchronously: nothing to wait for), or None for a shared storage.
        self.memory: MemoryWindows | None = None
        self.storage: Any = None
        if not is_shared_storage(uri):
            self.memory = MemoryWindows()
            self._errors: tuple[type[BaseException], ...] = ()
            return
        self.storage = storage_from_string(uri, connect_timeout=timeout, stream_timeout=timeout)
        self._strategy = MovingWindowRateLimiter(self.storage)
        base = self.storage.base_exceptions
        self._errors = (
            TimeoutError,
            OSError,
            StorageError,
            *(base if isinstance(base, tuple) else (base,)),
        )

    async def hit(self, items: tuple[RateLimitItem, ...], *key: str) -> Verdict | None:
        """Count one request for `key` against each of `items`, in order, until one refuses.

        None when the storage could not be asked: the caller lets the request through.
        """
        if self.memory is not None:
            return self.hit_memory(items, *key)
        if self._failing and time.monotonic() < self._retry_at:
            RATE_LIMIT_FAIL_OPEN.inc()
            return None
        states: list[LimitState] = []
        try:
            async with asyncio.timeout(self.timeout):
                for item in items:
                    allowed = await self._strategy.hit(item, *key)
                    stats = await self._strategy.get_window_stats(item, *key)
                    states.append(LimitState(item, allowed, stats.remaining, stats.reset_time))
                    if not allowed:
                        break
        except self._errors as exc:
            RATE_LIMIT_FAIL_OPEN.inc()
            if not self._failing:
                log.warning(
                    "rate-limit storage %s does not answer (%r); requests pass unlimited until it does",
                    self.storage_uri,
                    exc,
                )
            self._failing = True
            self._retry_at = time.monotonic() + self.retry_interval
            return None
        if self._failing:
            self._failing = False
            log.info("rate-limit storage %s answers again; rate limits apply", self.storage_uri)
        return Verdict(items, tuple(states))

    def hit_memory(self, items: tuple[RateLimitItem, ...], *key: str) -> Verdict:
        """`hit` on this process's memory: no I/O, so no await, no timeout and no failure to open on."""
        assert self.memory is not None
        states: list[LimitState] = []
        for item in items:
            state = self.memory.hit(item, *key)
            states.append(state)
            if not state.allowed:
                break
        return Verdict(items, tuple(states))

    async def aclose(self) -> None:
        # The Redis client's pooled connections (coredis); the memory storage holds none.
        client = getattr(getattr(self.storage, "bridge", None), "storage", None)
        pool = getattr(client, "connection_pool", None)
        if pool is not None:
            pool.disconnect()


class RateLimits:
    """The gateway's limits: per client (by its tier) on the API, per address on the token endpoint."""

    def __init__(
        self, limiter: RateLimiter, policy: RateLimitPolicy, tier_of: Callable[[str], str | None]
    ) -> None:
        self.limiter = limiter
        self.policy = policy
        #: The `rate_tier` of a client id in the clients file, None for a client it does not know.
        self.tier_of = tier_of
        self._unknown_tiers: set[str] = set()

    async def for_client(self, client_id: str) -> Verdict | None:
        named = self.tier_of(client_id)
        tier = self.policy.tier(named)
        if named is not None and named != tier and named not in self._unknown_tiers:
            self._unknown_tiers.add(named)
            log.warning("rate tier %r is not configured; its clients get the %r limits", named, tier)
        return await self.limiter.hit(self.policy.tiers[tier], "icep-gateway", "client", client_id)

    async def for_token_request(self, address: str) -> Verdict | None:
        return await self.limiter.hit(self.policy.token, "icep-gateway", "token", address)

    async def aclose(self) -> None:
        await self.limiter.aclose()


def too_many_requests(verdict: Verdict, limit: str, detail: str, *, instance: str) -> Response:
    """The 429 problem, with `Retry-After` and the RateLimit fields."""
    RATE_LIMITED.labels(limit).inc()
    now = time.time()
    retry_after = verdict.retry_after(now)
    return problem(
        429,
        f"{detail}; retry after {retry_after} s",
        slug="rate-limited",
        instance=instance,
        headers=verdict.headers(now),
        retry_after=retry_after,
    )


def _encoded(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def _with_headers(send: Send, headers: Iterable[tuple[str, str]], *, replace: bool) -> Send:
    """`send`, adding `headers` to the response head: replacing same-named ones, or only where absent."""
    extra = _encoded(headers)

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            current: list[tuple[bytes, bytes]] = list(message.get("headers", []))
            if replace:
                names = {name for name, _ in extra}
                current = [(k, v) for k, v in current if k.lower() not in names]
                added = extra
            else:
                present = {k.lower() for k, _ in current}
                added = [(k, v) for k, v in extra if k not in present]
            message = {**message, "headers": current + added}
        await send(message)

    return send_with_headers


class TokenRateLimitMiddleware:
    """Limits `POST /oauth/token` per client address, before the body is read or a secret is hashed.

    The address is the peer's, or the caller's when the peer is a trusted proxy (`ForwardedHeadersMiddleware`,
    `ICEP_GATEWAY_FORWARDED_ALLOW_IPS`); behind a load balancer not trusted so, every caller shares the
    balancer's budget, and a forged `X-Forwarded-For` never buys a fresh one.
    The limits live in `app.state.rate_limits` (none: no limit).
    """

    def __init__(self, app: ASGIApp, path: str = "/oauth/token") -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limits = getattr(getattr(scope.get("app"), "state", None), "rate_limits", None)
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != self.path
            or not isinstance(limits, RateLimits)
        ):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        verdict = await limits.for_token_request(client[0] if client else "unknown")
        if verdict is None:
            await self.app(scope, receive, send)
            return
        if not verdict.allowed:
            response = too_many_requests(
                verdict, "token", "too many token requests from this address", instance=self.path
            )
            response.headers["Cache-Control"] = "no-store"
            await response(scope, receive, send)
            return
        headers = verdict.headers(time.time()).items()
        await self.app(scope, receive, _with_headers(send, headers, replace=True))


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
#: The API documentation pages load scripts and styles, so the API's Content-Security-Policy is not theirs.
DOCS_PATHS: tuple[str, ...] = ("/docs", "/redoc", "/openapi.json", "/asyncapi.json")
#: Paths the gateway forwards to the services.
PROXIED_PREFIX = "/v1"


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


class SecurityHeadersMiddleware:
    """Sets the security headers on every response that does not set them itself.

    `headers` go everywhere. The Content-Security-Policy goes on API responses, not on the docs pages.
    Strict-Transport-Security goes only on responses to HTTPS requests (RFC 6797: never over plain HTTP).
    Proxied responses get `Cache-Control: no-store` unless the service chose a caching policy itself.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        headers: Mapping[str, str],
        content_security_policy: str = "",
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
                    if content_security_policy and api:
                        chosen.append(("Content-Security-Policy", content_security_policy))
                    if strict_transport_security and https:
                        chosen.append(("Strict-Transport-Security", strict_transport_security))
                    if proxied:
                        chosen.append(("Cache-Control", "no-store"))
                    self._sets[api, https, proxied] = _encoded(chosen)

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
