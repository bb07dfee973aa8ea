"""The token endpoint (RFC 6749 client credentials), the JWKS, signing keys and their rotation."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx
import jwt
import pytest

from icep.gateway.keys import SigningKeys
from icep.platform.auth import TokenVerifier
from icep.platform.errors import Unauthorized

Gateway = tuple[str, Any]


def _basic(client_id: str, secret: str) -> str:
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(pair).decode()


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


async def test_token_with_http_basic(gateway: Gateway, http: httpx.AsyncClient) -> None:
    url, _ = gateway
    response = await http.post(
        f"{url}/oauth/token", data={"grant_type": "client_credentials"}, auth=("deu-planner", "deu-secret")
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "read write"
    claims = _claims(body["access_token"])
    assert claims["sub"] == "deu-planner"
    assert claims["nation"] == "DEU"
    assert claims["roles"] == ["planner", "subscriber"]
    assert claims["scope"] == "read write"
    assert claims["exp"] - claims["iat"] == 300
    assert {"iss", "aud", "nbf", "jti"} <= claims.keys()
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "ES256"


async def test_token_with_form_credentials_and_a_narrower_scope(
    gateway: Gateway, http: httpx.AsyncClient
) -> None:
    url, _ = gateway
    response = await http.post(
        f"{url}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "nato-reviewer",
            "client_secret": "nato-secret",
            "scope": "read",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "read"
    claims = _claims(response.json()["access_token"])
    assert (claims["sub"], claims["nation"], claims["scope"]) == ("nato-reviewer", "NATO", "read")


async def test_basic_credentials_are_form_urlencoded(gateway: Gateway, http: httpx.AsyncClient) -> None:
    url, _ = gateway
    response = await http.post(
        f"{url}/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": _basic("odd-secret", "p@ss:w rd+&=")},
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [("deu-planner", "wrong"), ("nobody", "deu-secret"), ("disabled-client", "disabled-secret"), ("", "")],
)
async def test_failed_client_authentication_is_invalid_client(
    gateway: Gateway, http: httpx.AsyncClient, client_id: str, secret: str
) -> None:
    url, _ = gateway
    response = await http.post(
        f"{url}/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": _basic(client_id, secret)},
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")
    assert response.headers["cache-control"] == "no-store"


async def test_no_credentials_is_invalid_client(gateway: Gateway, http: httpx.AsyncClient) -> None:
    url, _ = gateway
    response = await http.post(f"{url}/oauth/token", data={"grant_type": "client_credentials"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("form", "headers", "error"),
    [
        ({"grant_type": "password"}, {}, "unsupported_grant_type"),
        ({"grant_type": "authorization_code"}, {}, "unsupported_grant_type"),
        ({}, {}, "invalid_request"),
        ({"grant_type": "client_credentials", "scope": "read admin"}, {}, "invalid_scope"),
        ({"grant_type": "client_credentials", "client_secret": "deu-secret"}, {}, "invalid_request"),
        ({"grant_type": "client_credentials", "client_id": "nato-reviewer"}, {}, "invalid_request"),
    ],
)
async def test_oauth_errors(
    gateway: Gateway, http: httpx.AsyncClient, form: dict[str, str], headers: dict[str, str], error: str
) -> None:
    url, _ = gateway
    response = await http.post(
        f"{url}/oauth/token",
        data=form,
        headers={"Authorization": _basic("deu-planner", "deu-secret"), **headers},
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == error


async def test_a_json_body_is_an_invalid_request(gateway: Gateway, http: httpx.AsyncClient) -> None:
    url, _ = gateway
    response = await http.post(
        f"{url}/oauth/token", json={"grant_type": "client_credentials"}, auth=("deu-planner", "deu-secret")
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_a_repeated_parameter_is_an_invalid_request(gateway: Gateway, http: httpx.AsyncClient) -> None:
    url, _ = gateway
    response = await http.post(
        f"{url}/oauth/token",
        content=b"grant_type=client_credentials&grant_type=client_credentials",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=("deu-planner", "deu-secret"),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_the_issued_token_verifies_against_the_jwks_over_http(
    gateway: Gateway, http: httpx.AsyncClient, get_token: Any
) -> None:
    url, app = gateway
    jwks = (await http.get(f"{url}/.well-known/jwks.json")).json()
    assert [k["kty"] for k in jwks["keys"]] == ["EC"]
    assert "d" not in jwks["keys"][0]  # public keys only

    settings = app.state.token_issuer
    verifier = TokenVerifier(settings.issuer, settings.audience, f"{url}/.well-known/jwks.json", http=http)
    principal = await verifier.verify(await get_token(url))
    assert principal.client_id == "deu-planner"
    assert principal.nation == "DEU"
    assert principal.is_ally and not principal.is_partner and not principal.is_nato_staff
    assert principal.has_role("planner") and not principal.has_role("reviewer")
    assert principal.scopes == {"read", "write"}

    reviewer = await verifier.verify(await get_token(url, "nato-reviewer"))
    assert reviewer.is_nato_staff and not reviewer.is_ally
    partner = await verifier.verify(await get_token(url, "odd-secret"))
    assert partner.is_partner and partner.nation == "UKR"


def _forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)])


async def test_bad_tokens_are_rejected(gateway: Gateway, http: httpx.AsyncClient, get_token: Any) -> None:
    import hashlib
    import hmac
    import time

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    url, app = gateway
    issuer = app.state.token_issuer
    key = app.state.signing_keys.current
    verifier = TokenVerifier(issuer.issuer, issuer.audience, f"{url}/.well-known/jwks.json", http=http)
    good = _claims(await get_token(url))
    now = int(time.time())

    def signed(claims: dict[str, Any], **headers: Any) -> str:
        return jwt.encode(claims, key.private_key, algorithm="ES256", headers={"kid": key.kid, **headers})

    async def rejected(token: str, detail: str) -> None:
        with pytest.raises(Unauthorized, match=detail):
            await verifier.verify(token)

    await rejected(signed({**good, "exp": now - 120, "iat": now - 500, "nbf": now - 500}), "expired")
    await rejected(signed({**good, "aud": "someone-else"}), "audience")
    await rejected(signed({**good, "iss": "https://evil.example"}), "issuer")
    await rejected(signed({**good, "nbf": now + 600, "iat": now + 600}), "not valid yet")
    await rejected(signed({k: v for k, v in good.items() if k != "exp"}), "'exp'")
    await rejected(signed({**good, "nation": "XYZ"}), "unknown nation")
    await rejected(signed({**good, "roles": "planner"}), "roles")
    await rejected(_forge({"alg": "none", "kid": key.kid, "typ": "JWT"}, good), "not accepted")
    # Algorithm confusion: an HMAC "signed" with the published public key must not pass.
    public_pem = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    unsigned = _forge({"alg": "HS256", "kid": key.kid, "typ": "JWT"}, good).rsplit(".", 1)[0]
    mac = hmac.new(public_pem, unsigned.encode(), hashlib.sha256).digest()
    await rejected(unsigned + "." + base64.urlsafe_b64encode(mac).decode().rstrip("="), "not accepted")
    # A token whose claims were changed after signing.
    header, _, signature = signed(good).split(".")
    tampered = _forge({}, {**good, "nation": "FRA"}).split(".")[1]
    await rejected(f"{header}.{tampered}.{signature}", "signature")
    # Signed by a key the issuer never published.
    stranger = ec.generate_private_key(ec.SECP256R1())
    await rejected(jwt.encode(good, stranger, algorithm="ES256", headers={"kid": "not-ours"}), "unknown key")
    await rejected(jwt.encode(good, stranger, algorithm="ES256"), "kid")
    await rejected("not.a.token", "malformed")
    await rejected("", "malformed")


async def test_key_rotation_keeps_old_tokens_valid(
    gateway: Gateway, http: httpx.AsyncClient, get_token: Any
) -> None:
    url, app = gateway
    issuer = app.state.token_issuer
    verifier = TokenVerifier(issuer.issuer, issuer.audience, f"{url}/.well-known/jwks.json", http=http)
    old_token = await get_token(url)
    await verifier.verify(old_token)

    keys: SigningKeys = app.state.signing_keys
    new_key = keys.rotate()
    new_token = await get_token(url)
    assert (
        jwt.get_unverified_header(new_token)["kid"]
        == new_key.kid
        != jwt.get_unverified_header(old_token)["kid"]
    )

    # The verifier learns the new key on first sight of its kid, and still trusts the old one.
    assert (await verifier.verify(new_token)).client_id == "deu-planner"
    assert (await verifier.verify(old_token)).client_id == "deu-planner"
    jwks = (await http.get(f"{url}/.well-known/jwks.json")).json()
    assert {k["kid"] for k in jwks["keys"]} == {k.kid for k in keys.keys}
    # The gateway itself accepts both at once too.
    for token in (old_token, new_token):
        response = await http.get(f"{url}/v1/unrouted", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 404  # authenticated, then no service serves the path


def test_signing_keys_persist_with_private_permissions(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "signing-keys.json"
    keys = SigningKeys.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = SigningKeys.load_or_create(path)
    assert again.current.kid == keys.current.kid

    rotated = keys.rotate()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    reloaded = SigningKeys.load_or_create(path)
    assert [k.kid for k in reloaded.keys] == [k.kid for k in keys.keys]
    assert reloaded.current.kid == rotated.kid
    assert [k["kid"] for k in reloaded.jwks()["keys"]] == [rotated.kid, keys.keys[0].kid]
    assert list(path.parent.iterdir()) == [path]  # no temporary files left behind


def test_a_tampered_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "signing-keys.json"
    SigningKeys.load_or_create(path)
    document = json.loads(path.read_text())
    document["keys"][0]["kid"] = "someone-elses"
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="thumbprint"):
        SigningKeys.load_or_create(path)


async def test_keys_survive_a_gateway_restart(
    make_settings: Any, server: Any, http: httpx.AsyncClient
) -> None:
    from icep.gateway.app import create_app

    settings = make_settings()
    async with server(create_app(settings)) as url:
        first = (await http.get(f"{url}/.well-known/jwks.json")).json()
    async with server(create_app(settings)) as url:
        second = (await http.get(f"{url}/.well-known/jwks.json")).json()
    assert first == second


async def test_the_openapi_document_shows_the_gateways_own_endpoints(
    gateway: Gateway, http: httpx.AsyncClient
) -> None:
    url, _ = gateway
    document = (await http.get(f"{url}/openapi.json")).json()
    # The gateway's own endpoints (the merged document also holds the services' paths).
    assert {"/oauth/token", "/.well-known/jwks.json"} <= set(document["paths"])
    token = document["paths"]["/oauth/token"]["post"]
    assert token["operationId"] == "issueToken"
    assert "application/x-www-form-urlencoded" in token["requestBody"]["content"]


# --- changes by `icep clients` and `icep keys` apply to a running gateway -----------------------------


def _icep(*args: str) -> str:
    from typer.testing import CliRunner

    from icep.platform.cli import app as icep_app

    result = CliRunner().invoke(icep_app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def _problem_401(response: httpx.Response, detail: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert detail in response.json()["detail"]


async def test_a_client_disabled_by_the_cli_gets_no_token_and_its_tokens_stop_at_the_gateway(
    make_settings: Any, server: Any, http: httpx.AsyncClient, get_token: Any
) -> None:
    from icep.gateway.app import create_app
    from icep.platform.testing import wait_for

    settings = make_settings()
    async with server(create_app(settings)) as url:
        token = await get_token(url, "deu-planner")
        bearer = {"Authorization": f"Bearer {token}"}
        assert (await http.get(f"{url}/v1/unrouted", headers=bearer)).status_code == 404

        _icep("clients", "disable", "deu-planner", "--file", settings.clients_file)
        # No new token from the very next request: the token endpoint always looks at the file.
        refused = await http.post(
            f"{url}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=("deu-planner", "deu-secret"),
        )
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"

        # Its token, still unexpired, is refused by the gateway once it looked at the file again.
        async def refused_at_the_gateway() -> httpx.Response | None:
            r = await http.get(f"{url}/v1/unrouted", headers=bearer)
            return r if r.status_code == 401 else None

        response = await wait_for(refused_at_the_gateway, timeout=10, what="the gateway to refuse")
        _problem_401(response, "'deu-planner' is disabled")
        other = await get_token(url, "nato-reviewer")  # the others are unaffected
        response = await http.get(f"{url}/v1/unrouted", headers={"Authorization": f"Bearer {other}"})
        assert response.status_code == 404

        _icep("clients", "enable", "deu-planner", "--file", settings.clients_file)
        assert await get_token(url, "deu-planner")
        await wait_for(
            lambda: _status(http, f"{url}/v1/unrouted", bearer, 404), timeout=10, what="re-enabled"
        )


async def _status(http: httpx.AsyncClient, url: str, headers: dict[str, str], status: int) -> bool:
    return (await http.get(url, headers=headers)).status_code == status


async def test_clients_registered_or_rotated_by_the_cli_apply_without_restart(
    make_settings: Any, server: Any, http: httpx.AsyncClient
) -> None:
    import re

    from icep.gateway.app import create_app

    settings = make_settings()
    async with server(create_app(settings)) as url:

        async def token_status(client_id: str, secret: str) -> int:
            r = await http.post(
                f"{url}/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
            )
            return r.status_code

        printed = _icep(
            "clients", "register", "est-mod", "--nation", "EST", "--role", "planner",
            "--file", settings.clients_file,
        )  # fmt: skip
        secret = re.findall(r"^client_secret: (\S+)$", printed, re.MULTILINE)[0]
        assert await token_status("est-mod", secret) == 200

        printed = _icep(
            "clients", "rotate-secret", "est-mod", "--grace-seconds", "600", "-f", settings.clients_file
        )
        new_secret = re.findall(r"^client_secret: (\S+)$", printed, re.MULTILINE)[0]
        assert await token_status("est-mod", new_secret) == 200
        assert await token_status("est-mod", secret) == 200  # in its grace period

        printed = _icep("clients", "rotate-secret", "est-mod", "-f", settings.clients_file)
        newest = re.findall(r"^client_secret: (\S+)$", printed, re.MULTILINE)[0]
        assert await token_status("est-mod", newest) == 200
        assert await token_status("est-mod", new_secret) == 401
        assert await token_status("est-mod", secret) == 401


async def test_keys_rotated_and_retired_by_the_cli_apply_to_every_running_replica(
    make_settings: Any, server: Any, http: httpx.AsyncClient, get_token: Any
) -> None:
    from icep.gateway.app import create_app
    from icep.platform.testing import wait_for

    settings = make_settings()
    async with server(create_app(settings)) as one, server(create_app(settings)) as two:
        old_token = await get_token(one)
        old_kid = jwt.get_unverified_header(old_token)["kid"]
        assert jwt.get_unverified_header(await get_token(two))["kid"] == old_kid  # one shared key file

        printed = _icep("keys", "rotate", "--file", settings.signing_keys_file)
        new_kid = printed.split("kid: ", 1)[1].split()[0]
        # Both replicas sign with the new key from their next token on, and publish both keys.
        for url in (one, two):
            assert jwt.get_unverified_header(await get_token(url))["kid"] == new_kid
            jwks = (await http.get(f"{url}/.well-known/jwks.json")).json()
            assert [k["kid"] for k in jwks["keys"]] == [new_kid, old_kid]
        new_token = await get_token(one)
        for url in (one, two):
            for token in (old_token, new_token):  # each replica accepts the other's tokens, old and new
                response = await http.get(f"{url}/v1/unrouted", headers={"Authorization": f"Bearer {token}"})
                assert response.status_code == 404, response.text

        # A kid may begin with "-": after "--" it is not taken for an option.
        _icep("keys", "retire", "--force", "--file", settings.signing_keys_file, "--", old_kid)
        for url in (one, two):
            old = {"Authorization": f"Bearer {old_token}"}

            async def refused(url: str = url, old: dict[str, str] = old) -> httpx.Response | None:
                r = await http.get(f"{url}/v1/unrouted", headers=old)
                return r if r.status_code == 401 else None

            _problem_401(
                await wait_for(refused, timeout=10, what="the retired key's token refused"), "unknown key"
            )
            jwks = (await http.get(f"{url}/.well-known/jwks.json")).json()
            assert [k["kid"] for k in jwks["keys"]] == [new_kid]
            response = await http.get(f"{url}/v1/unrouted", headers={"Authorization": f"Bearer {new_token}"})
            assert response.status_code == 404


# --- an external identity provider instead of the gateway's own tokens ---------------------------------


class FakeIdentityProvider:
    """A Keycloak-like issuer: an RSA key published as a JWKS under a realm, and tokens signed with it."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "kc-rsa-1"
        self.base = ""

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def certs(request: Any) -> JSONResponse:
            public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
            return JSONResponse({"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]})

        return Starlette(routes=[Route("/realms/icep/protocol/openid-connect/certs", certs)])

    @property
    def issuer(self) -> str:
        return f"{self.base}/realms/icep"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/certs"

    def token(self, **claims: Any) -> str:
        import time

        now = int(time.time())
        body = {
            "exp": now + 300,
            "iat": now,
            "iss": self.issuer,
            "aud": ["icep", "account"],
            "sub": "6a1d2f3e-8c7b-4b5a-9e0d-1c2b3a4f5e6d",
            "typ": "Bearer",
            "azp": "deu-mod",
            "realm_access": {"roles": ["offline_access", "planner"]},
            "resource_access": {"icep": {"roles": ["subscriber"]}},
            # Keycloak lists the client scopes granted; `read` and `write` are client scopes of the realm.
            "scope": "profile email read write",
            "nation": "DEU",
            **claims,
        }
        return jwt.encode(body, self.key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})


async def test_an_external_issuer_replaces_the_gateways_own(
    make_settings: Any, server: Any, http: httpx.AsyncClient
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from icep.gateway.app import create_app

    idp = FakeIdentityProvider()
    async with server(idp.app()) as idp_url:
        idp.base = idp_url
        settings = make_settings(issue_tokens=False, auth_issuer=idp.issuer, auth_jwks_url=idp.jwks_url)
        async with server(create_app(settings)) as url:
            refused = await http.post(
                f"{url}/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=("deu-planner", "deu-secret"),
            )
            assert refused.status_code == 400
            assert refused.json()["error"] == "unsupported_grant_type"
            assert idp.issuer in refused.json()["error_description"]
            jwks = await http.get(f"{url}/.well-known/jwks.json")
            assert jwks.status_code == 404 and idp.jwks_url in jwks.json()["detail"]

            # The provider's token passes the gateway (which has no client of that id: it is not asked).
            ok = await http.get(f"{url}/v1/unrouted", headers={"Authorization": f"Bearer {idp.token()}"})
            assert ok.status_code == 404, ok.text
            # A token in the gateway's own shape, whoever signed it, is not the provider's.
            gateway_key = ec.generate_private_key(ec.SECP256R1())
            for token in (
                jwt.encode(
                    {**_claims(idp.token()), "iss": "http://127.0.0.1:8000"},
                    gateway_key,
                    algorithm="ES256",
                    headers={"kid": "gateway-key"},
                ),
                idp.token(iss="http://127.0.0.1:8000"),
                jwt.encode(_claims(idp.token()), gateway_key, algorithm="ES256", headers={"kid": idp.kid}),
            ):
                response = await http.get(f"{url}/v1/unrouted", headers={"Authorization": f"Bearer {token}"})
                assert response.status_code == 401, response.text
                assert response.headers["www-authenticate"].startswith("Bearer")
