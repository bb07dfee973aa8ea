"""The gateway's plain rules: secrets, the clients file, routing, hop-by-hop headers, settings."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from icep.gateway import domain
from icep.gateway.domain import (
    ClientRegistry,
    InvalidClientsFile,
    end_to_end,
    hash_secret,
    hop_by_hop,
    load_clients,
    parse_clients,
    route,
    verify_secret,
)
from icep.gateway.settings import GatewaySettings
from icep.platform import auth

REPO = Path(__file__).resolve().parents[3]


# --- secrets --------------------------------------------------------------------------------------------


def test_a_hashed_secret_verifies_and_a_wrong_one_does_not() -> None:
    encoded = hash_secret("correct horse", n=2**4)
    assert encoded.startswith("scrypt$16$8$1$")
    assert verify_secret("correct horse", encoded)
    assert not verify_secret("correct horsf", encoded)
    assert not verify_secret("", encoded)


def test_hashes_are_salted() -> None:
    assert hash_secret("same", n=2**4) != hash_secret("same", n=2**4)


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plain",
        "bcrypt$1$2$3$4$5",
        "scrypt$16$8$1$!!$!!",
        "scrypt$x$8$1$AAAA$AAAA",
        "scrypt$15$8$1$AAAA$AAAA",
    ],
)
def test_a_malformed_hash_matches_nothing(encoded: str) -> None:
    assert not verify_secret("anything", encoded)


def test_the_default_cost_is_real() -> None:
    n, r, p = (int(x) for x in hash_secret("x").split("$")[1:4])
    assert (n, r, p) == (2**14, 8, 1)


def test_hash_secret_command_reads_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("operator-chosen-secret\n"))
    assert domain.main(["hash-secret"]) == 0
    printed = capsys.readouterr().out.strip()
    assert verify_secret("operator-chosen-secret", printed)


def test_hash_secret_command_can_generate(capsys: pytest.CaptureFixture[str]) -> None:
    assert domain.main(["hash-secret", "--generate"]) == 0
    lines = dict(line.split(":", 1) for line in capsys.readouterr().out.strip().splitlines())
    assert verify_secret(lines["secret"].strip(), lines["secret_hash"].strip())


# --- clients ------------------------------------------------------------------------------------------


DEV_CLIENTS = {
    # client id: (nation, roles); secrets are documented at the top of deploy/dev-clients.toml
    "deu-planner": ("DEU", {"planner", "subscriber"}),
    "fra-planner": ("FRA", {"planner", "subscriber"}),
    "pol-planner": ("POL", {"planner"}),
    "nato-reviewer": ("NATO", {"reviewer", "operator"}),
    "ukr-partner": ("UKR", {"subscriber"}),
    "deu-subscriber": ("DEU", {"subscriber"}),
    **{f"{n.lower()}-standards": (n, {"standards", "subscriber"}) for n in ("DEU", "FRA", "POL", "NATO")},
    **{
        f"{n.lower()}-procurement": (n, {"procurement", "subscriber"})
        for n in ("DEU", "FRA", "POL", "NLD", "NATO", "UKR")
    },
}


def test_the_development_clients_match_their_documented_secrets() -> None:
    path = REPO / "deploy" / "dev-clients.toml"
    header = path.read_text(encoding="utf-8")
    assert "development only" in header.lower()
    registry = load_clients(path)
    assert set(registry.clients) == set(DEV_CLIENTS)
    for client_id, (nation, roles) in DEV_CLIENTS.items():
        secret = f"{client_id}-dev-secret"
        assert f"{client_id:<15} {secret}" in header
        client = registry.authenticate(client_id, secret)
        assert client is not None, client_id
        assert client.nation == nation
        assert client.roles == roles
        assert registry.authenticate(client_id, secret + "x") is None


def _client(**fields: object) -> dict[str, object]:
    return {
        "client_id": "c1",
        "secret_hash": hash_secret("s", n=2**4),
        "nation": "DEU",
        "roles": ["planner"],
        **fields,
    }


def test_registry_authenticates_only_enabled_clients_with_the_right_secret() -> None:
    registry = parse_clients({"client": [_client(), _client(client_id="off", disabled=True)]})
    assert registry.authenticate("c1", "s") is not None
    assert registry.authenticate("c1", "t") is None
    assert registry.authenticate("off", "s") is None
    assert registry.authenticate("nobody", "s") is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"nation": "XYZ"}, "unknown nation"),
        ({"roles": ["admin"]}, "unknown roles"),
        ({"secret_hash": "plain"}, "secret_hash"),
        ({"client_id": ""}, "client_id"),
        ({"colour": "blue"}, "unknown fields"),
        ({"roles": "planner"}, "list of strings"),
        ({"disabled": "no"}, "boolean"),
    ],
)
def test_a_bad_client_entry_is_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidClientsFile, match=message):
        parse_clients({"client": [_client(**fields)]})


def test_duplicate_client_ids_are_refused() -> None:
    with pytest.raises(InvalidClientsFile, match="duplicate"):
        parse_clients({"client": [_client(), _client()]})


def test_an_unparseable_clients_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "clients.toml"
    path.write_text("[[client]\n", encoding="utf-8")
    with pytest.raises(InvalidClientsFile, match=str(path)):
        load_clients(path)


def test_scopes_narrow_but_never_widen() -> None:
    client = parse_clients({"client": [_client(scopes=["read", "write"])]}).clients["c1"]
    assert client.grantable_scopes(None) == frozenset({"read", "write"})
    assert client.grantable_scopes("  ") == frozenset({"read", "write"})
    assert client.grantable_scopes("read") == frozenset({"read"})
    assert client.grantable_scopes("read admin") is None


def test_the_gateway_and_the_platform_agree_on_roles() -> None:
    assert domain.KNOWN_ROLES == auth.ROLES
    assert auth.ALLIES | auth.PARTNERS | {auth.NATO} == domain.KNOWN_NATIONS
    assert len(auth.ALLIES) == 32


def test_an_empty_registry_is_empty() -> None:
    assert len(ClientRegistry()) == 0


# --- routing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "upstream"),
    [
        ("/v1/plans", "plans"),
        ("/v1/plans/", "plans"),
        ("/v1/plans/0190-abc/submit", "plans"),
        ("/v1/capacity/DEU", "plans"),
        ("/v1/subscriptions", "notifications"),
        ("/v1/events/stream", "notifications"),
        ("/v1/deliveries/7", "notifications"),
        ("/v1/procurement/x", "procurement"),
        ("/v1/initiatives", "procurement"),
        ("/v1/demand", "procurement"),
        ("/v1/demand-capacity", "procurement"),
        ("/v1/suppliers/9", "procurement"),
        ("/v1/standards/STANAG-4569", "standards"),
        ("/v1/interoperability", "standards"),
        ("/v1/interchangeability/x", "standards"),
        ("/v1/plansx", None),
        ("/v1/plan", None),
        ("/v1", None),
        ("/v2/plans", None),
        ("/plans", None),
        ("/", None),
    ],
)
def test_paths_route_by_whole_segments(path: str, upstream: str | None) -> None:
    assert route(path) == upstream


def test_the_longest_prefix_wins() -> None:
    routes = {"/v1/a": "short", "/v1/a/b": "long"}
    assert route("/v1/a/b/c", routes) == "long"
    assert route("/v1/a/bc", routes) == "short"
    assert route("/v1/a", routes) == "short"


# --- headers ------------------------------------------------------------------------------------------


def test_hop_by_hop_headers_include_those_named_in_connection() -> None:
    headers = [("Connection", "keep-alive, X-Trace-Hop"), ("X-Trace-Hop", "1"), ("Accept", "*/*")]
    assert {"connection", "keep-alive", "x-trace-hop", "transfer-encoding", "te", "upgrade"} <= hop_by_hop(
        headers
    )
    assert end_to_end(headers) == [("Accept", "*/*")]


def test_end_to_end_keeps_repeated_headers_and_drops_extras() -> None:
    headers = [
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Transfer-Encoding", "chunked"),
        ("Proxy-Authenticate", "Basic"),
        ("Host", "x"),
    ]
    assert end_to_end(headers, drop={"HOST"}) == [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]


# --- settings -----------------------------------------------------------------------------------------


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "ICEP_VAR_DIR",
        "ICEP_GATEWAY_SIGNING_KEYS_FILE",
        "ICEP_GATEWAY_PORT",
        "ICEP_GATEWAY_PLANS_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = GatewaySettings()
    assert settings.service_name == "gateway"
    assert settings.port == 8000
    assert settings.signing_keys_file == "var/gateway/signing-keys.json"
    assert settings.upstreams["plans"] == "http://127.0.0.1:8001"
    assert settings.upstreams["notifications"] == "http://127.0.0.1:8004"
    assert settings.max_body_bytes == 1024 * 1024


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICEP_VAR_DIR", "/srv/icep")
    monkeypatch.setenv("ICEP_GATEWAY_PLANS_URL", "http://plans:8080")
    monkeypatch.setenv("ICEP_GATEWAY_TOKEN_TTL_SECONDS", "60")
    monkeypatch.setenv("ICEP_AUTH_AUDIENCE", "icep-test")
    settings = GatewaySettings()
    assert settings.signing_keys_file == "/srv/icep/gateway/signing-keys.json"
    assert settings.plans_url == "http://plans:8080"
    assert settings.token_ttl_seconds == 60
    assert settings.auth_audience == "icep-test"
