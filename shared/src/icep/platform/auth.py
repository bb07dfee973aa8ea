"""Token verification that every service does for itself (zero trust).

The gateway issues short-lived JWTs and publishes its public keys as a JWKS; every service fetches that key
set and checks each bearer token on its own, so a request that bypasses the gateway is no shortcut. Only
asymmetric algorithms are accepted: a verifier holds public keys only, so `none` and the HMAC family (whose
"public" key would also be the signing key) are refused outright.

An external identity provider (Keycloak, ...) can take the gateway's place: point `ICEP_AUTH_ISSUER` and
`ICEP_AUTH_JWKS_URL` at it. Its tokens are read the same way: see `_principal` for where the client id,
roles and nation are taken from.

Use in a route:

    @router.get("/v1/plans")
    async def list_plans(principal: PrincipalDep) -> ...

    @router.post("/v1/plans", dependencies=[Depends(require_role("planner"))])

Scopes are enforced by the same dependency, per operation: a read (GET, HEAD, OPTIONS, the event stream and
the feed included) needs the `read` scope, every change (POST, PUT, PATCH, DELETE) the `write` scope. A
token without it gets 403 `insufficient_scope` with `WWW-Authenticate: Bearer error="insufficient_scope"`
(RFC 6750 section 3.1). So a client can hand a `read`-only token to a component that must never change
anything, and every service, not only the gateway, holds it to that.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import jwt
from fastapi import Depends, Request

from icep.contracts.nations import ALLIES, NATO, PARTNERS
from icep.platform.domain import Actor
from icep.platform.errors import Forbidden, Unauthorized
from icep.platform.settings import ServiceSettings

__all__ = [
    "ACCEPTED_ALGORITHMS",
    "ALLIES",
    "NATO",
    "PARTNERS",
    "READ_SCOPE",
    "ROLES",
    "WRITE_SCOPE",
    "InsufficientScope",
    "JwksSource",
    "Principal",
    "PrincipalDep",
    "TokenVerifier",
    "current_principal",
    "require_role",
    "required_scope",
]

log = logging.getLogger("icep.auth")

#: The roles a principal can hold (see DESIGN.md, "Identity and access").
ROLES: frozenset[str] = frozenset(
    {"planner", "reviewer", "procurement", "standards", "subscriber", "operator"}
)

#: Asymmetric signature algorithms only; each maps to the JWK key type (and curves) that can verify it.
_ALGORITHM_KEYS: dict[str, tuple[str, frozenset[str] | None]] = {
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}
ACCEPTED_ALGORITHMS: frozenset[str] = frozenset(_ALGORITHM_KEYS)

#: The scope every read needs, and the scope every change needs.
READ_SCOPE = "read"
WRITE_SCOPE = "write"
#: Methods that change nothing (RFC 9110 section 9.2.1) and so need `read`; every other method needs `write`.
_READ_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS"})


def required_scope(method: str) -> str:
    """The scope a request with `method` needs: `read` for GET, HEAD and OPTIONS, `write` for the rest."""
    return READ_SCOPE if method.upper() in _READ_METHODS else WRITE_SCOPE


class InsufficientScope(Forbidden):
    """403 for a valid token that lacks the scope the operation needs (RFC 6750 `insufficient_scope`)."""

    title = "Insufficient scope"
    slug = "insufficient_scope"

    def __init__(self, scope: str) -> None:
        super().__init__(
            f"this operation needs a token with the {scope!r} scope; request one that includes it",
            required_scope=scope,
        )
        self.headers = {
            "WWW-Authenticate": f'Bearer realm="icep", error="insufficient_scope", scope="{scope}"'
        }


#: Claims without which a token is refused.
_REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "iat"]

#: Loads a key set (`{"keys": [...]}`); the default fetches `jwks_url` over HTTP.
JwksSource = Callable[[], Awaitable[Mapping[str, Any]]]


@dataclass(frozen=True)
class Principal:
    """Who is calling: the OAuth client, the nation it acts for, and what it may do."""

    client_id: str
    nation: str
    roles: frozenset[str]
    scopes: frozenset[str]

    @property
    def is_ally(self) -> bool:
        return self.nation in ALLIES

    @property
    def is_partner(self) -> bool:
        return self.nation in PARTNERS

    @property
    def is_nato_staff(self) -> bool:
        return self.nation == NATO

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass(frozen=True)
class _VerificationKey:
    kid: str
    kty: str
    crv: str | None
    alg: str | None
    key: Any  # a `cryptography` public key object


@dataclass(frozen=True)
class _Verified:
    """A token that verified: who it names, the key that checked it, and while its claims let it pass."""

    principal: Principal
    key: _VerificationKey
    #: Epoch seconds, leeway included: the token passes from `valid_from` until before `valid_until`.
    valid_from: float
    valid_until: float


class _KeySetUnavailable(Exception):
    pass


class TokenVerifier:
    """Verifies bearer tokens against an issuer's JWKS, fetched lazily and cached by key id.

    An unknown `kid` triggers a refetch (a rotated-in key), but at most once per `refresh_interval` seconds,
    so a stream of junk tokens cannot turn the verifier into a flood against the issuer; a failed fetch is
    not retried within that interval either. Cached keys are refreshed after `max_key_age` seconds, so a key
    the issuer withdrew stops working.
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        jwks_url: str,
        *,
        leeway: float = 30,
        http: httpx.AsyncClient | None = None,
        refresh_interval: float = 5.0,
        max_key_age: float = 300.0,
        jwks_source: JwksSource | None = None,
        nation_claim: str = "nation",
        max_tokens: int = 10_000,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self.leeway = leeway
        self.refresh_interval = refresh_interval
        self.max_key_age = max_key_age
        self.nation_claim = nation_claim
        self._http = http
        self._owns_http = http is None and jwks_source is None
        self._jwks_source = jwks_source
        self._keys: dict[str, _VerificationKey] = {}
        # Monotonic times: last successful fetch, last failed fetch, last refetch caused by an unknown kid.
        self._fetched_at: float | None = None
        self._failed_at: float | None = None
        self._missed_at: float | None = None
        self._lock = asyncio.Lock()
        self._verified: dict[str, _Verified] = {}
        self.max_tokens = max_tokens

    @classmethod
    def from_settings(
        cls, settings: ServiceSettings, *, http: httpx.AsyncClient | None = None
    ) -> TokenVerifier:
        """The verifier a service builds from the platform-wide `ICEP_AUTH_*` settings."""
        return cls(
            settings.auth_issuer,
            settings.auth_audience,
            settings.auth_jwks_url,
            http=http,
            max_key_age=settings.auth_jwks_max_age_seconds,
            nation_claim=settings.auth_nation_claim,
        )

    async def aclose(self) -> None:
        """Close the HTTP client if this verifier created it."""
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    async def verify(self, token: str) -> Principal:
        """The principal a valid token names; `Unauthorized` with a precise detail otherwise."""
        verified = self._verified.get(token)
        if verified is not None:
            key = await self._key(verified.key.kid)
            now = time.time()
            if key is verified.key and verified.valid_from <= now < verified.valid_until:
                return verified.principal
            # Expired, or its key changed: the full check says why (or passes). Another request may have
            # dropped it already while this one waited for the key.
            self._verified.pop(token, None)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the bearer token is malformed") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ACCEPTED_ALGORITHMS:
            raise Unauthorized(
                f"the token algorithm {alg!r} is not accepted; an asymmetric signature is required"
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("the token names no signing key (kid)")

        key = await self._key(kid)
        kty, curves = _ALGORITHM_KEYS[alg]
        if key.kty != kty or (curves is not None and key.crv not in curves) or (key.alg not in (None, alg)):
            raise Unauthorized(f"the signing key {kid!r} cannot be used with algorithm {alg}")

        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized(f"the token is not meant for this audience ({self.audience})") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("the token was not issued by the trusted issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"the token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("the token signature is invalid") from None
        except jwt.DecodeError:
            raise Unauthorized("the bearer token is malformed") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"the token is invalid: {exc}") from None
        principal = _principal(claims, audience=self.audience, nation_claim=self.nation_claim)
        self._remember(token, principal, key, claims)
        return principal

    def _remember(
        self, token: str, principal: Principal, key: _VerificationKey, claims: Mapping[str, Any]
    ) -> None:
        """Keep a verified token for its next uses, with the window in which PyJWT would pass it again."""
        try:
            # PyJWT: expired once exp <= now - leeway; too early while nbf or iat > now + leeway.
            valid_until = int(claims["exp"]) + self.leeway
            valid_from = max(int(claims["iat"]), int(claims.get("nbf", claims["iat"]))) - self.leeway
        except (TypeError, ValueError, OverflowError):
            return
        if len(self._verified) >= self.max_tokens:
            now = time.time()
            self._verified = {t: v for t, v in self._verified.items() if v.valid_until > now}
            if len(self._verified) >= self.max_tokens:
                # Still full of live tokens: forget the older half (dicts keep insertion order).
                keep = list(self._verified.items())[self.max_tokens // 2 :]
                self._verified = dict(keep)
        self._verified[token] = _Verified(principal, key, valid_from, valid_until)

    async def _key(self, kid: str) -> _VerificationKey:
        key = self._keys.get(kid)
        if key is not None and not self._stale():
            return key
        async with self._lock:
            # Another request may have refreshed the set while this one waited for the lock.
            key = self._keys.get(kid)
            if key is not None and not self._stale():
                return key
            now = time.monotonic()
            if self._failed_at is not None and now - self._failed_at < self.refresh_interval:
                if key is not None:
                    return key  # stale, but the issuer was unreachable a moment ago
                raise Unauthorized("the token signing key set is unavailable (retrying shortly)")
            if key is None and self._fetched_at is not None:
                # An unknown kid in a set already loaded: a rotated-in key, or junk. Refetch for the first
                # such token only; later ones within the interval are refused without asking the issuer.
                if self._missed_at is not None and now - self._missed_at < self.refresh_interval:
                    raise Unauthorized(f"the token is signed with an unknown key ({kid!r})")
                self._missed_at = now
            try:
                await self._refresh()
            except _KeySetUnavailable as exc:
                self._failed_at = time.monotonic()
                if key is not None:
                    # A stale but known key beats refusing everyone while the issuer is briefly down.
                    log.warning("keeping cached signing keys: %s", exc)
                    return key
                raise Unauthorized(f"the token signing key set is unavailable ({exc})") from None
            key = self._keys.get(kid)
            if key is None:
                raise Unauthorized(f"the token is signed with an unknown key ({kid!r})")
            return key

    def _stale(self) -> bool:
        return self._fetched_at is not None and time.monotonic() - self._fetched_at > self.max_key_age

    async def _refresh(self) -> None:
        document = await self._load()
        raw_keys = document.get("keys")
        if not isinstance(raw_keys, list):
            raise _KeySetUnavailable("the key set has no 'keys' list")
        keys: dict[str, _VerificationKey] = {}
        for raw in raw_keys:
            parsed = _verification_key(raw)
            if parsed is not None:
                keys[parsed.kid] = parsed
        self._keys = keys
        self._fetched_at = time.monotonic()
        self._failed_at = None
        log.debug("loaded %d signing keys from %s", len(keys), self.jwks_url)

    async def _load(self) -> Mapping[str, Any]:
        if self._jwks_source is not None:
            try:
                return await self._jwks_source()
            except Exception as exc:
                raise _KeySetUnavailable(f"the key source failed: {exc}") from exc
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=5.0)
        try:
            response = await self._http.get(self.jwks_url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise _KeySetUnavailable(f"cannot reach {self.jwks_url}: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise _KeySetUnavailable(f"{self.jwks_url} answered {response.status_code}")
        try:
            document = response.json()
        except ValueError as exc:
            raise _KeySetUnavailable(f"{self.jwks_url} did not return JSON") from exc
        if not isinstance(document, dict):
            raise _KeySetUnavailable(f"{self.jwks_url} did not return a JSON object")
        return document


def _verification_key(raw: Any) -> _VerificationKey | None:
    """One usable public key of a JWKS, or None for entries a verifier must ignore."""
    if not isinstance(raw, dict):
        return None
    kid, kty, use, alg = raw.get("kid"), raw.get("kty"), raw.get("use"), raw.get("alg")
    if not isinstance(kid, str) or not kid or kty not in ("EC", "RSA", "OKP"):
        return None  # symmetric ("oct") keys are never trusted
    if use not in (None, "sig") or (alg is not None and alg not in ACCEPTED_ALGORITHMS):
        return None
    if "d" in raw:
        log.warning("ignoring JWKS entry %r: it contains a private key", kid)
        return None
    try:
        # The algorithm only selects the parser here; `verify` checks it against the token's own.
        parser = {"EC": "ES256", "RSA": "RS256", "OKP": "EdDSA"}[kty]
        key = jwt.PyJWK(raw, algorithm=parser if alg is None else alg).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        log.warning("ignoring JWKS entry %r: not a valid public key", kid)
        return None
    crv = raw.get("crv")
    return _VerificationKey(kid=kid, kty=kty, crv=crv if isinstance(crv, str) else None, alg=alg, key=key)


def _principal(claims: Mapping[str, Any], *, audience: str, nation_claim: str = "nation") -> Principal:
    """The principal a verified token names, whether the gateway or an external provider issued it.

    - client id: `client_id` (RFC 9068), else `azp` (the client a Keycloak token was issued to: its `sub`
      is the service account's user id), else `sub`;
    - roles: the union of `roles`, Keycloak's `realm_access.roles` and `resource_access.<audience>.roles`;
      names that are not ICEP roles (`offline_access`, `default-roles-...`) are left out;
    - nation: the `nation_claim` claim (a dotted path such as `attributes.nation` reaches into objects);
    - scopes: `scope` (space-separated), else `scp` (a list or a string, as some providers send it).
    """
    client_id = next(
        (claims[name] for name in ("client_id", "azp", "sub") if claims.get(name) is not None), None
    )
    if not isinstance(client_id, str) or not client_id:
        raise Unauthorized("the token names no client (client_id, azp or sub)")
    nation = _claim(claims, nation_claim)
    if nation is None:
        raise Unauthorized(f"the token lacks the {nation_claim!r} claim")
    if not isinstance(nation, str) or (nation not in ALLIES and nation not in PARTNERS and nation != NATO):
        raise Unauthorized(f"the token names an unknown nation ({nation!r})")
    realm = claims.get("realm_access")
    resources = claims.get("resource_access")
    ours = resources.get(audience) if isinstance(resources, Mapping) else None
    granted_by = {
        "roles": claims.get("roles"),
        "realm_access.roles": realm.get("roles") if isinstance(realm, Mapping) else None,
        f"resource_access.{audience}.roles": ours.get("roles") if isinstance(ours, Mapping) else None,
    }
    roles: set[str] = set()
    for name, granted in granted_by.items():
        if granted is None:
            continue
        if not isinstance(granted, list) or not all(isinstance(r, str) for r in granted):
            raise Unauthorized(f"the token's {name!r} claim is not a list of role names")
        roles.update(granted)
    scope = claims.get("scope", claims.get("scp", ""))
    if isinstance(scope, list) and all(isinstance(s, str) for s in scope):
        scope = " ".join(scope)
    if not isinstance(scope, str):
        raise Unauthorized("the token's 'scope' claim is not a space-separated string")
    return Principal(
        client_id=client_id,
        nation=nation,
        roles=frozenset(roles & ROLES),
        scopes=frozenset(scope.split()),
    )


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (`attributes.nation`), or None where any step is missing.

    A claim whose own name contains the dots (`"icep.nation": ...` at the top) is found first.
    """
    if path in claims:
        return claims[path]
    value: Any = claims
    for step in path.split("."):
        if not isinstance(value, Mapping) or step not in value:
            return None
        value = value[step]
    return value


def bearer_token(request: Request) -> str:
    """The token of an `Authorization: Bearer ...` header; `Unauthorized` when there is none."""
    authorization = request.headers.get("authorization")
    if not authorization:
        raise Unauthorized("a bearer token is required (Authorization: Bearer <token>)")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("the Authorization header must use the Bearer scheme")
    return token


async def current_principal(request: Request) -> Principal:
    """FastAPI dependency: the verified caller, whose token has the scope the request's method needs
    (`required_scope`). Needs `app.state.token_verifier` (a `TokenVerifier`)."""
    verifier = getattr(request.app.state, "token_verifier", None)
    if not isinstance(verifier, TokenVerifier):
        # Wiring bug, not the caller's fault: let it surface as the 500 it is.
        raise RuntimeError("app.state.token_verifier is not set; the service cannot verify tokens")
    principal = await verifier.verify(bearer_token(request))
    scope = required_scope(request.method)
    if not principal.has_scope(scope):
        raise InsufficientScope(scope)
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


async def current_actor(principal: PrincipalDep) -> Actor:
    """FastAPI dependency: the verified caller as the domain sees it (its id, nation and roles). Async on
    purpose: FastAPI runs a plain `def` dependency in a worker thread, a thread hop per request."""
    return Actor(id=principal.client_id, nation=principal.nation, roles=principal.roles)


ActorDep = Annotated[Actor, Depends(current_actor)]


def require_role(*roles: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that admits a principal holding at least one of `roles`, else 403."""
    unknown = set(roles) - ROLES
    if not roles or unknown:
        raise ValueError(f"require_role needs known roles, got {sorted(roles)}")
    wanted = frozenset(roles)

    async def _require(principal: PrincipalDep) -> Principal:
        if principal.roles.isdisjoint(wanted):
            raise Forbidden(
                f"this action requires the role {' or '.join(sorted(wanted))}",
                required_roles=sorted(wanted),
            )
        return principal

    return _require
