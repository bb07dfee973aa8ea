"""Secrets at rest: values sealed with a key from settings (Fernet, from `cryptography`).

What a database file, a backup or a replica must not give away is sealed before it is written: the
`whsec_` webhook signing secrets of notifications (current and previous), and the stored answers of
`Idempotency-Key` requests in every service (the answer to creating a subscription or rotating its secret
shows the secret once, and a retry gets that answer again, so it is kept; answers of other services carry
national records, so every stored answer is sealed alike: no route has to say which answers are secret).

Keys. `ICEP_<SERVICE>_SECRET_KEYS` is a comma-separated list of Fernet keys (`icep secrets new-key` makes
one), newest first: the first seals, every one opens (`MultiFernet`). Unset, the service uses (and on first
start creates, mode 0600) `<ICEP_VAR_DIR>/<service>/secret-keys`, one key a line: a development default
like the gateway's signing keys, logged as a warning; `ICEP_REQUIRE_SECRET_KEYS=true` (set it in
production) makes a service refuse to start without the setting.

Values. A sealed value reads `icep-sealed:v1:<Fernet token>`. A value without that prefix is legacy
plaintext, written before sealing existed: it still reads, and is sealed when written again. At start each
service seals its legacy values and re-seals those under an older key (`reseal`), in the background, so
rotating is: put the new key first, restart (every value moves to it), then remove the old key. See
docs/operations/secrets.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = logging.getLogger("icep.secrets")

PREFIX = "icep-sealed:v1:"
_PREFIX_BYTES = PREFIX.encode("ascii")


class SecretKeysMissing(RuntimeError):
    """No key to seal with: `ICEP_<SERVICE>_SECRET_KEYS` is unset where it is required."""


class SecretBox:
    """Seal and open values with a list of keys: the first seals, all open."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if not keys:
            raise SecretKeysMissing("at least one secret key is needed")
        self._fernets = [Fernet(k) for k in keys]
        self._current = self._fernets[0]
        self._all = MultiFernet(self._fernets)

    # --- text (signing secrets) -------------------------------------------------------------------------

    def seal(self, value: str) -> str:
        return PREFIX + self._current.encrypt(value.encode("utf-8")).decode("ascii")

    def open(self, stored: str) -> str:
        """The plaintext of a stored value; a value without the prefix is legacy plaintext."""
        if not stored.startswith(PREFIX):
            return stored
        return self._all.decrypt(stored[len(PREFIX) :].encode("ascii")).decode("utf-8")

    def is_current(self, stored: str) -> bool:
        """Sealed under the first key (nothing to do at a re-seal)."""
        return stored.startswith(PREFIX) and self._under_current(stored[len(PREFIX) :].encode("ascii"))

    # --- bytes (stored answers) -------------------------------------------------------------------------

    def seal_bytes(self, value: bytes) -> bytes:
        return _PREFIX_BYTES + self._current.encrypt(value)

    def open_bytes(self, stored: bytes) -> bytes:
        if not stored.startswith(_PREFIX_BYTES):
            return stored
        return self._all.decrypt(stored[len(_PREFIX_BYTES) :])

    def is_current_bytes(self, stored: bytes) -> bool:
        return stored.startswith(_PREFIX_BYTES) and self._under_current(stored[len(_PREFIX_BYTES) :])

    def _under_current(self, token: bytes) -> bool:
        try:
            self._current.decrypt(token)
        except InvalidToken:
            return False
        return True


def parse_keys(value: str) -> list[str]:
    """`ICEP_<SERVICE>_SECRET_KEYS`: comma- or newline-separated Fernet keys, newest first."""
    return [k.strip() for k in value.replace("\n", ",").split(",") if k.strip()]


def new_key() -> str:
    return Fernet.generate_key().decode("ascii")


def load_or_create_key_file(path: Path) -> list[str]:
    """The development key file: read it, or create it with one new key (mode 0600, atomically; if another
    process created it meanwhile, its key is used, so every replica seals alike)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(new_key() + "\n")
        try:
            os.link(temporary, path)
            log.info("created a development secret key in %s", path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    if path.stat().st_mode & 0o077:
        log.warning("secret key file %s is readable by others; it should be mode 0600", path)
    keys = parse_keys(path.read_text(encoding="ascii"))
    if not keys:
        raise SecretKeysMissing(f"{path} holds no key")
    return keys


def box_from_settings(service: str, configured: str, var_dir: str, *, required: bool) -> SecretBox:
    """The service's box: the configured keys, else (unless `required`) the development key file."""
    keys = parse_keys(configured)
    if keys:
        return SecretBox(keys)
    variable = f"ICEP_{service.upper()}_SECRET_KEYS"
    if required:
        raise SecretKeysMissing(f"{variable} is not set, and ICEP_REQUIRE_SECRET_KEYS is true")
    path = Path(var_dir) / service / "secret-keys"
    log.warning(
        "%s is not set: sealing secrets at rest with the development key in %s; "
        "set it (and ICEP_REQUIRE_SECRET_KEYS=true) in production",
        variable,
        path,
    )
    return SecretBox(load_or_create_key_file(path))


_installed: SecretBox | None = None


class Sealed(sa.types.TypeDecorator[str]):
    """A text column whose values are sealed in the database and plain in Python (with the process's box).
    Sealing adds about 120 characters and a third: size the column for the sealed form."""

    impl = sa.String
    cache_ok = True

    def process_bind_param(self, value: str | None, _dialect: sa.Dialect) -> str | None:
        return None if value is None else installed().seal(value)

    def process_result_value(self, value: str | None, _dialect: sa.Dialect) -> str | None:
        return None if value is None else installed().open(value)


def install(box: SecretBox | None) -> None:
    """Make `box` the process's box, used by `Sealed` columns (one service per process)."""
    global _installed
    _installed = box


def installed() -> SecretBox:
    if _installed is None:
        raise SecretKeysMissing("no secret box installed: the service has not started")
    return _installed
