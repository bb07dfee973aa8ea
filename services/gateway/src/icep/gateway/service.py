"""The gateway's use cases and infrastructure: signing keys, token issuing, and the reverse proxy."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from icep.gateway.domain import Client, ClientRegistry, end_to_end, route
from icep.gateway.models import TokenResponse
from icep.platform.errors import NotFound
from icep.platform.problems import problem

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
    token: the old key stays published (and verifies the tokens it signed) until an operator removes it.
    Several replicas share the file (a mounted secret on Kubernetes) and so sign with the same key.
    """

    def __init__(self, path: Path, keys: list[SigningKey]) -> None:
        if not keys:
            raise ValueError("at least one signing key is needed")
        self.path = path
        self._keys = list(keys)

    @classmethod
    def load_or_create(cls, path: str | Path) -> SigningKeys:
        path = Path(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            created = cls(path, [SigningKey.generate()])
            if created._save(replace=False):
                log.info("created signing key %s in %s", created.current.kid, path)
                return created
            # Another process created the file first: use its key, so both sign alike.
        return cls(path, cls._read(path))

    @staticmethod
    def _read(path: Path) -> list[SigningKey]:
        with path.open("rb") as f:
            document = json.load(f)
        if path.stat().st_mode & 0o077:
            log.warning("signing key file %s is readable by others; it should be mode 0600", path)
        return [SigningKey.from_json(entry) for entry in document["keys"]]

    @property
    def current(self) -> SigningKey:
        """The key that signs new tokens: the newest."""
        return self._keys[-1]

    @property
    def keys(self) -> list[SigningKey]:
        return list(self._keys)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in reversed(self._keys)]}

    def rotate(self) -> SigningKey:
        """Add a new key that signs from now on; older keys stay published so their tokens keep verifying."""
        key = SigningKey.generate()
        self._keys.append(key)
        self._save(replace=True)
        log.info("rotated signing keys: %s now signs, %d published", key.kid, len(self._keys))
        return key

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
                return True
            try:
                os.link(temporary, self.path)  # atomic, and fails if the file exists
            except FileExistsError:
                return False
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

    def __init__(self, clients: ClientRegistry, issuer: TokenIssuer, *, concurrent_checks: int = 4) -> None:
        self.clients = clients
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
        async with self._checks:
            client = await asyncio.to_thread(self.clients.authenticate, client_id, client_secret)
        if client is None:
            log.info("token refused: client authentication failed for %r", client_id)
            raise OAuthFailure("invalid_client", "client authentication failed", status=401)
        scopes = client.grantable_scopes(scope)
        if scopes is None:
            raise OAuthFailure("invalid_scope", "the requested scope exceeds what this client may have")
        token, expires_in = self.issuer.issue(client, scopes)
        log.info("issued token to %s (%s)", client.client_id, client.nation)
        return TokenResponse(access_token=token, expires_in=expires_in, scope=" ".join(sorted(scopes)))


# --- request ids --------------------------------------------------------------------------------------

_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,200}$")  # visible ASCII: safe in headers and logs


