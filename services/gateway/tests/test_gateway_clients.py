"""The gateway's plain rules: secrets, the clients file, routing, hop-by-hop headers, settings."""

from __future__ import annotations

import os
import tomllib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icep.gateway import clients as clients_module
from icep.gateway.clients import (
    Client,
    ClientRegistry,
    ClientsFile,
    FileWatch,
    InvalidClient,
    InvalidClientsFile,
    clients_file_header,
    hash_secret,
    load_clients,
    parse_clients,
    render_clients,
    toml_string,
    verify_secret,
    write_clients_file,
)
from icep.gateway.routing import end_to_end, hop_by_hop, route
from icep.gateway.settings import GatewaySettings
from icep.platform import auth
from icep.platform.settings import ServiceSettings

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
    **{f"{n.lower()}-operator": (n, {"operator"}) for n in ("DEU", "FRA")},
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
    assert clients_module.KNOWN_ROLES == auth.ROLES
    assert auth.ALLIES | auth.PARTNERS | {auth.NATO} == clients_module.KNOWN_NATIONS
    assert len(auth.ALLIES) == 32


def test_an_empty_registry_is_empty() -> None:
    assert len(ClientRegistry()) == 0


# --- secret rotation with a grace period ----------------------------------------------------------------

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def test_the_previous_secret_works_only_during_its_grace_period() -> None:
    old = parse_clients({"client": [_client()]}).clients["c1"]
    rotated = old.with_secret(hash_secret("t", n=2**4), grace_until=NOW + timedelta(minutes=5))
    registry = ClientRegistry({"c1": rotated})
    assert registry.authenticate("c1", "t", at=NOW) is not None
    assert registry.authenticate("c1", "s", at=NOW) is not None
    assert registry.authenticate("c1", "s", at=NOW + timedelta(minutes=5)) is None
    assert registry.authenticate("c1", "t", at=NOW + timedelta(minutes=5)) is not None
    assert registry.authenticate("c1", "u", at=NOW) is None
    # Disabled means disabled, whichever secret.
    off = ClientRegistry({"c1": replace(rotated, disabled=True)})
    assert off.authenticate("c1", "s", at=NOW) is None and off.authenticate("c1", "t", at=NOW) is None

    assert rotated.without_expired_secret(NOW) == rotated
    tidied = rotated.without_expired_secret(NOW + timedelta(hours=1))
    assert tidied.previous_secret_hash is None and tidied.previous_secret_expires_at is None
    # A rotation without grace forgets the previous secret at once.
    again = rotated.with_secret(hash_secret("v", n=2**4))
    assert again.previous_secret_hash is None
    assert ClientRegistry({"c1": again}).authenticate("c1", "t", at=NOW) is None


def test_a_previous_secret_in_the_file_is_read() -> None:
    entry = _client(previous_secret_hash=hash_secret("old", n=2**4), previous_secret_expires_at=NOW)
    client = parse_clients({"client": [entry]}).clients["c1"]
    assert client.previous_secret_expires_at == NOW
    assert client.previous_secret_valid(NOW - timedelta(seconds=1))
    assert not client.previous_secret_valid(NOW)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"previous_secret_hash": hash_secret("x", n=2**4)}, "go together"),
        ({"previous_secret_expires_at": NOW}, "go together"),
        ({"previous_secret_hash": "plain", "previous_secret_expires_at": NOW}, "previous secret_hash"),
        (
            {"previous_secret_hash": hash_secret("x", n=2**4), "previous_secret_expires_at": "tomorrow"},
            "date-time with an offset",
        ),
        (
            {
                "previous_secret_hash": hash_secret("x", n=2**4),
                "previous_secret_expires_at": datetime(2030, 1, 1),
            },
            "date-time with an offset",
        ),
    ],
)
def test_a_bad_previous_secret_is_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidClientsFile, match=message):
        parse_clients({"client": [_client(**fields)]})


# --- registering and changing clients --------------------------------------------------------------------


def _new(client_id: str = "est-mod", **fields: Any) -> Client:
    client = Client(client_id, hash_secret("s", n=2**4), "EST", frozenset({"planner"}), frozenset({"read"}))
    return replace(client, **fields)


def test_register_update_and_look_up() -> None:
    registry = ClientRegistry().register(_new("a")).register(_new("b"))
    assert list(registry.clients) == ["a", "b"]
    updated = registry.updated(replace(registry.existing("a"), disabled=True))
    assert list(updated.clients) == ["a", "b"]  # order kept
    assert updated.clients["a"].disabled and not registry.clients["a"].disabled  # a new registry
    with pytest.raises(InvalidClient, match="already registered"):
        registry.register(_new("a"))
    with pytest.raises(InvalidClient, match="no client 'c'"):
        registry.updated(_new("c"))
    with pytest.raises(InvalidClient, match=r"registered: a, b"):
        registry.existing("c")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"client_id": "-x"}, "client id"),
        ({"client_id": "x" * 101}, "client id"),
        ({"client_id": "a/b"}, "client id"),
        ({"nation": "XYZ"}, "unknown nation"),
        ({"nation": "deu"}, "unknown nation"),
        ({"roles": frozenset()}, "at least one role"),
        ({"roles": frozenset({"root"})}, "unknown roles"),
        ({"scopes": frozenset({"a b"})}, "scope"),
        ({"rate_tier": ""}, "rate tier"),
    ],
)
def test_a_new_client_must_be_fit(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidClient, match=message):
        ClientRegistry().register(_new(**fields))


# --- the clients file, written and watched --------------------------------------------------------------


