"""icep.platform.auth: the verifier's key handling, and the FastAPI dependencies every service uses."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fastapi import Depends, FastAPI

from icep.platform.auth import Principal, PrincipalDep, TokenVerifier, require_role, required_scope
from icep.platform.errors import Unauthorized
from icep.platform.problems import install_problem_handlers
from icep.platform.testing import wait_for

ISSUER = "https://gateway.icep.test"
AUDIENCE = "icep"


class KeySet:
    """An in-memory issuer: signs tokens and serves its JWKS, counting how often it is asked."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.fetches = 0
        self.add("k1", ec.generate_private_key(ec.SECP256R1()), "ES256")

    def add(self, kid: str, key: Any, alg: str) -> None:
        self.keys[kid] = (key, alg)

    async def jwks(self) -> dict[str, Any]:
        self.fetches += 1
        return {
            "keys": [{**_public_jwk(key), "kid": kid, "alg": alg} for kid, (key, alg) in self.keys.items()]
        }

    def token(self, kid: str = "k1", **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "deu-planner",
            "nation": "DEU",
            "roles": ["planner"],
            "scope": "read write",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            **claims,
        }
        return self.sign(body, kid)

    def sign(self, body: dict[str, Any], kid: str = "k1") -> str:
        key, alg = self.keys[kid]
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})

    def verifier(self, **options: Any) -> TokenVerifier:
        return TokenVerifier(ISSUER, AUDIENCE, "unused", jwks_source=self.jwks, **options)


def _public_jwk(key: Any) -> dict[str, Any]:
    from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

    public = key.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        return ECAlgorithm.to_jwk(public, as_dict=True)
    if isinstance(public, rsa.RSAPublicKey):
        return RSAAlgorithm.to_jwk(public, as_dict=True)
    return OKPAlgorithm.to_jwk(public, as_dict=True)


async def test_asymmetric_algorithms_verify() -> None:
    keys = KeySet()
    keys.add("rsa", rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")
    keys.add("ed", ed25519.Ed25519PrivateKey.generate(), "EdDSA")
    verifier = keys.verifier()
    for kid in ("k1", "rsa", "ed"):
        principal = await verifier.verify(keys.token(kid))
        assert principal == Principal(
            "deu-planner", "DEU", frozenset({"planner"}), frozenset({"read", "write"})
        )


async def test_a_key_is_only_used_with_its_own_algorithm() -> None:
    keys = KeySet()
    verifier = keys.verifier()
    await verifier.verify(keys.token())
    forged = jwt.encode(
        {"sub": "x"}, ec.generate_private_key(ec.SECP384R1()), algorithm="ES384", headers={"kid": "k1"}
    )
    with pytest.raises(Unauthorized, match="cannot be used with algorithm ES384"):
        await verifier.verify(forged)


async def test_leeway_tolerates_small_clock_skew() -> None:
    keys = KeySet()
    now = int(time.time())
    verifier = keys.verifier(leeway=30)
    await verifier.verify(keys.token(exp=now - 10, iat=now - 310, nbf=now - 310))
    await verifier.verify(keys.token(nbf=now + 10, iat=now + 10))
    with pytest.raises(Unauthorized, match="expired"):
        await verifier.verify(keys.token(exp=now - 60))


async def test_junk_kids_do_not_hammer_the_issuer() -> None:
    keys = KeySet()
    verifier = keys.verifier(refresh_interval=60)
    await verifier.verify(keys.token())
    assert keys.fetches == 1
    for n in range(20):
        with pytest.raises(Unauthorized, match="unknown key"):
            await verifier.verify(_with_kid(keys, f"junk-{n}"))
    assert keys.fetches == 2  # one refetch for the first unknown kid, none for the rest


def _with_kid(keys: KeySet, kid: str) -> str:
    key, alg = keys.keys["k1"]
    return jwt.encode({"sub": "x"}, key, algorithm=alg, headers={"kid": kid})


async def test_a_rotated_in_key_is_fetched_on_first_sight() -> None:
    keys = KeySet()
    verifier = keys.verifier(refresh_interval=60)
    await verifier.verify(keys.token())
    keys.add("k2", ec.generate_private_key(ec.SECP256R1()), "ES256")
    assert (await verifier.verify(keys.token("k2"))).client_id == "deu-planner"
    assert keys.fetches == 2


async def test_a_withdrawn_key_stops_working_once_the_cache_ages() -> None:
    keys = KeySet()
    verifier = keys.verifier(max_key_age=0)
    token = keys.token()
    await verifier.verify(token)
    del keys.keys["k1"]
    keys.add("k2", ec.generate_private_key(ec.SECP256R1()), "ES256")
    with pytest.raises(Unauthorized, match="unknown key"):
        await verifier.verify(token)


async def test_a_verified_token_is_remembered_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = KeySet()
    verifier = keys.verifier(leeway=0)
    decoded: list[str] = []
    real_decode = jwt.decode

    def counting_decode(token: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(token)
        return real_decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    token = keys.token(exp=int(time.time()) + 1)
    first = await verifier.verify(token)
    assert await verifier.verify(token) == first
    assert len(decoded) == 1  # the signature was checked once

    async def refused() -> str | None:
        try:
            await verifier.verify(token)
        except Unauthorized as exc:
            return exc.detail
        return None

    assert (
        await wait_for(refused, timeout=5, what="the remembered token to expire") == "the token has expired"
    )


async def test_a_remembered_token_is_checked_again_when_its_key_changes() -> None:
    keys = KeySet()
    verifier = keys.verifier(max_key_age=0)
    token = keys.token()
    await verifier.verify(token)
    keys.add("k1", ec.generate_private_key(ec.SECP256R1()), "ES256")  # same kid, another key
    with pytest.raises(Unauthorized, match="signature is invalid"):
        await verifier.verify(token)


async def test_remembered_tokens_are_bounded() -> None:
    keys = KeySet()
    verifier = keys.verifier(max_tokens=4)
    tokens = [keys.token(jti=str(n)) for n in range(10)]
    for token in tokens:
        await verifier.verify(token)
    assert len(verifier._verified) <= 4
    assert (await verifier.verify(tokens[0])).client_id == "deu-planner"  # a forgotten one verifies again


async def test_symmetric_and_private_keys_in_a_jwks_are_ignored() -> None:
    async def jwks() -> dict[str, Any]:
        private = jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()), as_dict=True)
        return {"keys": [{"kty": "oct", "kid": "sym", "k": "c2VjcmV0"}, {**private, "kid": "priv"}]}

    verifier = TokenVerifier(ISSUER, AUDIENCE, "unused", jwks_source=jwks)
    token = jwt.encode(
        {"sub": "x"}, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": "priv"}
    )
    with pytest.raises(Unauthorized, match="unknown key"):
        await verifier.verify(token)


