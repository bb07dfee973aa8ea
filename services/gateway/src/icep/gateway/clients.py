"""The gateway's clients: their registry, how their secrets are hashed and checked, and the clients file
(written atomically, watched for changes). Operators manage it with `icep clients ...`
(`icep.gateway.admin`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from icep.contracts.nations import ALLIES, NATO, PARTNERS

# --- client secrets -------------------------------------------------------------------------------------

#: scrypt cost. Client secrets are long random strings generated for machines, not passwords people pick,
#: so a moderate cost (16 MiB, ~60 ms) is enough to make a leaked clients file useless to brute force.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_SCRYPT_MAXMEM = 128 * 1024 * 1024
_HASH_BYTES = 32
_SALT_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_secret(secret: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A salted scrypt hash, encoded as `scrypt$n$r$p$salt_b64$hash_b64`."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.scrypt(
        secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=_HASH_BYTES
    )
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, encoded: str) -> bool:
    """Whether `secret` matches an encoded hash; a malformed hash matches nothing."""
    try:
        scheme, n, r, p, salt_b64, hash_b64 = encoded.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = _unb64(salt_b64), _unb64(hash_b64)
        digest = hashlib.scrypt(
            secret.encode("utf-8"),
            salt=salt,
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_SCRYPT_MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


def check_secret_hash(encoded: str) -> None:
    """Raise ValueError unless `encoded` is a well-formed scrypt hash."""
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("secret_hash must read scrypt$n$r$p$salt$hash")
    n, r, p = (int(x) for x in parts[1:4])
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or 128 * r * n > _SCRYPT_MAXMEM:
        raise ValueError("secret_hash has unusable scrypt parameters")
    if len(_unb64(parts[4])) < 8 or len(_unb64(parts[5])) < 16:
        raise ValueError("secret_hash has a salt or hash that is too short")


# --- clients ------------------------------------------------------------------------------------------

KNOWN_NATIONS: frozenset[str] = ALLIES | PARTNERS | {NATO}
KNOWN_ROLES: frozenset[str] = frozenset(
    {"planner", "reviewer", "procurement", "standards", "subscriber", "operator"}
)


log = logging.getLogger("icep.gateway")

#: What a newly registered client id may look like: it travels in tokens, logs and Basic credentials.
CLIENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
#: Scopes and rate tiers are single words.
_WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$")


class InvalidClientsFile(ValueError):
    pass


class InvalidClient(ValueError):
    """A client that cannot be registered or changed as asked (the message says why)."""


@dataclass(frozen=True)
class Client:
    """A partner system allowed to obtain tokens (OAuth2 client credentials).

    After a secret rotation with a grace period, the previous secret also authenticates until
    `previous_secret_expires_at`, so the partner can switch without a moment of refused requests.
    """

    client_id: str
    secret_hash: str
    nation: str
    roles: frozenset[str]
    scopes: frozenset[str] = frozenset()
    rate_tier: str = "standard"
    disabled: bool = False
    previous_secret_hash: str | None = None
    previous_secret_expires_at: datetime | None = None

    def previous_secret_valid(self, at: datetime) -> bool:
        expires = self.previous_secret_expires_at
        return self.previous_secret_hash is not None and expires is not None and at < expires

    def with_secret(self, secret_hash: str, *, grace_until: datetime | None = None) -> Client:
        """This client with a new secret; the current one keeps working until `grace_until` (if given)."""
        return replace(
            self,
            secret_hash=secret_hash,
            previous_secret_hash=self.secret_hash if grace_until is not None else None,
            previous_secret_expires_at=grace_until,
        )

    def without_expired_secret(self, at: datetime) -> Client:
        if self.previous_secret_hash is None or self.previous_secret_valid(at):
            return self
        return replace(self, previous_secret_hash=None, previous_secret_expires_at=None)

    def grantable_scopes(self, requested: str | None) -> frozenset[str] | None:
        """The scopes a token may carry: all the client's, or the requested subset; None if not a subset."""
        if requested is None or not requested.strip():
            return self.scopes
        wanted = frozenset(requested.split())
        return wanted if wanted <= self.scopes else None


