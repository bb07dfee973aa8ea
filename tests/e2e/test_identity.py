"""Identity end to end: bad tokens refused alike by the gateway and by every service called directly, an
operator's `icep keys` and `icep clients` commands applied to a running platform without a restart, and an
external identity provider (Keycloak-shaped) in place of the gateway's own tokens."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from prometheus_client.parser import text_string_to_metric_families

from icep.gateway.clients import load_clients
from icep.gateway.keys import SigningKey, SigningKeys
from icep.gateway.tokens import TokenIssuer
from icep.platform.testing import wait_for

PROBLEM = "application/problem+json"
REPO = Path(__file__).resolve().parents[2]

#: A list every service answers to any authenticated caller: the positive control of each refusal.
SERVICE_PATHS = {
    "plans": "/v1/plans",
    "procurement": "/v1/initiatives",
    "standards": "/v1/standards",
    "notifications": "/v1/subscriptions",
}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join([_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(signature)])


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def assert_401(response: httpx.Response, detail: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert body["status"] == 401 and body["title"] and body["type"].startswith("https://")
    assert detail in body["detail"], body["detail"]


def endpoints(platform: Any) -> dict[str, str]:
    """Where a caller can send a request: the gateway, and (bypassing it) each service's own port."""
    found = {"gateway": f"{platform.gateway}/v1/plans"}
    for service, path in SERVICE_PATHS.items():
        found[service] = f"http://127.0.0.1:{platform.launcher.ports[service]}{path}"
    return found


# --- every kind of bad token, at the gateway and at each service -----------------------------------------


class Forger:
    """Makes bad tokens out of a good one, with the gateway's own signing key at hand."""

    def __init__(self, key: SigningKey, good: dict[str, Any]) -> None:
        self.key = key
        self.good = good
        self.now = int(time.time())

    def signed(self, **changes: Any) -> str:
        claims = {k: v for k, v in {**self.good, **changes}.items() if v is not None}
        return jwt.encode(claims, self.key.private_key, algorithm="ES256", headers={"kid": self.key.kid})

    def by_stranger(self, kid: str) -> str:
        stranger = ec.generate_private_key(ec.SECP256R1())
        return jwt.encode(self.good, stranger, algorithm="ES256", headers={"kid": kid})

    def hmac_with_public_key(self) -> str:
        # Key confusion: an HS256 "signature" keyed with the gateway's published public key.
        public_pem = self.key.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        unsigned = _forge({"alg": "HS256", "kid": self.key.kid, "typ": "JWT"}, self.good).rsplit(".", 1)[0]
        return unsigned + "." + _b64(hmac.new(public_pem, unsigned.encode(), hashlib.sha256).digest())

    def tampered(self) -> str:
        header, _, signature = self.signed().split(".")
        payload = _b64(json.dumps({**self.good, "nation": "FRA", "roles": ["reviewer"]}).encode())
        return f"{header}.{payload}.{signature}"


#: case -> (Authorization header from a Forger, what the problem's detail says)
BAD_TOKENS: dict[str, tuple[Callable[[Forger], str | None], str]] = {
    "expired": (
        lambda f: f"Bearer {f.signed(exp=f.now - 600, iat=f.now - 900, nbf=f.now - 900)}",
        "the token has expired",
    ),
    "not yet valid": (
        lambda f: f"Bearer {f.signed(nbf=f.now + 600, iat=f.now + 600)}",
        "the token is not valid yet",
    ),
    "wrong audience": (lambda f: f"Bearer {f.signed(aud='someone-else')}", "not meant for this audience"),
    "wrong issuer": (lambda f: f"Bearer {f.signed(iss='https://evil.example')}", "not issued by the trusted"),
    "unknown key": (lambda f: f"Bearer {f.by_stranger('not-ours')}", "signed with an unknown key"),
    "right kid, wrong key": (lambda f: f"Bearer {f.by_stranger(f.key.kid)}", "signature is invalid"),
    "alg none": (
        lambda f: f"Bearer {_forge({'alg': 'none', 'kid': f.key.kid, 'typ': 'JWT'}, f.good)}",
        "'none' is not accepted",
    ),
    "HS256 with the public key": (lambda f: f"Bearer {f.hmac_with_public_key()}", "'HS256' is not accepted"),
    "tampered payload": (lambda f: f"Bearer {f.tampered()}", "signature is invalid"),
    "missing nation": (lambda f: f"Bearer {f.signed(nation=None)}", "lacks the 'nation' claim"),
    "unknown nation": (lambda f: f"Bearer {f.signed(nation='XYZ')}", "unknown nation"),
    "no kid": (
        lambda f: f"Bearer {jwt.encode(f.good, f.key.private_key, algorithm='ES256')}",
        "names no signing key",
    ),
    "malformed": (lambda f: "Bearer not.a.jwt", "malformed"),
    "no authorization": (lambda f: None, "a bearer token is required"),
    "wrong scheme": (lambda f: "Basic ZGV1LXBsYW5uZXI6eA==", "must use the Bearer scheme"),
}


