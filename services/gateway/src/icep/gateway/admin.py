"""`icep clients ...` and `icep keys ...`: operators' commands for the gateway's clients and signing keys.

Both edit files the running gateway rereads when they change (`ICEP_GATEWAY_CLIENTS_FILE`,
`ICEP_GATEWAY_SIGNING_KEYS_FILE`, or `--file`), so nothing needs a restart. Every write is atomic (a
temporary file renamed over the old one), so a gateway never reads half a file. Secrets are generated here,
shown once, and stored only as scrypt hashes. A command refused for the operator's input exits with 2.

The heavy imports wait inside the commands: `icep serve plans` should not pay for them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from icep.gateway.clients import ClientRegistry
    from icep.gateway.keys import SigningKeys
    from icep.gateway.settings import GatewaySettings

clients_app = typer.Typer(
    help=(
        "The gateway's OAuth clients (partner systems): list, register, disable, enable, rotate-secret,"
        " hash-secret."
    ),
    no_args_is_help=True,
)
keys_app = typer.Typer(
    help="The gateway's token signing keys: list, rotate, retire.",
    no_args_is_help=True,
)
#: The command groups `icep` adds (see `icep.platform.cli`).
COMMANDS: dict[str, typer.Typer] = {"clients": clients_app, "keys": keys_app}

errors = Console(stderr=True)


def console() -> Console:
    """The terminal as it is when the command runs (its width from `COLUMNS` or the terminal now, not
    from whenever this module was imported)."""
    return Console()


#: Bytes of randomness in a generated client secret (43 characters of base64url).
SECRET_BYTES = 32

ClientsFileOption = Annotated[
    Path | None,
    typer.Option(
        "--file",
        "-f",
        help="The clients file (default: ICEP_GATEWAY_CLIENTS_FILE, else deploy/dev-clients.toml)",
        show_default=False,
    ),
]
KeysFileOption = Annotated[
    Path | None,
    typer.Option(
        "--file",
        "-f",
        help="The signing keys file (default: ICEP_GATEWAY_SIGNING_KEYS_FILE, else "
        "ICEP_VAR_DIR/gateway/signing-keys.json)",
        show_default=False,
    ),
]


def _refuse(message: str) -> NoReturn:
    errors.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _settings() -> GatewaySettings:
    from icep.gateway.settings import GatewaySettings

    try:
        return GatewaySettings()
    except ValueError as exc:
        _refuse(f"the gateway settings in the environment are invalid: {exc}")


def _clients_path(file: Path | None) -> Path:
    return file if file is not None else Path(_settings().clients_file)


def _keys_path(file: Path | None) -> Path:
    return file if file is not None else Path(_settings().signing_keys_file)


def _read_clients(path: Path, *, missing_ok: bool = False) -> tuple[ClientRegistry, bytes | None]:
    """The registry in `path` and the bytes it was read from (so a write can tell a concurrent edit)."""
    import tomllib

    from icep.gateway.clients import ClientRegistry, InvalidClientsFile, parse_clients

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return ClientRegistry(), None
        _refuse(f"there is no clients file at {path} (register a client to create one)")
    except OSError as exc:
        _refuse(f"cannot read {path}: {exc.strerror or exc}")
    try:
        document = tomllib.loads(raw.decode("utf-8"))
        if set(document) - {"client"}:
            raise InvalidClientsFile(
                f"top-level entries other than [[client]] ({', '.join(sorted(set(document) - {'client'}))}) "
                "would be lost by a rewrite; remove them first"
            )
        return parse_clients(document), raw
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, InvalidClientsFile) as exc:
        _refuse(f"{path} is not a valid clients file: {exc}")


def _write_clients(path: Path, registry: ClientRegistry, read: bytes | None) -> None:
    from icep.gateway.clients import InvalidClientsFile, write_clients_file

    now = datetime.now(UTC)
    for client in list(registry.clients.values()):  # tidy: grace periods that are over
        registry = registry.updated(client.without_expired_secret(now))
    try:
        write_clients_file(path, registry, expected=read)
    except InvalidClientsFile as exc:
        _refuse(str(exc))
    except OSError as exc:
        _refuse(f"cannot write {path}: {exc.strerror or exc}")


def _new_secret() -> tuple[str, str]:
    import secrets

    from icep.gateway.clients import hash_secret

    secret = secrets.token_urlsafe(SECRET_BYTES)
    return secret, hash_secret(secret)


def _show_secret(client_id: str, secret: str) -> None:
    # Plain output, never wrapped or marked up: this line is what a script or a person copies.
    typer.echo(f"client_secret: {secret}")
    errors.print(
        f"This is the only time the secret of {client_id!r} is shown: hand it to the partner now "
        "(the file keeps only its hash).",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if moment is not None else ""


# --- icep clients ---------------------------------------------------------------------------------------


@clients_app.command("hash-secret")
def hash_secret_command(
    generate: Annotated[
        bool, typer.Option("--generate", help="Generate a random secret and print it with its hash")
    ] = False,
) -> None:
    """Hash a client secret for a clients file edited by hand: read from the terminal (not echoed) or
    from standard input, or generated."""
    import getpass
    import sys

    from icep.gateway.clients import hash_secret

    if generate:
        secret, hashed = _new_secret()
        typer.echo(f"secret:      {secret}")
        typer.echo(f"secret_hash: {hashed}")
        return
    secret = getpass.getpass("client secret: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if not secret:
        _refuse("an empty secret cannot be hashed")
    typer.echo(hash_secret(secret))


@clients_app.command("list")
def list_clients(file: ClientsFileOption = None) -> None:
    """The registered clients (never their secrets)."""
    path = _clients_path(file)
    registry, _ = _read_clients(path)
    now = datetime.now(UTC)
    table = Table(title=f"OAuth clients in {path}")
    # Ids are never cut short or broken: they are what an operator copies into the next command.
    widest = max((len(client_id) for client_id in registry.clients), default=9)
    table.add_column("client id", no_wrap=True, min_width=widest)
    for column in ("nation", "roles", "scopes", "tier", "status", "old secret valid until"):
        table.add_column(column, overflow="fold")
    for client in registry.clients.values():
        table.add_row(
            # Names from a hand-edited file are shown as written, never read as markup.
            escape(client.client_id),
            client.nation,
            escape(", ".join(sorted(client.roles))),
            escape(" ".join(sorted(client.scopes))),
            escape(client.rate_tier),
            "[red]disabled[/]" if client.disabled else "enabled",
            _when(client.previous_secret_expires_at) if client.previous_secret_valid(now) else "",
        )
    console().print(table)


@clients_app.command("register")
def register(
    client_id: Annotated[str, typer.Argument(help="The new client's id, e.g. deu-mod-planning")],
    nation: Annotated[str, typer.Option(help="ISO 3166-1 alpha-3 code of an Ally or partner, EU or NATO")],
    role: Annotated[
        list[str],
        typer.Option(
            help="A role (repeat for more): planner, reviewer, procurement, standards, subscriber, operator"
        ),
    ],
    scope: Annotated[
        list[str] | None,
        typer.Option(help="A scope the client may ask for (repeat; default: read and write)"),
    ] = None,
    tier: Annotated[str, typer.Option(help="Rate limit tier")] = "standard",
    file: ClientsFileOption = None,
) -> None:
    """Register a client with a generated secret, shown once; the file keeps only its scrypt hash."""
    from icep.gateway.clients import Client, InvalidClient

    path = _clients_path(file)
    registry, read = _read_clients(path, missing_ok=True)
    secret, secret_hash = _new_secret()
    client = Client(
        client_id=client_id,
        secret_hash=secret_hash,
        nation=nation.upper(),
        roles=frozenset(role),
        scopes=frozenset(scope if scope else ["read", "write"]),
        rate_tier=tier,
    )
    try:
        registry = registry.register(client)
    except InvalidClient as exc:
        _refuse(str(exc))
    _write_clients(path, registry, read)
    console().print(
        f"registered {client_id} ({client.nation}; roles {', '.join(sorted(client.roles))}; "
        f"scopes {' '.join(sorted(client.scopes))}; tier {tier}) in {path}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    _show_secret(client_id, secret)


def _set_disabled(client_id: str, file: Path | None, disabled: bool) -> None:
    from dataclasses import replace

    from icep.gateway.clients import InvalidClient

    path = _clients_path(file)
    registry, read = _read_clients(path)
    try:
        client = registry.existing(client_id)
    except InvalidClient as exc:
        _refuse(str(exc))
    state = "disabled" if disabled else "enabled"
    if client.disabled == disabled:
        console().print(f"{client_id} is already {state}", markup=False, highlight=False)
        return
    _write_clients(path, registry.updated(replace(client, disabled=disabled)), read)
    console().print(f"{client_id} is {state} ({path})", markup=False, highlight=False, soft_wrap=True)


@clients_app.command("disable")
def disable(
    client_id: Annotated[str, typer.Argument(help="The client to disable")],
    file: ClientsFileOption = None,
) -> None:
    """Disable a client: no new tokens at once, and the gateway refuses its requests within a second.

    Tokens it already holds stay valid at a service called directly (not through the gateway) until they
    expire: ICEP_GATEWAY_TOKEN_TTL_SECONDS, 300 s by default.
    """
    _set_disabled(client_id, file, True)


@clients_app.command("enable")
def enable(
    client_id: Annotated[str, typer.Argument(help="The client to enable again")],
    file: ClientsFileOption = None,
) -> None:
    """Enable a disabled client again (with the secret it had)."""
    _set_disabled(client_id, file, False)


@clients_app.command("rotate-secret")
def rotate_secret(
    client_id: Annotated[str, typer.Argument(help="The client whose secret to replace")],
    grace_seconds: Annotated[
        int,
        typer.Option(
            min=0,
            help="How long the old secret keeps working, so the partner can switch without failures; "
            "0: it stops at once",
        ),
    ] = 0,
    file: ClientsFileOption = None,
) -> None:
    """Give a client a new generated secret, shown once; the old one stops working (after the grace)."""
    from icep.gateway.clients import InvalidClient

    path = _clients_path(file)
    registry, read = _read_clients(path)
    try:
        client = registry.existing(client_id)
    except InvalidClient as exc:
        _refuse(str(exc))
    secret, secret_hash = _new_secret()
    grace_until = datetime.now(UTC) + timedelta(seconds=grace_seconds) if grace_seconds else None
    _write_clients(path, registry.updated(client.with_secret(secret_hash, grace_until=grace_until)), read)
    until = f"until {_when(grace_until)}" if grace_until else "no longer"
    console().print(
        f"new secret for {client_id} ({path}); the old one works {until}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    _show_secret(client_id, secret)


# --- icep keys ------------------------------------------------------------------------------------------


def _load_keys(path: Path) -> SigningKeys:
    from icep.gateway.keys import SigningKeys

    if not path.exists():
        _refuse(f"there is no signing key file at {path} (the gateway creates one when it first starts)")
    try:
        return SigningKeys.load_or_create(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _refuse(f"{path} is not a valid signing key file: {exc}")


@keys_app.command("list")
def list_keys(file: KeysFileOption = None) -> None:
    """The signing keys, oldest first: all are published in the JWKS, the current one signs."""
    path = _keys_path(file)
    keys = _load_keys(path)
    table = Table(title=f"Token signing keys in {path}")
    for column in ("kid", "created", "current"):
        table.add_column(column, overflow="fold")
    all_keys = keys.keys
    for key in all_keys:
        current = key.kid == all_keys[-1].kid
        table.add_row(key.kid, _when(datetime.fromtimestamp(key.created_at, UTC)), "yes" if current else "")
    console().print(table)


@keys_app.command("rotate")
def rotate_keys(file: KeysFileOption = None) -> None:
    """Add a new key that signs from now on; the older ones stay published, so their tokens keep verifying."""
    from icep.gateway.keys import SigningKeys

    path = _keys_path(file)
    if path.exists():
        keys = _load_keys(path)
        key = keys.rotate()
        count = len(keys.keys)
    else:
        key = SigningKeys.load_or_create(path).current
        count = 1
    typer.echo(f"kid: {key.kid}")
    console().print(
        f"{key.kid} now signs ({count} published in {path}); gateways switch within a second",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


@keys_app.command("retire")
def retire_key(
    kid: Annotated[
        str,
        typer.Argument(help="The key to remove (see `icep keys list`); after `--` if it begins with '-'"),
    ],
    force: Annotated[
        bool,
        typer.Option("--force", help="Retire it even though tokens it signed may not have expired yet"),
    ] = False,
    file: KeysFileOption = None,
) -> None:
    """Remove an old key from the JWKS: the tokens it signed are refused from then on.

    The gateway refuses them within a second; a service once its cached key set is older than
    ICEP_AUTH_JWKS_MAX_AGE_SECONDS (300 s by default).
    """
    path = _keys_path(file)
    keys = _load_keys(path)
    all_keys = keys.keys
    kids = [k.kid for k in all_keys]
    if kid not in kids:
        _refuse(f"no signing key {kid!r} in {path} (keys: {', '.join(kids)})")
    position = kids.index(kid)
    if position == len(kids) - 1:
        _refuse(f"{kid!r} is the current signing key: rotate first (`icep keys rotate`), then retire it")
    if not force:
        # Tokens signed with this key were issued before the next key took over, and live one TTL at most.
        ttl = _settings().token_ttl_seconds
        last_valid = datetime.fromtimestamp(all_keys[position + 1].created_at, UTC) + timedelta(seconds=ttl)
        if datetime.now(UTC) < last_valid:
            _refuse(
                f"tokens signed with {kid!r} may be valid until {_when(last_valid)} (one token lifetime, "
                f"{ttl} s, after the next key took over); retire it then, or pass --force"
            )
    keys.retire(kid)
    console().print(
        f"retired {kid} ({len(kids) - 1} published in {path})", markup=False, highlight=False, soft_wrap=True
    )