# A well-formed hash of a random secret, checked when the client id is unknown so that the answer takes as
# long as for a known client: response time must not reveal which client ids exist.
_DECOY_HASH = hash_secret(secrets.token_urlsafe(16))


@dataclass
class ClientRegistry:
    clients: dict[str, Client] = field(default_factory=dict)

    def get(self, client_id: str) -> Client | None:
        return self.clients.get(client_id)

    def authenticate(self, client_id: str, secret: str, *, at: datetime | None = None) -> Client | None:
        """The enabled client whose secret this is, or None (slow on purpose: it runs scrypt).

        The previous secret of a client in its grace period (see `Client.with_secret`) also matches.
        """
        client = self.clients.get(client_id)
        matches = verify_secret(secret, client.secret_hash if client else _DECOY_HASH)
        if (
            client is not None
            and not matches
            and client.previous_secret_hash is not None
            and client.previous_secret_valid(at or datetime.now(UTC))
        ):
            matches = verify_secret(secret, client.previous_secret_hash)
        if client is None or not matches or client.disabled:
            return None
        return client

    def register(self, client: Client) -> ClientRegistry:
        """A registry with `client` added; `InvalidClient` if the id is taken or the client is unfit."""
        if client.client_id in self.clients:
            raise InvalidClient(f"a client {client.client_id!r} is already registered")
        check_new_client(client)
        return ClientRegistry({**self.clients, client.client_id: client})

    def updated(self, client: Client) -> ClientRegistry:
        """A registry with the registered client of the same id replaced by `client` (order kept)."""
        if client.client_id not in self.clients:
            raise InvalidClient(f"no client {client.client_id!r} is registered")
        return ClientRegistry({**self.clients, client.client_id: client})

    def existing(self, client_id: str) -> Client:
        """The registered client `client_id`; `InvalidClient` when there is none."""
        client = self.clients.get(client_id)
        if client is None:
            known = ", ".join(sorted(self.clients)) or "none"
            raise InvalidClient(f"no client {client_id!r} is registered (registered: {known})")
        return client

    def __len__(self) -> int:
        return len(self.clients)


def parse_clients(document: Mapping[str, Any]) -> ClientRegistry:
    """Clients from a parsed TOML document: an array of `[[client]]` tables."""
    entries = document.get("client", [])
    if not isinstance(entries, list):
        raise InvalidClientsFile("expected an array of [[client]] tables")
    registry = ClientRegistry()
    for index, entry in enumerate(entries):
        where = f"client #{index + 1}"
        if not isinstance(entry, dict):
            raise InvalidClientsFile(f"{where}: not a table")
        client = _parse_client(entry, where)
        if client.client_id in registry.clients:
            raise InvalidClientsFile(f"{where}: duplicate client_id {client.client_id!r}")
        registry.clients[client.client_id] = client
    return registry


_CLIENT_FIELDS = (
    "client_id",
    "secret_hash",
    "nation",
    "roles",
    "scopes",
    "rate_tier",
    "disabled",
    "previous_secret_hash",
    "previous_secret_expires_at",
)


def check_new_client(client: Client) -> None:
    """The stricter rules for a client registered by command (files written by hand keep the looser ones)."""
    if not CLIENT_ID_PATTERN.match(client.client_id):
        raise InvalidClient(
            f"client id {client.client_id!r} must start with a letter or digit and contain only letters, "
            "digits, '.', '_' and '-' (at most 100)"
        )
    if client.nation not in KNOWN_NATIONS:
        raise InvalidClient(
            f"unknown nation {client.nation!r}: use an ISO 3166-1 alpha-3 code of an Ally or partner, "
            "EU or NATO"
        )
    if not client.roles:
        raise InvalidClient(f"give at least one role: {', '.join(sorted(KNOWN_ROLES))}")
    if client.roles - KNOWN_ROLES:
        raise InvalidClient(
            f"unknown roles {sorted(client.roles - KNOWN_ROLES)}; known: {', '.join(sorted(KNOWN_ROLES))}"
        )
    for word in (*client.scopes, client.rate_tier):
        if not _WORD.match(word):
            raise InvalidClient(f"{word!r} is not a usable scope or rate tier (one word, no spaces)")