@pytest.fixture(scope="module")
async def forger(platform: Any) -> Forger:
    keys = SigningKeys.load_or_create(platform.var_dir / "gateway" / "signing-keys.json")
    good = _claims(await platform.token("deu-planner"))
    return Forger(keys.current, good)


async def test_a_good_token_works_everywhere(platform: Any) -> None:
    """The control for the refusals below: the same requests with a real token succeed."""
    token = await platform.token("deu-planner")
    for where, url in endpoints(platform).items():
        response = await platform.http.get(url, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, (where, response.text)


def assert_insufficient_scope(response: httpx.Response, scope: str) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert f'error="insufficient_scope", scope="{scope}"' in response.headers["www-authenticate"]
    body = response.json()
    assert body["type"].endswith("insufficient_scope") and body["required_scope"] == scope


async def test_a_token_is_held_to_its_scopes_by_the_gateway_and_by_every_service(
    platform: Any, plan_body: Callable[..., dict[str, Any]]
) -> None:
    """A client asks the token endpoint for less than it may have: `read` reads and changes nothing,
    `write` changes and reads nothing; a service reached directly holds the token to it as well."""

    async def token(scope: str) -> dict[str, str]:
        answer = await platform.http.post(
            f"{platform.gateway}/oauth/token",
            data={"grant_type": "client_credentials", "scope": scope},
            auth=("deu-planner", "deu-planner-dev-secret"),
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["scope"] == scope and _claims(answer.json()["access_token"])["scope"] == scope
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}

    read, write = await asyncio.gather(token("read"), token("write"))
    plans = f"http://127.0.0.1:{platform.launcher.ports['plans']}"
    http = platform.http
    refused_writes = await asyncio.gather(
        http.post(f"{platform.gateway}/v1/plans", json=plan_body(), headers=read),
        http.post(f"{plans}/v1/plans", json=plan_body(), headers=read),
    )
    for response in refused_writes:
        assert_insufficient_scope(response, "write")
    reads = await asyncio.gather(*(http.get(url, headers=read) for url in endpoints(platform).values()))
    assert [r.status_code for r in reads] == [200] * len(reads), [r.text for r in reads]

    created = await http.post(f"{platform.gateway}/v1/plans", json=plan_body(), headers=write)
    assert created.status_code == 201, created.text
    refused_reads = await asyncio.gather(
        http.get(f"{platform.gateway}/v1/plans/{created.json()['id']}", headers=write),
        *(http.get(url, headers=write) for url in endpoints(platform).values()),
    )
    for response in refused_reads:
        assert_insufficient_scope(response, "read")
    # Nothing the client may not have: a scope outside its own is refused at the token endpoint.
    wider = await http.post(
        f"{platform.gateway}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "read admin"},
        auth=("deu-planner", "deu-planner-dev-secret"),
    )
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_a_bad_token_is_refused_by_the_gateway_and_by_every_service(
    platform: Any, forger: Forger, case: str
) -> None:
    make, detail = BAD_TOKENS[case]
    authorization = make(forger)
    headers = {"Authorization": authorization} if authorization is not None else {}
    for where, url in endpoints(platform).items():
        response = await platform.http.get(url, headers=headers)
        try:
            assert_401(response, detail)
        except AssertionError as exc:
            raise AssertionError(f"{case} at {where}: {exc}") from None


# --- the management surface: for operators only, on a port of its own ---------------------------------------

#: What only operators may read; on the API port it is not there at all (404), token or no token.
SERVICE_ONLY_DOCUMENTS = ("/docs", "/redoc", "/openapi.json")


async def _management_split(platform: Any, process: str, token: str) -> None:
    http = platform.http
    api = f"http://127.0.0.1:{platform.launcher.ports[process]}"
    management = platform.management(process)
    # A request on the API port first, so this process's own latency series is in its metrics below.
    path = SERVICE_PATHS.get(process, "/v1/plans")
    assert (await http.get(f"{api}{path}", headers={"Authorization": f"Bearer {token}"})).status_code == 200

    hidden = ["/metrics", *(SERVICE_ONLY_DOCUMENTS if process != "gateway" else ())]
    for where in hidden:
        for headers in ({}, {"Authorization": f"Bearer {token}"}):
            answer = await http.get(f"{api}{where}", headers=headers)
            assert answer.status_code == 404, (process, where, answer.text)
            assert answer.headers["content-type"].startswith(PROBLEM), (process, where)
            assert "icep_" not in answer.text and "swagger" not in answer.text.lower()

    metrics = await http.get(f"{management}/metrics")
    assert metrics.status_code == 200, (process, metrics.text)
    assert metrics.headers["content-type"].startswith("text/plain")
    samples = [
        sample
        for family in text_string_to_metric_families(metrics.text)
        for sample in family.samples
        if sample.name == "icep_http_request_duration_seconds_count"
    ]
    assert any(
        s.labels["service"] == process and s.labels["method"] == "GET" and s.value >= 1 for s in samples
    ), (process, samples)

    if process != "gateway":
        document = await http.get(f"{management}/openapi.json")
        assert document.status_code == 200 and path in document.json()["paths"], process
        for where in ("/docs", "/redoc"):
            page = await http.get(f"{management}{where}")
            assert page.status_code == 200 and "/openapi.json" in page.text, (process, where)
    # Health answers on both ports: orchestrators and `icep up` ask the API port.
    for base in (api, management):
        assert (await http.get(f"{base}/healthz")).json() == {"status": "ok", "service": process}
        ready = await http.get(f"{base}/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready", (process, base, ready.text)


async def test_metrics_and_service_documents_are_served_on_the_management_port_only(platform: Any) -> None:
    token = await platform.token("deu-planner")
    await asyncio.gather(*(_management_split(platform, p, token) for p in ["gateway", *SERVICE_PATHS]))
    # The gateway's merged API documents are for partners: they stay on its public port, without a token.
    for where in ("/docs", "/openapi.json", "/asyncapi.json"):
        public = await platform.http.get(f"{platform.gateway}{where}")
        assert public.status_code == 200, (where, public.text)
    assert "/v1/plans" in (await platform.http.get(f"{platform.gateway}/openapi.json")).json()["paths"]


# --- operators' commands against a running platform -------------------------------------------------


async def icep(*args: str) -> str:
    """Run the `icep` command as an operator would, in its own process; its standard output."""
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "icep.platform.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_operators_rotate_keys_and_manage_clients_without_a_restart(
    kafka_bootstrap: str, start_platform: Any, tmp_path: Path
) -> None:
    clients_file = tmp_path / "clients.toml"
    shutil.copyfile(REPO / "deploy" / "dev-clients.toml", clients_file)
    platform = await start_platform(
        kafka_bootstrap,
        {
            "ICEP_GATEWAY_CLIENTS_FILE": str(clients_file),
            # Services trust a fetched key set for a second only, so a retired key drops out quickly here.
            "ICEP_AUTH_JWKS_MAX_AGE_SECONDS": "1",
        },
    )
    keys_file = platform.var_dir / "gateway" / "signing-keys.json"
    http = platform.http
    plans = f"http://127.0.0.1:{platform.launcher.ports['plans']}/v1/plans"
    gateway = f"{platform.gateway}/v1/plans"

    async def status(url: str, token: str) -> int:
        return int((await http.get(url, headers={"Authorization": f"Bearer {token}"})).status_code)

    # Key rotation: new tokens carry the new kid; tokens of the old key keep working everywhere.
    old_token = await platform.token("deu-planner")
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    new_kid = re.findall(r"^kid: (\S+)$", await icep("keys", "rotate", "--file", str(keys_file)), re.M)[0]
    new_token = await platform.token("deu-planner")
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid != old_kid
    jwks = (await http.get(f"{platform.gateway}/.well-known/jwks.json")).json()
    assert [k["kid"] for k in jwks["keys"]] == [new_kid, old_kid]
    for url in (gateway, plans):
        assert await status(url, new_token) == 200
        assert await status(url, old_token) == 200

    # Retiring the old key: its tokens are refused at the gateway and, once their cached key set has aged,
    # at the services too; the new key's tokens are unaffected.
    # A kid may begin with "-": after "--" it is not taken for an option.
    await icep("keys", "retire", "--force", "--file", str(keys_file), "--", old_kid)
    for url in (gateway, plans):

        async def refused(url: str = url) -> httpx.Response | None:
            r = await http.get(url, headers={"Authorization": f"Bearer {old_token}"})
            return r if r.status_code == 401 else None

        assert_401(
            await wait_for(refused, timeout=30, what=f"{url} to refuse the retired key"), "unknown key"
        )
        assert await status(url, new_token) == 200

    # Disabling a client: no token from the next request on, and its tokens stop at the gateway.
    await icep("clients", "disable", "deu-planner", "--file", str(clients_file))
    refused_token = await http.post(
        f"{platform.gateway}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("deu-planner", "deu-planner-dev-secret"),
    )
    assert refused_token.status_code == 401 and refused_token.json()["error"] == "invalid_client"

    async def stopped() -> httpx.Response | None:
        r = await http.get(gateway, headers={"Authorization": f"Bearer {new_token}"})
        return r if r.status_code == 401 else None

    assert_401(await wait_for(stopped, timeout=30, what="the gateway to stop a disabled client"), "disabled")
    assert await status(gateway, await platform.token("fra-planner")) == 200

    await icep("clients", "enable", "deu-planner", "--file", str(clients_file))
    assert await status(gateway, await platform.token("deu-planner")) == 200

    # A client registered now gets its token and is who it was registered as.
    printed = await icep(
        "clients", "register", "est-mod", "--nation", "EST", "--role", "planner", "--file", str(clients_file)
    )
    secret = re.findall(r"^client_secret: (\S+)$", printed, re.M)[0]
    assert secret not in clients_file.read_text(encoding="utf-8")
    issued = await http.post(
        f"{platform.gateway}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("est-mod", secret),
    )
    assert issued.status_code == 200, issued.text
    claims = _claims(issued.json()["access_token"])
    assert (claims["client_id"], claims["nation"], claims["roles"]) == ("est-mod", "EST", ["planner"])
    assert claims["iss"] == platform.gateway
    assert await status(gateway, issued.json()["access_token"]) == 200
    assert load_clients(clients_file).clients.keys() >= {"est-mod", "deu-planner", "ukr-procurement"}


# --- an external identity provider ---------------------------------------------------------------------


class FakeKeycloak:
    """A Keycloak realm as far as ICEP sees it: an RSA key set at the realm's certs URL (a real HTTP server
    on 127.0.0.1), and access tokens of client-credentials grants signed with that key."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "rsa-realm-icep-1"
        self.fetches = 0
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> FakeKeycloak:
        realm = self
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        body = json.dumps({"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/realms/icep/protocol/openid-connect/certs":
                    self.send_error(404)
                    return
                realm.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-keycloak", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def issuer(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/realms/icep"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/certs"

    def token(
        self, client_id: str, nation: str, realm_roles: list[str], icep_roles: list[str], **extra: Any
    ) -> str:
        now = int(time.time())
        claims = {
            "exp": now + 300,
            "iat": now,
            "jti": f"{client_id}-{now}",
            "iss": self.issuer,
            "aud": ["icep", "account"],
            "sub": "6a1d2f3e-8c7b-4b5a-9e0d-1c2b3a4f5e6d",  # the service account's user id, not the client
            "typ": "Bearer",
            "azp": client_id,
            "realm_access": {"roles": ["default-roles-icep", "offline_access", *realm_roles]},
            "resource_access": {"icep": {"roles": icep_roles}, "account": {"roles": ["manage-account"]}},
            # `read` and `write` are client scopes of the realm, granted to ICEP's clients.
            "scope": "profile email read write",
            "clientHost": "127.0.0.1",
            "client_id": client_id,
            "preferred_username": f"service-account-{client_id}",
            "nation": nation,  # a hardcoded-claim mapper on the client
            **extra,
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})


@pytest.fixture
def keycloak() -> Iterator[FakeKeycloak]:
    realm = FakeKeycloak().start()
    try:
        yield realm
    finally:
        realm.stop()


async def test_an_external_identity_provider_replaces_the_gateways_tokens(
    kafka_bootstrap: str,
    start_platform: Any,
    keycloak: FakeKeycloak,
    plan_body: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    platform = await start_platform(
        kafka_bootstrap,
        {
            "ICEP_AUTH_ISSUER": keycloak.issuer,
            "ICEP_AUTH_JWKS_URL": keycloak.jwks_url,
            "ICEP_GATEWAY_ISSUE_TOKENS": "false",
        },
    )
    http = platform.http
    plans = f"http://127.0.0.1:{platform.launcher.ports['plans']}"

    # The gateway issues nothing and says where tokens come from (RFC 6749 error format).
    answer = await http.post(
        f"{platform.gateway}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("deu-planner", "deu-planner-dev-secret"),
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "unsupported_grant_type"
    assert keycloak.issuer in answer.json()["error_description"]

    # The provider's token works through the gateway and directly at a service: the planner role comes from
    # the realm roles, the nation from its own claim, the client from `azp`/`client_id`.
    planner = keycloak.token("deu-mod-planning", "DEU", ["planner"], ["subscriber"])
    bearer = {"Authorization": f"Bearer {planner}"}
    created = await http.post(f"{platform.gateway}/v1/plans", json=plan_body(), headers=bearer)
    assert created.status_code == 201, created.text
    plan = created.json()
    assert plan["nation"] == "DEU"
    direct = await http.get(f"{plans}/v1/plans/{plan['id']}", headers=bearer)
    assert direct.status_code == 200 and direct.json()["id"] == plan["id"]
    for where, url in endpoints(platform).items():
        response = await http.get(url, headers=bearer)
        assert response.status_code == 200, (where, response.text)
    submitted = await http.post(
        f"{platform.gateway}/v1/plans/{plan['id']}/submit",
        headers={**bearer, "If-Match": created.headers["etag"]},
    )
    assert submitted.status_code == 200, submitted.text
    # Roles granted on the `icep` client (resource_access) count as well: NATO's reviewer starts the review.
    reviewer = keycloak.token("nato-is-review", "NATO", [], ["reviewer"])
    reviewing = await http.post(
        f"{platform.gateway}/v1/plans/{plan['id']}/start-review",
        headers={"Authorization": f"Bearer {reviewer}", "If-Match": submitted.headers["etag"]},
    )
    assert reviewing.status_code == 200 and reviewing.json()["status"] == "under_review", reviewing.text
    # Keycloak's own roles grant nothing: without an ICEP role no plan is created.
    bystander = keycloak.token("deu-portal", "DEU", ["uma_authorization"], [])
    forbidden = await http.post(
        f"{plans}/v1/plans", json=plan_body(), headers={"Authorization": f"Bearer {bystander}"}
    )
    assert forbidden.status_code == 403, forbidden.text

    # Tokens the gateway would issue on its own are refused, and so is anything else not the realm's.
    gateway_keys = SigningKeys.load_or_create(tmp_path / "gateway-keys.json")
    issuer = TokenIssuer(gateway_keys, issuer=platform.gateway, audience="icep", ttl_seconds=300)
    own_token, _ = issuer.issue(load_clients(REPO / "deploy" / "dev-clients.toml").clients["deu-planner"])
    posing = jwt.encode(
        _claims(planner), gateway_keys.current.private_key, algorithm="ES256", headers={"kid": keycloak.kid}
    )
    wrong_issuer = keycloak.token("deu-mod-planning", "DEU", ["planner"], [], iss=platform.gateway)
    for token, detail in (
        (own_token, "unknown key"),
        (posing, "cannot be used with algorithm ES256"),
        (wrong_issuer, "not issued by the trusted issuer"),
    ):
        for where, url in endpoints(platform).items():
            response = await http.get(url, headers={"Authorization": f"Bearer {token}"})
            try:
                assert_401(response, detail)
            except AssertionError as exc:
                raise AssertionError(f"at {where}: {exc}") from None
    assert keycloak.fetches >= 5  # the gateway and each of the four services fetched the realm's keys