async def test_an_unreachable_key_set_is_401_not_500(refusing_port: Any) -> None:
    keys = KeySet()
    with refusing_port() as port:
        async with httpx.AsyncClient(trust_env=False) as http:
            verifier = TokenVerifier(ISSUER, AUDIENCE, f"http://127.0.0.1:{port}/jwks", http=http)
            with pytest.raises(Unauthorized, match="key set is unavailable"):
                await verifier.verify(keys.token())
            # Asked again at once: refused without another attempt, still as 401.
            with pytest.raises(Unauthorized, match="key set is unavailable"):
                await verifier.verify(keys.token())


async def test_a_key_set_that_is_not_json_is_unavailable(server: Any) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def broken(request: Any) -> PlainTextResponse:
        return PlainTextResponse("<html>oops</html>")

    async with (
        server(Starlette(routes=[Route("/jwks", broken)])) as url,
        httpx.AsyncClient(trust_env=False) as http,
    ):
        verifier = TokenVerifier(ISSUER, AUDIENCE, f"{url}/jwks", http=http)
        with pytest.raises(Unauthorized, match="key set is unavailable"):
            await verifier.verify(KeySet().token())


def _service(keys: KeySet) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.state.token_verifier = keys.verifier()

    @app.api_route("/who", methods=["GET", "HEAD"])
    async def who(principal: PrincipalDep) -> dict[str, Any]:
        return {"client_id": principal.client_id, "nation": principal.nation}

    @app.post("/review", dependencies=[Depends(require_role("reviewer", "operator"))])
    async def review() -> dict[str, str]:
        return {"ok": "yes"}

    return app


