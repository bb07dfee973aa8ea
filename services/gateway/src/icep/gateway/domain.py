"""The gateway's rules in plain Python: who the clients are, how their secrets are checked, where a path goes.

Run `python -m icep.gateway.domain hash-secret` to hash a new client secret for the clients file.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import secrets
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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


class InvalidClientsFile(ValueError):
    pass


@dataclass(frozen=True)
class Client:
    """A partner system allowed to obtain tokens (OAuth2 client credentials)."""

    client_id: str
    secret_hash: str
    nation: str
    roles: frozenset[str]
    scopes: frozenset[str] = frozenset()
    rate_tier: str = "standard"
    disabled: bool = False

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

    def authenticate(self, client_id: str, secret: str) -> Client | None:
        """The enabled client whose secret this is, or None (slow on purpose: it runs scrypt)."""
        client = self.clients.get(client_id)
        matches = verify_secret(secret, client.secret_hash if client else _DECOY_HASH)
        if client is None or not matches or client.disabled:
            return None
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


def _parse_client(entry: Mapping[str, Any], where: str) -> Client:
    unknown = set(entry) - {"client_id", "secret_hash", "nation", "roles", "scopes", "rate_tier", "disabled"}
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
    return Client(
        client_id=client_id,
        secret_hash=secret_hash,
        nation=nation,
        roles=roles,
        scopes=scopes,
        rate_tier=rate_tier,
        disabled=disabled,
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


# --- routing ------------------------------------------------------------------------------------------

#: Path prefix -> upstream service. Matched on whole path segments, longest prefix first.
ROUTES: dict[str, str] = {
    "/v1/plans": "plans",
    "/v1/capacity": "plans",
    "/v1/subscriptions": "notifications",
    "/v1/events": "notifications",
    "/v1/deliveries": "notifications",
    "/v1/procurement": "procurement",
    "/v1/initiatives": "procurement",
    "/v1/demand": "procurement",
    "/v1/demand-capacity": "procurement",
    "/v1/suppliers": "procurement",
    "/v1/standards": "standards",
    "/v1/interoperability": "standards",
    "/v1/interchangeability": "standards",
}

UPSTREAMS: frozenset[str] = frozenset(ROUTES.values())


def _segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s]


def route(path: str, routes: Mapping[str, str] = ROUTES) -> str | None:
    """The upstream that serves `path`, or None. `/v1/plans` matches `/v1/plans/7`, not `/v1/plansx`."""
    segments = _segments(path)
    best: tuple[int, str] | None = None
    for prefix, upstream in routes.items():
        wanted = _segments(prefix)
        if segments[: len(wanted)] == wanted and (best is None or len(wanted) > best[0]):
            best = (len(wanted), upstream)
    return best[1] if best else None


# --- headers ------------------------------------------------------------------------------------------

#: Hop-by-hop headers (RFC 9110 section 7.6.1): meaningful for one connection only, never forwarded.
HOP_BY_HOP: frozenset[str] = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",  # not standard, but sent by old clients and equally connection-specific
    }
)


def hop_by_hop(headers: Iterable[tuple[str, str]]) -> frozenset[str]:
    """The lower-case names not to forward: the fixed list plus those the Connection header names."""
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
        if token.strip()
    }
    return HOP_BY_HOP | named


def end_to_end(headers: Iterable[tuple[str, str]], *, drop: Iterable[str] = ()) -> list[tuple[str, str]]:
    """The headers a proxy forwards: all but hop-by-hop ones and the extra lower-case names in `drop`."""
    headers = list(headers)
    skip = hop_by_hop(headers) | {d.lower() for d in drop}
    return [(name, value) for name, value in headers if name.lower() not in skip]


# --- command line -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m icep.gateway.domain", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    hashing = commands.add_parser("hash-secret", help="hash a client secret for the clients file")
    hashing.add_argument(
        "--generate", action="store_true", help="generate a random secret and print it with its hash"
    )
    args = parser.parse_args(argv)
    if args.command == "hash-secret":
        if args.generate:
            secret = secrets.token_urlsafe(32)
            print(f"secret:      {secret}")
            print(f"secret_hash: {hash_secret(secret)}")
            return 0
        secret = (
            getpass.getpass("client secret: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
        )
        if not secret:
            print("an empty secret cannot be hashed", file=sys.stderr)
            return 2
        print(hash_secret(secret))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