def test_the_development_clients_survive_a_rewrite() -> None:
    path = REPO / "deploy" / "dev-clients.toml"
    text = path.read_text(encoding="utf-8")
    registry = load_clients(path)
    rendered = render_clients(registry, clients_file_header(text))
    assert parse_clients(tomllib.loads(rendered)).clients == registry.clients
    assert rendered.startswith(text.split("[[client]]")[0].rstrip("\n"))


def test_a_rotated_client_survives_a_rewrite() -> None:
    client = _new().with_secret(hash_secret("t", n=2**4), grace_until=datetime(2030, 1, 1, 12, tzinfo=UTC))
    registry = ClientRegistry({client.client_id: replace(client, disabled=True, rate_tier="partner")})
    assert parse_clients(tomllib.loads(render_clients(registry))).clients == registry.clients


@given(st.text())
def test_any_string_survives_toml_quoting(value: str) -> None:
    assert tomllib.loads(f"v = {toml_string(value)}")["v"] == value


def test_the_header_is_the_leading_comment_block() -> None:
    assert clients_file_header("# a\n#\n# b\n\n[[client]]\n# not me\n") == "# a\n#\n# b"
    assert clients_file_header("[[client]]\n") == ""


def test_writing_refuses_a_file_changed_meanwhile_and_a_registry_it_could_not_read(tmp_path: Path) -> None:
    path = tmp_path / "clients.toml"
    write_clients_file(path, ClientRegistry().register(_new("a")), expected=None)
    read = path.read_bytes()
    with pytest.raises(InvalidClientsFile, match="changed while"):
        write_clients_file(path, ClientRegistry().register(_new("b")), expected=read + b"\n")
    with pytest.raises(InvalidClientsFile, match="changed while"):
        write_clients_file(path, ClientRegistry().register(_new("b")), expected=None)
    unreadable = ClientRegistry({"x": _new("x", nation="XYZ")})
    with pytest.raises(InvalidClientsFile, match="unknown nation"):
        write_clients_file(path, unreadable, expected=read)
    assert path.read_bytes() == read
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clients.toml"]


def test_a_clients_file_is_reread_when_it_changes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "clients.toml"
    write_clients_file(path, ClientRegistry().register(_new("a")), expected=None)
    clients = ClientsFile(path, check_interval=3600)
    assert list(clients.registry().clients) == ["a"]

    write_clients_file(path, clients.registry().register(_new("b")), expected=path.read_bytes())
    assert list(clients.registry().clients) == ["a"]  # not looked at again within the interval
    assert list(clients.registry(now=True).clients) == ["a", "b"]

    # A broken hand edit: the last good registry stays in force.
    path.write_text("[[client]]\nclient_id = 'broken'\n", encoding="utf-8")
    assert list(clients.registry(now=True).clients) == ["a", "b"]
    assert "keeping the previous clients" in caplog.text
    # An edit in place (same inode) is seen too.
    with path.open("w", encoding="utf-8") as f:
        f.write(render_clients(ClientRegistry().register(_new("c"))))
    assert list(clients.registry(now=True).clients) == ["c"]


def test_a_file_watch_sees_replacements_and_edits(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("one")
    watch = FileWatch(path, interval=0)
    assert watch.changed()  # never marked: the first look counts as a change
    watch.mark()
    assert not watch.changed()
    replacement = tmp_path / "g"
    replacement.write_text("one")
    os.replace(replacement, path)
    assert watch.changed()
    watch.mark()
    path.write_text("two!")
    assert watch.changed()
    watch.mark()
    path.unlink()
    assert not watch.changed()  # a missing file is no change to act on


def test_a_file_watch_looks_at_most_once_per_interval(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("one")
    watch = FileWatch(path, interval=3600)
    watch.mark()
    path.write_text("changed")
    assert not watch.changed()
    assert watch.changed(now=True)


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
        "ICEP_GATEWAY_ISSUE_TOKENS",
        "ICEP_GATEWAY_RELOAD_INTERVAL_SECONDS",
        "ICEP_AUTH_JWKS_MAX_AGE_SECONDS",
        "ICEP_AUTH_NATION_CLAIM",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = GatewaySettings()
    assert settings.service_name == "gateway"
    assert settings.port == 8000
    assert settings.signing_keys_file == "var/gateway/signing-keys.json"
    assert settings.upstreams["plans"] == "http://127.0.0.1:8001"
    assert settings.upstreams["notifications"] == "http://127.0.0.1:8004"
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.issue_tokens is True
    assert settings.reload_interval_seconds == 1.0
    assert settings.auth_jwks_max_age_seconds == 300
    assert settings.auth_nation_claim == "nation"


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


def test_identity_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICEP_GATEWAY_ISSUE_TOKENS", "false")
    monkeypatch.setenv("ICEP_GATEWAY_RELOAD_INTERVAL_SECONDS", "0.25")
    monkeypatch.setenv("ICEP_AUTH_ISSUER", "https://sso.example.int/realms/icep")
    monkeypatch.setenv("ICEP_AUTH_JWKS_MAX_AGE_SECONDS", "30")
    monkeypatch.setenv("ICEP_AUTH_NATION_CLAIM", "attributes.nation")
    settings = GatewaySettings()
    assert settings.issue_tokens is False
    assert settings.reload_interval_seconds == 0.25
    assert settings.auth_issuer == "https://sso.example.int/realms/icep"
    plans = ServiceSettings()  # every service reads the same platform-wide ICEP_AUTH_* settings
    assert (plans.auth_jwks_max_age_seconds, plans.auth_nation_claim) == (30, "attributes.nation")
    verifier = auth.TokenVerifier.from_settings(plans)
    assert (verifier.max_key_age, verifier.nation_claim) == (30, "attributes.nation")
    monkeypatch.setenv("ICEP_AUTH_JWKS_MAX_AGE_SECONDS", "0")
    with pytest.raises(ValueError):
        ServiceSettings()