async def test_dependencies_answer_401_and_403_as_problems() -> None:
    keys = KeySet()
    transport = httpx.ASGITransport(app=_service(keys))
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        missing = await client.get("/who")
        assert missing.status_code == 401
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert "bearer token is required" in missing.json()["detail"]

        wrong_scheme = await client.get("/who", headers={"Authorization": "Basic eDp5"})
        assert wrong_scheme.status_code == 401

        expired = keys.token(exp=int(time.time()) - 600)
        assert (await client.get("/who", headers={"Authorization": f"Bearer {expired}"})).json()[
            "detail"
        ] == ("the token has expired")

        planner = {"Authorization": f"Bearer {keys.token()}"}
        assert (await client.get("/who", headers=planner)).json() == {
            "client_id": "deu-planner",
            "nation": "DEU",
        }
        forbidden = await client.post("/review", headers=planner)
        assert forbidden.status_code == 403
        assert forbidden.json()["required_roles"] == ["operator", "reviewer"]

        reviewer = {"Authorization": f"Bearer {keys.token(roles=['reviewer'], nation='NATO', sub='nato')}"}
        assert (await client.post("/review", headers=reviewer)).status_code == 200


@pytest.mark.parametrize(
    ("method", "scope"),
    [
        ("GET", "read"),
        ("HEAD", "read"),
        ("OPTIONS", "read"),
        ("get", "read"),
        ("POST", "write"),
        ("PUT", "write"),
        ("PATCH", "write"),
        ("DELETE", "write"),
        ("TRACE", "write"),  # anything not known to be safe needs the stronger scope
    ],
)
def test_the_scope_an_operation_needs_follows_its_method(method: str, scope: str) -> None:
    assert required_scope(method) == scope


def _assert_insufficient_scope(response: httpx.Response, scope: str) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == (
        f'Bearer realm="icep", error="insufficient_scope", scope="{scope}"'
    )
    if response.request.method == "HEAD":
        return  # no body
    problem = response.json()
    assert problem["type"].endswith("/insufficient_scope")
    assert problem["status"] == 403 and problem["required_scope"] == scope


async def test_every_service_holds_a_token_to_its_scopes(server: Any) -> None:
    """The shared dependency, in a service served for real: `read` reads, `write` changes, and a token
    without the scope an operation needs is refused before the route runs (roles do not make up for it)."""
    keys = KeySet()
    async with server(_service(keys)) as url, httpx.AsyncClient(base_url=url, trust_env=False) as client:

        def bearer(scope: str, **claims: Any) -> dict[str, str]:
            return {"Authorization": f"Bearer {keys.token(scope=scope, **claims)}"}

        reviewer = {"roles": ["reviewer"], "nation": "NATO", "sub": "nato"}
        read_only = bearer("read")
        assert (await client.get("/who", headers=read_only)).status_code == 200
        assert (await client.head("/who", headers=read_only)).status_code == 200
        _assert_insufficient_scope(await client.post("/review", headers=bearer("read", **reviewer)), "write")

        write_only = bearer("write", **reviewer)
        assert (await client.post("/review", headers=write_only)).status_code == 200
        _assert_insufficient_scope(await client.get("/who", headers=write_only), "read")
        _assert_insufficient_scope(await client.head("/who", headers=write_only), "read")

        # No scope at all (a provider that grants none, or only its own): nothing.
        for none in (bearer(""), bearer("profile email", **reviewer)):
            _assert_insufficient_scope(await client.get("/who", headers=none), "read")
            _assert_insufficient_scope(await client.post("/review", headers=none), "write")
        # Both: everything the roles allow.
        both = bearer("read write", **reviewer)
        assert (await client.get("/who", headers=both)).status_code == 200
        assert (await client.post("/review", headers=both)).status_code == 200


def test_require_role_refuses_unknown_roles() -> None:
    with pytest.raises(ValueError):
        require_role("admin")
    with pytest.raises(ValueError):
        require_role()


# --- tokens of an external identity provider ----------------------------------------------------------


def keycloak_claims(**claims: Any) -> dict[str, Any]:
    """What a Keycloak access token of a client-credentials grant carries (service account of `deu-mod`)."""
    now = int(time.time())
    return {
        "exp": now + 300,
        "iat": now,
        "jti": "0f6d1b1e-3c2a-4a63-9d55-6c3f6d0e8b11",
        "iss": ISSUER,
        "aud": ["account", AUDIENCE],
        "sub": "6a1d2f3e-8c7b-4b5a-9e0d-1c2b3a4f5e6d",
        "typ": "Bearer",
        "azp": "deu-mod",
        "acr": "1",
        "realm_access": {"roles": ["default-roles-icep", "offline_access", "uma_authorization", "planner"]},
        "resource_access": {
            AUDIENCE: {"roles": ["subscriber"]},
            "account": {"roles": ["manage-account", "reviewer"]},
        },
        "scope": "profile email",
        "clientHost": "127.0.0.1",
        "preferred_username": "service-account-deu-mod",
        "nation": "DEU",
        **claims,
    }


