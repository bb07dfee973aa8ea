"""The gateway's signing keys: an ES256 key set kept in a file, rotated with `icep keys`, published as
the JWKS."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from icep.gateway.clients import FileWatch

log = logging.getLogger("icep.gateway")

SIGNING_ALGORITHM = "ES256"

# --- signing keys -------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class SigningKey:
    """One EC P-256 key; its `kid` is the RFC 7638 thumbprint of the public key."""

    kid: str
    created_at: int
    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        private_key = ec.generate_private_key(ec.SECP256R1())
        return cls(
            kid=_thumbprint(private_key.public_key()), created_at=int(time.time()), private_key=private_key
        )

    def public_jwk(self) -> dict[str, str]:
        return {
            **_public_members(self.private_key.public_key()),
            "kid": self.kid,
            "use": "sig",
            "alg": "ES256",
        }

    def to_json(self) -> dict[str, Any]:
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return {"kid": self.kid, "created_at": self.created_at, "private_key_pem": pem.decode("ascii")}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SigningKey:
        private_key = serialization.load_pem_private_key(
            data["private_key_pem"].encode("ascii"), password=None
        )
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or private_key.curve.name != "secp256r1":
            raise ValueError("signing keys must be EC P-256 keys")
        kid = _thumbprint(private_key.public_key())
        if data.get("kid", kid) != kid:
            raise ValueError(f"key {data.get('kid')!r} does not match its thumbprint")
        return cls(kid=kid, created_at=int(data.get("created_at", 0)), private_key=private_key)


def _public_members(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = public_key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64url(numbers.x.to_bytes(32, "big")),
        "y": _b64url(numbers.y.to_bytes(32, "big")),
    }


def _thumbprint(public_key: ec.EllipticCurvePublicKey) -> str:
    # RFC 7638: the required members, sorted, no whitespace, hashed with SHA-256.
    canonical = json.dumps(_public_members(public_key), sort_keys=True, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


class SigningKeys:
    """The gateway's signing keys, kept in a file (mode 0600) so that a restart keeps issued tokens valid.

    The newest key signs; every key in the file is published in the JWKS. So `rotate()` never invalidates a
    token: the old key stays published (and verifies the tokens it signed) until `retire()` removes it.
    Several replicas share the file (a mounted secret on Kubernetes) and so sign with the same key. With a
    `check_interval`, the keys are reread when the file changes (looked at once per interval at most, on
    use), so a rotation by `icep keys rotate` or another replica takes effect without a restart.
    """

    def __init__(self, path: Path, keys: list[SigningKey], *, check_interval: float | None = None) -> None:
        if not keys:
            raise ValueError("at least one signing key is needed")
        self.path = path
        self._keys = list(keys)
        # Not marked yet: the first look rereads the file once, so no change made meanwhile is missed.
        self._watch = FileWatch(path, check_interval) if check_interval is not None else None

    @classmethod
    def load_or_create(cls, path: str | Path, *, check_interval: float | None = None) -> SigningKeys:
        path = Path(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            created = cls(path, [SigningKey.generate()], check_interval=check_interval)
            if created._save(replace=False):
                log.info("created signing key %s in %s", created.current.kid, path)
                return created
            # Another process created the file first: use its key, so both sign alike.
        return cls(path, cls._read(path), check_interval=check_interval)

    @staticmethod
    def _read(path: Path) -> list[SigningKey]:
        with path.open("rb") as f:
            document = json.load(f)
        if path.stat().st_mode & 0o077:
            log.warning("signing key file %s is readable by others; it should be mode 0600", path)
        return [SigningKey.from_json(entry) for entry in document["keys"]]

    def refresh(self, *, now: bool = False) -> None:
        """Reread the file if it changed (at most once per `check_interval` unless `now`).

        A file that cannot be read leaves the keys in use as they are, with an error logged.
        """
        if self._watch is None or not self._watch.changed(now=now):
            return
        self._watch.mark()
        try:
            keys = self._read(self.path)
            if not keys:
                raise ValueError("the file holds no keys")
        except Exception as exc:
            log.error("keeping the signing keys in use: cannot read %s: %s", self.path, exc)
            return
        if [k.kid for k in keys] != [k.kid for k in self._keys]:
            log.info("reloaded signing keys: %s signs, %d published", keys[-1].kid, len(keys))
        self._keys = keys

    @property
    def current(self) -> SigningKey:
        """The key that signs new tokens: the newest."""
        self.refresh()
        return self._keys[-1]

    @property
    def keys(self) -> list[SigningKey]:
        self.refresh()
        return list(self._keys)

    def jwks(self) -> dict[str, Any]:
        self.refresh()
        return {"keys": [key.public_jwk() for key in reversed(self._keys)]}

    def rotate(self) -> SigningKey:
        """Add a new key that signs from now on; older keys stay published so their tokens keep verifying."""
        self._reread()
        key = SigningKey.generate()
        self._keys.append(key)
        self._save(replace=True)
        log.info("rotated signing keys: %s now signs, %d published", key.kid, len(self._keys))
        return key

    def retire(self, kid: str) -> SigningKey:
        """Remove an older key from the file and so from the JWKS: the tokens it signed stop verifying
        (at the gateway at once, at a service once its cached key set ages). The current key cannot go."""
        self._reread()
        key = next((k for k in self._keys if k.kid == kid), None)
        if key is None:
            raise LookupError(f"no signing key {kid!r} in {self.path}")
        if key.kid == self._keys[-1].kid:
            raise ValueError(f"{kid!r} is the current signing key; rotate first, then retire it")
        self._keys.remove(key)
        self._save(replace=True)
        log.info("retired signing key %s, %d published", kid, len(self._keys))
        return key

    def _reread(self) -> None:
        # Before a change: start from the file as it is now, not from what this process read earlier.
        if self.path.exists():
            self._keys = self._read(self.path)

    def _save(self, *, replace: bool) -> bool:
        """Write the file atomically, mode 0600. Without `replace`, False if the file appeared meanwhile."""
        document = {"keys": [key.to_json() for key in self._keys]}
        temporary = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(document, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            if replace:
                os.replace(temporary, self.path)
            else:
                try:
                    os.link(temporary, self.path)  # atomic, and fails if the file exists
                except FileExistsError:
                    return False
            if self._watch is not None:
                self._watch.mark()  # this process's own write needs no rereading
            return True
        finally:
            temporary.unlink(missing_ok=True)