class RequestIdMiddleware:
    """Gives each request an id (the caller's `X-Request-Id` if sensible, else a uuid4) and returns it.

    The id is in `request.state.request_id`, forwarded upstream, and set on every response, error or not.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"]
        request_id = sent[0] if len(sent) == 1 and _REQUEST_ID.match(sent[0]) else str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


def request_id_of(request: Request) -> str:
    request_id = getattr(request.state, "request_id", None)
    return request_id if isinstance(request_id, str) else str(uuid.uuid4())


# --- proxy --------------------------------------------------------------------------------------------

#: Request headers the proxy sets itself rather than passing on (`expect`: the body is already read).
_REPLACED_REQUEST_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "expect",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-for",
        "x-request-id",
    }
)
#: Response headers the gateway's own server writes (forwarding them would duplicate them).
_REPLACED_RESPONSE_HEADERS = frozenset({"date", "server", "x-request-id"})


class _BodyTooLarge(Exception):
    pass


class UpstreamResponse(StreamingResponse):
    """Streams an upstream response through and always closes it, also when the caller goes away."""

    def __init__(self, upstream: httpx.Response, headers: list[tuple[str, str]], idle_timeout: float | None):
        super().__init__(_relay(upstream, idle_timeout), status_code=upstream.status_code)
        self.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        self._upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._upstream.aclose()


async def _relay(upstream: httpx.Response, idle_timeout: float | None) -> AsyncIterator[bytes]:
    # Raw bytes: the caller gets exactly what the service sent (still compressed, if it was), chunk by chunk,
    # so Server-Sent Events arrive as they are written.
    chunks = upstream.aiter_raw()
    while True:
        try:
            async with asyncio.timeout(idle_timeout):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        yield chunk


class Proxy:
    """Forwards requests to the upstream services, one pooled HTTP client per upstream."""

    def __init__(self, upstreams: Mapping[str, str], *, timeout: float, max_body_bytes: int) -> None:
        self.upstreams = dict(upstreams)
        self.timeout = timeout
        self.max_body_bytes = max_body_bytes
        self._clients = {name: self._client() for name in self.upstreams}

    def _client(self) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            # The wait for the response head is bounded in `forward`; reads of the body are bounded per chunk
            # (except for event streams, which may rightly stay quiet for long).
            timeout=httpx.Timeout(self.timeout, read=None),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            follow_redirects=False,
            trust_env=False,
            # A shared client must not remember one caller's cookies and hand them to the next.
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        )
        # Transparent: send what the caller sent, not httpx's defaults.
        for name in ("user-agent", "accept", "accept-encoding"):
            del client.headers[name]
        return client

    async def aclose(self) -> None:
        await asyncio.gather(*(client.aclose() for client in self._clients.values()))

    async def forward(self, request: Request) -> Response:
        """Forward `request` to the service owning its path and stream the answer back."""
        upstream = route(request.url.path)
        if upstream is None or upstream not in self._clients:
            raise NotFound(f"no service serves {request.url.path}")
        instance = request.url.path
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

        client = self._clients[upstream]
        outgoing = client.build_request(
            request.method,
            self._target(upstream, request.scope),
            headers=self._headers(request),
            content=body or None,
        )
        try:
            async with asyncio.timeout(self.timeout):
                response = await client.send(outgoing, stream=True)
        except (TimeoutError, httpx.TimeoutException):
            log.warning("upstream %s timed out on %s %s", upstream, request.method, instance)
            return problem(
                504,
                f"the {upstream} service did not answer in time",
                slug="upstream-timeout",
                instance=instance,
            )
        except httpx.ConnectError:
            log.warning("upstream %s unreachable for %s %s", upstream, request.method, instance)
            return problem(
                503, f"the {upstream} service is unavailable", slug="upstream-unavailable", instance=instance
            )
        except httpx.TransportError as exc:
            log.warning("upstream %s failed on %s %s: %r", upstream, request.method, instance, exc)
            return problem(
                502, f"the {upstream} service gave no valid answer", slug="bad-gateway", instance=instance
            )

        headers = end_to_end(
            ((k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers.raw),
            drop=_REPLACED_RESPONSE_HEADERS,
        )
        streaming = response.headers.get("content-type", "").startswith("text/event-stream")
        return UpstreamResponse(response, headers, idle_timeout=None if streaming else self.timeout)

    def _target(self, upstream: str, scope: Scope) -> httpx.URL:
        base = httpx.URL(self.upstreams[upstream])
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        query: bytes = scope.get("query_string", b"")
        prefix = base.raw_path.split(b"?", 1)[0].rstrip(b"/")
        return base.copy_with(raw_path=prefix + raw_path + (b"?" + query if query else b""))

    def _headers(self, request: Request) -> list[tuple[str, str]]:
        incoming = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        headers = end_to_end(incoming, drop=_REPLACED_REQUEST_HEADERS)
        # Keep the chain of earlier proxies (a load balancer in front of the gateway) and add the caller. When
        # the server already trusted that chain (uvicorn's proxy headers), the client is its last entry.
        chain = [v for k, v in incoming if k.lower() == "x-forwarded-for"]
        last = chain[-1].rsplit(",", 1)[-1].strip() if chain else None
        if request.client is not None and request.client.host != last:
            chain.append(request.client.host)
        if chain:
            headers.append(("x-forwarded-for", ", ".join(chain)))
        headers.append(("x-forwarded-proto", request.url.scheme))
        host = request.headers.get("host")
        if host:
            headers.append(("x-forwarded-host", host))
        headers.append(("x-request-id", request_id_of(request)))
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