async def test_a_keycloak_token_maps_to_a_principal() -> None:
    keys = KeySet()
    principal = await keys.verifier().verify(keys.sign(keycloak_claims()))
    # The client is `azp` (Keycloak's `sub` is the service account's user id); realm roles and the roles for
    # our audience count, other clients' roles and Keycloak's own do not.
    assert principal == Principal(
        "deu-mod", "DEU", frozenset({"planner", "subscriber"}), frozenset({"profile", "email"})
    )


@pytest.mark.parametrize(
    ("claims", "client_id"),
    [
        ({"client_id": "from-client-id", "azp": "from-azp", "sub": "from-sub"}, "from-client-id"),
        ({"azp": "from-azp", "sub": "from-sub"}, "from-azp"),
        ({"sub": "from-sub"}, "from-sub"),
    ],
)
async def test_the_client_id_comes_from_client_id_then_azp_then_sub(
    claims: dict[str, str], client_id: str
) -> None:
    keys = KeySet()
    body = {k: v for k, v in keycloak_claims().items() if k not in ("azp", "sub")} | claims
    assert (await keys.verifier().verify(keys.sign(body))).client_id == client_id


async def test_an_empty_client_id_is_refused() -> None:
    keys = KeySet()
    with pytest.raises(Unauthorized, match="names no client"):
        await keys.verifier().verify(keys.sign(keycloak_claims(client_id="")))


async def test_the_audience_may_be_one_of_a_list() -> None:
    keys = KeySet()
    verifier = keys.verifier()
    await verifier.verify(keys.token(aud=["other", AUDIENCE]))
    with pytest.raises(Unauthorized, match="audience"):
        await verifier.verify(keys.token(aud=["other", "account"]))


async def test_the_nation_claim_is_configurable() -> None:
    keys = KeySet()
    nested = keys.verifier(nation_claim="attributes.nation")
    token = keys.sign(keycloak_claims(nation="POL", attributes={"nation": "FRA"}))
    assert (await nested.verify(token)).nation == "FRA"
    flat = keys.verifier(nation_claim="icep.nation")  # a claim whose name has a dot is found as such
    assert (await flat.verify(keys.sign(keycloak_claims(**{"icep.nation": "NLD"})))).nation == "NLD"
    with pytest.raises(Unauthorized, match=r"lacks the 'attributes\.nation' claim"):
        await nested.verify(keys.sign(keycloak_claims()))


@pytest.mark.parametrize(
    ("claims", "detail"),
    [
        ({"nation": None}, "lacks the 'nation' claim"),
        ({"nation": ["DEU"]}, "unknown nation"),
        ({"nation": "deu"}, "unknown nation"),
        ({"realm_access": {"roles": "planner"}}, "'realm_access.roles' claim is not a list"),
        ({"resource_access": {AUDIENCE: {"roles": [1]}}}, f"'resource_access.{AUDIENCE}.roles'"),
        ({"scope": 7}, "'scope' claim"),
    ],
)
async def test_malformed_provider_claims_are_401(claims: dict[str, Any], detail: str) -> None:
    keys = KeySet()
    body = {k: v for k, v in keycloak_claims(**claims).items() if v is not None}
    with pytest.raises(Unauthorized, match=re.escape(detail)):
        await keys.verifier().verify(keys.sign(body))


async def test_scopes_may_come_as_an_scp_list() -> None:
    keys = KeySet()
    body = {k: v for k, v in keycloak_claims(scp=["read", "write"]).items() if k != "scope"}
    assert (await keys.verifier().verify(keys.sign(body))).scopes == {"read", "write"}


async def test_the_max_key_age_comes_from_the_settings() -> None:
    from icep.platform.settings import ServiceSettings

    verifier = TokenVerifier.from_settings(
        ServiceSettings(auth_jwks_max_age_seconds=7, auth_nation_claim="attributes.nation")
    )
    assert (verifier.max_key_age, verifier.nation_claim) == (7, "attributes.nation")
    await verifier.aclose()