def _parse_client(entry: Mapping[str, Any], where: str) -> Client:
    unknown = set(entry) - set(_CLIENT_FIELDS)
    if unknown:
        raise InvalidClientsFile(f"{where}: unknown fields {sorted(unknown)}")
    client_id = entry.get("client_id")
    if not isinstance(client_id, str) or not client_id or ":" in client_id:
        raise InvalidClientsFile(f"{where}: client_id must be a non-empty string without ':'")
    where = f"client {client_id!r}"
    secret_hash = entry.get("secret_hash")
    if not isinstance(secret_hash, str):
        raise InvalidClientsFile(f"{where}: secret_hash is required")
    try:
        check_secret_hash(secret_hash)
    except ValueError as exc:
        raise InvalidClientsFile(f"{where}: {exc}") from None
    nation = entry.get("nation")
    if nation not in KNOWN_NATIONS:
        raise InvalidClientsFile(f"{where}: unknown nation {nation!r}")
    roles = _strings(entry.get("roles", []), where, "roles")
    if roles - KNOWN_ROLES:
        raise InvalidClientsFile(f"{where}: unknown roles {sorted(roles - KNOWN_ROLES)}")
    scopes = _strings(entry.get("scopes", []), where, "scopes")
    if any(not s or " " in s for s in scopes):
        raise InvalidClientsFile(f"{where}: scopes must be single words")
    rate_tier = entry.get("rate_tier", "standard")
    disabled = entry.get("disabled", False)
    if not isinstance(rate_tier, str) or not isinstance(disabled, bool):
        raise InvalidClientsFile(f"{where}: rate_tier must be a string and disabled a boolean")
    previous_hash = entry.get("previous_secret_hash")
    previous_expires = entry.get("previous_secret_expires_at")
    if (previous_hash is None) != (previous_expires is None):
        raise InvalidClientsFile(f"{where}: previous_secret_hash and previous_secret_expires_at go together")
    if previous_hash is not None:
        if not isinstance(previous_hash, str):
            raise InvalidClientsFile(f"{where}: previous_secret_hash must be a string")
        try:
            check_secret_hash(previous_hash)
        except ValueError as exc:
            raise InvalidClientsFile(f"{where}: previous {exc}") from None
        if not isinstance(previous_expires, datetime) or previous_expires.tzinfo is None:
            raise InvalidClientsFile(
                f"{where}: previous_secret_expires_at must be a date-time with an offset "
                "(2025-01-31T12:00:00Z)"
            )
    return Client(
        client_id=client_id,
        secret_hash=secret_hash,
        nation=nation,
        roles=roles,
        scopes=scopes,
        rate_tier=rate_tier,
        disabled=disabled,
        previous_secret_hash=previous_hash,
        previous_secret_expires_at=previous_expires,
    )


