"""`icep clients ...` and `icep keys ...`, run through the `icep` command itself against real files."""

from __future__ import annotations

import json
import re
import shutil
import stat
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from icep.gateway.clients import load_clients, verify_secret
from icep.gateway.keys import SigningKey, SigningKeys
from icep.platform.cli import app

REPO = Path(__file__).resolve().parents[3]
DEV_CLIENTS = REPO / "deploy" / "dev-clients.toml"


def icep(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def secret_of(result: Result) -> str:
    found = re.findall(r"^client_secret: (\S+)$", result.stdout, re.MULTILINE)
    assert len(found) == 1, result.output
    return str(found[0])


@pytest.fixture
def clients(tmp_path: Path) -> Path:
    """A copy of the development clients file to edit."""
    path = tmp_path / "clients.toml"
    shutil.copyfile(DEV_CLIENTS, path)
    path.chmod(0o640)
    return path


# --- clients ------------------------------------------------------------------------------------------


def test_register_shows_the_secret_once_and_stores_only_its_hash(clients: Path) -> None:
    result = icep(
        "clients", "register", "est-mod", "--nation", "est", "--role", "planner", "--role", "subscriber",
        "--scope", "read", "--tier", "partner", "--file", str(clients),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    secret = secret_of(result)
    assert len(secret) >= 43  # 32 random bytes
    assert "only time" in result.stderr

    text = clients.read_text(encoding="utf-8")
    assert secret not in text
    client = load_clients(clients).clients["est-mod"]
    assert (client.nation, client.roles, client.scopes, client.rate_tier, client.disabled) == (
        "EST", frozenset({"planner", "subscriber"}), frozenset({"read"}), "partner", False,
    )  # fmt: skip
    assert verify_secret(secret, client.secret_hash)
    assert load_clients(clients).authenticate("est-mod", secret) is not None

    # The rest of the file is as it was: every client, the header comments, the file mode.
    before = load_clients(DEV_CLIENTS).clients
    after = load_clients(clients).clients
    assert {k: v for k, v in after.items() if k != "est-mod"} == before
    assert text.startswith(DEV_CLIENTS.read_text(encoding="utf-8").split("[[client]]")[0])
    assert stat.S_IMODE(clients.stat().st_mode) == 0o640
    assert [p.name for p in clients.parent.iterdir()] == ["clients.toml"]  # no temporary file left

    listed = icep("clients", "list", "--file", str(clients))
    assert listed.exit_code == 0
    assert "est-mod" in listed.stdout and "partner" in listed.stdout
    assert secret not in listed.stdout and "scrypt" not in listed.stdout


def test_register_defaults_to_read_and_write_scopes(clients: Path) -> None:
    result = icep(
        "clients", "register", "nor-x", "--nation", "NOR", "--role", "procurement", "-f", str(clients)
    )
    assert result.exit_code == 0, result.output
    client = load_clients(clients).clients["nor-x"]
    assert client.scopes == {"read", "write"} and client.rate_tier == "standard"


def test_register_creates_a_missing_file_with_a_generated_header(tmp_path: Path) -> None:
    path = tmp_path / "new" / "clients.toml"
    result = icep(
        "clients", "register", "nato-ops", "--nation", "NATO", "--role", "operator", "-f", str(path)
    )
    assert result.exit_code == 0, result.output
    assert path.read_text(encoding="utf-8").startswith(
        "# ICEP gateway OAuth clients, managed with `icep clients`"
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # secret hashes: nobody else's business
    assert load_clients(path).authenticate("nato-ops", secret_of(result)) is not None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deu-planner", "--nation", "DEU", "--role", "planner"], "already registered"),
        (["x1", "--nation", "XYZ", "--role", "planner"], "unknown nation 'XYZ'"),
        (["x1", "--nation", "DEU", "--role", "admin"], "unknown roles ['admin']"),
        (["x 1", "--nation", "DEU", "--role", "planner"], "client id 'x 1'"),
        (["a:b", "--nation", "DEU", "--role", "planner"], "client id 'a:b'"),
        (["x1", "--nation", "DEU", "--role", "planner", "--scope", "read write"], "'read write'"),
        (["x1", "--nation", "DEU", "--role", "planner", "--tier", ""], "rate tier"),
    ],
)
def test_register_refuses_bad_input_with_exit_code_2(clients: Path, args: list[str], message: str) -> None:
    before = clients.read_bytes()
    result = icep("clients", "register", *args, "--file", str(clients))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "client_secret" not in result.stdout
    assert clients.read_bytes() == before


def test_register_without_a_role_is_a_usage_error(clients: Path) -> None:
    result = icep("clients", "register", "x1", "--nation", "DEU", "--file", str(clients))
    assert result.exit_code == 2
    assert "--role" in result.output


def test_disable_and_enable(clients: Path) -> None:
    assert icep("clients", "disable", "fra-planner", "-f", str(clients)).exit_code == 0
    registry = load_clients(clients)
    assert registry.clients["fra-planner"].disabled
    assert registry.authenticate("fra-planner", "fra-planner-dev-secret") is None
    assert "disabled = true" in clients.read_text(encoding="utf-8")

    again = icep("clients", "disable", "fra-planner", "-f", str(clients))
    assert again.exit_code == 0 and "already disabled" in again.stdout

    assert icep("clients", "enable", "fra-planner", "-f", str(clients)).exit_code == 0
    assert load_clients(clients).authenticate("fra-planner", "fra-planner-dev-secret") is not None


@pytest.mark.parametrize("command", ["disable", "enable", "rotate-secret"])
def test_an_unknown_client_is_exit_code_2(clients: Path, command: str) -> None:
    result = icep("clients", command, "nobody", "-f", str(clients))
    assert result.exit_code == 2
    assert "no client 'nobody' is registered" in result.stderr


def test_rotate_secret_without_grace_stops_the_old_secret_at_once(clients: Path) -> None:
    result = icep("clients", "rotate-secret", "pol-planner", "-f", str(clients))
    assert result.exit_code == 0, result.output
    registry = load_clients(clients)
    assert registry.authenticate("pol-planner", secret_of(result)) is not None
    assert registry.authenticate("pol-planner", "pol-planner-dev-secret") is None
    assert "previous_secret_hash =" not in clients.read_text(encoding="utf-8")


def test_rotate_secret_with_grace_keeps_the_old_secret_until_it_ends(clients: Path) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    result = icep("clients", "rotate-secret", "pol-planner", "--grace-seconds", "3600", "-f", str(clients))
    after = datetime.now(UTC)
    assert result.exit_code == 0, result.output
    new = secret_of(result)
    registry = load_clients(clients)
    client = registry.clients["pol-planner"]
    assert client.previous_secret_expires_at is not None
    expires = client.previous_secret_expires_at
    # An hour from when the command ran, however long it took on a busy machine.
    assert before + timedelta(seconds=3600) <= expires <= after + timedelta(seconds=3600)
    assert registry.authenticate("pol-planner", new) is not None
    assert registry.authenticate("pol-planner", "pol-planner-dev-secret") is not None
    later = expires + timedelta(seconds=1)
    assert registry.authenticate("pol-planner", "pol-planner-dev-secret", at=later) is None
    assert registry.authenticate("pol-planner", new, at=later) is not None
    listed = icep("clients", "list", "-f", str(clients), env={"COLUMNS": "200"}).stdout
    assert expires.strftime("%H:%M:%S") in listed

    # Another rotation without grace ends the old secret's grace too.
    assert icep("clients", "rotate-secret", "pol-planner", "-f", str(clients)).exit_code == 0
    assert load_clients(clients).authenticate("pol-planner", "pol-planner-dev-secret") is None


def test_a_negative_grace_is_refused(clients: Path) -> None:
    result = icep("clients", "rotate-secret", "pol-planner", "--grace-seconds", "-5", "-f", str(clients))
    assert result.exit_code == 2


def test_the_file_comes_from_the_environment(clients: Path) -> None:
    result = icep("clients", "list", env={"ICEP_GATEWAY_CLIENTS_FILE": str(clients)})
    assert result.exit_code == 0, result.output
    assert "nato-procurement" in result.stdout


def test_a_broken_or_missing_file_is_exit_code_2(tmp_path: Path) -> None:
    missing = icep("clients", "list", "-f", str(tmp_path / "none.toml"))
    assert missing.exit_code == 2 and "no clients file" in missing.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[[client]]\nclient_id = 'x'\n", encoding="utf-8")
    result = icep("clients", "disable", "x", "-f", str(broken))
    assert result.exit_code == 2 and "not a valid clients file" in result.stderr
    assert broken.read_text(encoding="utf-8") == "[[client]]\nclient_id = 'x'\n"


def test_a_file_with_other_top_level_entries_is_not_rewritten(clients: Path) -> None:
    clients.write_text("owner = 'ops'\n" + clients.read_text(encoding="utf-8"), encoding="utf-8")
    result = icep("clients", "disable", "deu-planner", "-f", str(clients))
    assert result.exit_code == 2 and "other than [[client]] (owner)" in result.stderr


def test_the_written_file_is_valid_toml_with_every_field(clients: Path) -> None:
    icep("clients", "rotate-secret", "deu-planner", "--grace-seconds", "60", "-f", str(clients))
    icep("clients", "disable", "ukr-partner", "-f", str(clients))
    document = tomllib.loads(clients.read_text(encoding="utf-8"))
    entry = next(c for c in document["client"] if c["client_id"] == "deu-planner")
    assert isinstance(entry["previous_secret_expires_at"], datetime)
    assert entry["previous_secret_expires_at"].tzinfo is not None
    assert next(c for c in document["client"] if c["client_id"] == "ukr-partner")["disabled"] is True


# --- keys ---------------------------------------------------------------------------------------------


def test_keys_rotate_list_and_retire(tmp_path: Path) -> None:
    path = tmp_path / "signing-keys.json"
    first = SigningKeys.load_or_create(path).current

    rotated = icep("keys", "rotate", "--file", str(path))
    assert rotated.exit_code == 0, rotated.output
    new_kid = re.findall(r"^kid: (\S+)$", rotated.stdout, re.MULTILINE)[0]
    keys = SigningKeys.load_or_create(path)
    assert [k.kid for k in keys.keys] == [first.kid, new_kid]
    assert keys.current.kid == new_kid
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    listed = icep("keys", "list", "--file", str(path), env={"COLUMNS": "200"})
    assert listed.exit_code == 0
    rows = [line for line in listed.stdout.splitlines() if first.kid in line or new_kid in line]
    assert len(rows) == 2 and "yes" not in rows[0] and "yes" in rows[1]
    assert "private" not in listed.stdout and "BEGIN" not in listed.stdout

    result = icep("keys", "retire", "--force", "--file", str(path), "--", first.kid)
    assert result.exit_code == 0, result.output
    assert [k.kid for k in SigningKeys.load_or_create(path).keys] == [new_kid]
    assert [k["kid"] for k in json.loads(path.read_text())["keys"]] == [new_kid]


def test_retiring_before_the_old_tokens_expired_needs_force(tmp_path: Path) -> None:
    path = tmp_path / "signing-keys.json"
    old = SigningKeys.load_or_create(path).current
    SigningKeys.load_or_create(path).rotate()
    result = icep(
        "keys", "retire", "-f", str(path), "--", old.kid, env={"ICEP_GATEWAY_TOKEN_TTL_SECONDS": "600"}
    )
    assert result.exit_code == 2
    assert "--force" in result.stderr and "600 s" in result.stderr
    assert len(SigningKeys.load_or_create(path).keys) == 2

    # Once one token lifetime has passed since the next key took over, no --force is needed.
    document = json.loads(path.read_text())
    document["keys"][1]["created_at"] = int(time.time()) - 601
    path.write_text(json.dumps(document))
    result = icep(
        "keys", "retire", "-f", str(path), "--", old.kid, env={"ICEP_GATEWAY_TOKEN_TTL_SECONDS": "600"}
    )
    assert result.exit_code == 0, result.output


def test_the_current_or_an_unknown_key_cannot_be_retired(tmp_path: Path) -> None:
    path = tmp_path / "signing-keys.json"
    current = SigningKeys.load_or_create(path).current
    result = icep("keys", "retire", "--force", "-f", str(path), "--", current.kid)
    assert result.exit_code == 2 and "current signing key" in result.stderr
    result = icep("keys", "retire", "nope", "--force", "-f", str(path))
    assert result.exit_code == 2 and "no signing key 'nope'" in result.stderr
    assert [k.kid for k in SigningKeys.load_or_create(path).keys] == [current.kid]


def test_keys_rotate_creates_a_missing_file_and_list_refuses_one(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing-keys.json"
    assert icep("keys", "list", "-f", str(path)).exit_code == 2
    result = icep("keys", "rotate", "-f", str(path))
    assert result.exit_code == 0, result.output
    assert len(SigningKeys.load_or_create(path).keys) == 1


def test_the_keys_file_defaults_to_the_var_dir(tmp_path: Path) -> None:
    keys = SigningKeys.load_or_create(tmp_path / "gateway" / "signing-keys.json")
    result = icep(
        "keys",
        "list",
        env={"ICEP_VAR_DIR": str(tmp_path), "ICEP_GATEWAY_SIGNING_KEYS_FILE": None, "COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert keys.current.kid in result.stdout


def test_a_kid_that_begins_with_a_dash_is_retired_after_a_double_dash(tmp_path: Path) -> None:
    dashed = next(key for key in iter(SigningKey.generate, None) if key.kid.startswith("-"))
    path = tmp_path / "signing-keys.json"
    SigningKeys(path, [dashed, SigningKey.generate()]).rotate()
    result = icep("keys", "retire", "--force", "-f", str(path), "--", dashed.kid)
    assert result.exit_code == 0, result.output
    assert dashed.kid not in {k.kid for k in SigningKeys.load_or_create(path).keys}


def test_hash_secret_reads_standard_input() -> None:
    result = CliRunner().invoke(app, ["clients", "hash-secret"], input="operator-chosen-secret\n")
    assert result.exit_code == 0, result.output
    assert verify_secret("operator-chosen-secret", result.stdout.strip())


def test_hash_secret_can_generate() -> None:
    result = icep("clients", "hash-secret", "--generate")
    assert result.exit_code == 0, result.output
    lines = dict(line.split(":", 1) for line in result.stdout.strip().splitlines())
    assert verify_secret(lines["secret"].strip(), lines["secret_hash"].strip())


def test_an_empty_secret_is_refused() -> None:
    result = CliRunner().invoke(app, ["clients", "hash-secret"], input="\n")
    assert result.exit_code == 2