def _strings(value: Any, where: str, name: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidClientsFile(f"{where}: {name} must be a list of strings")
    return frozenset(value)


def load_clients(path: str | Path) -> ClientRegistry:
    """Clients from a TOML file (see `deploy/dev-clients.toml` for the shape)."""
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidClientsFile(f"{path}: {exc}") from None
    try:
        return parse_clients(document)
    except InvalidClientsFile as exc:
        raise InvalidClientsFile(f"{path}: {exc}") from None


# --- the clients file, written and watched ------------------------------------------------------------

#: The header of a clients file that `icep clients` creates (an existing file keeps its own header).
CLIENTS_FILE_HEADER = """\
# ICEP gateway OAuth clients, managed with `icep clients` (list, register, disable, enable, rotate-secret).
# Secrets are kept only as scrypt hashes: a secret is shown once, when it is made. The gateway rereads this
# file when it changes, so edits take effect without a restart.
#
# Each [[client]] has: client_id, secret_hash (scrypt$n$r$p$salt$hash), nation (ISO 3166-1 alpha-3, EU or
# NATO), roles (planner, reviewer, procurement, standards, subscriber, operator), scopes (a token may ask
# for a subset), rate_tier and disabled (both optional), and after a secret rotation with a grace period
# previous_secret_hash and previous_secret_expires_at."""


def clients_file_header(text: str) -> str:
    """The leading comment block of a clients file: what a rewrite keeps of the file's own words."""
    header: list[str] = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            break
        header.append(line.rstrip())
    return "\n".join(header).strip("\n")


def render_clients(registry: ClientRegistry, header: str = CLIENTS_FILE_HEADER) -> str:
    """The clients file for `registry`: `header`, then one `[[client]]` table per client, in order."""
    parts = [header.strip("\n") + "\n"] if header.strip() else []
    for client in registry.clients.values():
        lines = [
            "[[client]]",
            f"client_id = {toml_string(client.client_id)}",
            f"secret_hash = {toml_string(client.secret_hash)}",
            f"nation = {toml_string(client.nation)}",
            f"roles = {_toml_strings(client.roles)}",
            f"scopes = {_toml_strings(client.scopes)}",
            f"rate_tier = {toml_string(client.rate_tier)}",
        ]
        if client.disabled:
            lines.append("disabled = true")
        if client.previous_secret_hash is not None and client.previous_secret_expires_at is not None:
            expires = client.previous_secret_expires_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
            lines.append(f"previous_secret_hash = {toml_string(client.previous_secret_hash)}")
            lines.append(f"previous_secret_expires_at = {expires}")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, the rest kept as is."""
    out = ['"']
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\t" or (ord(char) >= 0x20 and ord(char) != 0x7F):
            out.append(char)
        else:
            out.append(f"\\u{ord(char):04X}")
    out.append('"')
    return "".join(out)


def _toml_strings(values: Iterable[str]) -> str:
    return "[" + ", ".join(toml_string(v) for v in sorted(values)) + "]"


def write_clients_file(path: str | Path, registry: ClientRegistry, *, expected: bytes | None) -> None:
    """Replace the clients file atomically (temporary file, fsync, rename), keeping its header and mode.

    `expected` is the content the caller read and edited (None: there was no file): if the file changed
    since, nothing is written (`InvalidClientsFile`), so of two edits at once neither is silently lost.
    """
    path = Path(path)
    try:
        current = path.read_bytes()
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        current, mode = None, 0o600
    if current != expected:
        raise InvalidClientsFile(f"{path} changed while it was being edited; run the command again")
    header = clients_file_header(current.decode("utf-8")) if current is not None else CLIENTS_FILE_HEADER
    text = render_clients(registry, header)
    parse_clients(tomllib.loads(text))  # never write what the gateway would refuse to read
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, mode)  # the umask may have narrowed it at creation
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


class FileWatch:
    """Tells whether a file changed since it was last read, looking (one `stat`) at most every `interval` s.

    A change is any difference in inode, size or modification time: an atomic replace (new inode), an edit
    in place, or a Kubernetes Secret volume swapping its symlink all count.
    """

    def __init__(self, path: str | Path, interval: float = 1.0) -> None:
        self.path = Path(path)
        self.interval = interval
        self._seen: tuple[int, int, int] | None = None
        self._looked_at = float("-inf")

    def _state(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def mark(self) -> None:
        """Remember the file as it is now (call right before reading it, or after writing it)."""
        self._seen = self._state()
        self._looked_at = time.monotonic()

    def changed(self, *, now: bool = False) -> bool:
        """Whether the file differs from when it was marked; unless `now`, only looks once per interval."""
        moment = time.monotonic()
        if not now and moment - self._looked_at < self.interval:
            return False
        self._looked_at = moment
        state = self._state()
        return state is not None and state != self._seen


class ClientsFile:
    """The client registry of a file, reread when the file changes: no restart to add or disable a client.

    A file that fails to load (a bad hand edit) leaves the last good registry in force, with an error
    logged, rather than refusing everyone or taking the gateway down.
    """

    def __init__(self, path: str | Path, *, check_interval: float = 1.0) -> None:
        self.watch = FileWatch(path, check_interval)
        self.watch.mark()
        self._registry = load_clients(path)

    @property
    def path(self) -> Path:
        return self.watch.path

    def registry(self, *, now: bool = False) -> ClientRegistry:
        """The current registry; `now` checks the file at once instead of at most once per interval."""
        if self.watch.changed(now=now):
            self.watch.mark()
            try:
                self._registry = load_clients(self.path)
            except (InvalidClientsFile, OSError, UnicodeDecodeError) as exc:
                log.error("keeping the previous clients: %s", exc)
            else:
                log.info("reloaded %d clients from %s", len(self._registry), self.path)
        return self._registry
