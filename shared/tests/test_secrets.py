"""Secrets at rest: the box (seal, open, legacy plaintext, key rotation), the keys from settings or the
development key file, and stored idempotent answers sealed in a real database and resealed after a
rotation."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import InvalidToken

from icep.platform import secrets
from icep.platform.db import Database
from icep.platform.idempotency import Execute, IdempotencyStore, Replay, StoredAnswer
from icep.platform.tables import PlatformTables

SECRET = "whsec_" + "A" * 44


def test_a_sealed_value_opens_and_shows_nothing_of_the_plaintext() -> None:
    box = secrets.SecretBox([secrets.new_key()])
    sealed = box.seal(SECRET)
    assert sealed.startswith(secrets.PREFIX) and "whsec_" not in sealed and len(sealed) < 400
    assert box.open(sealed) == SECRET and box.is_current(sealed)
    assert box.seal(SECRET) != sealed  # a fresh IV each time: equal secrets are not seen as equal
    assert box.open_bytes(box.seal_bytes(b'{"secret":"whsec_x"}')) == b'{"secret":"whsec_x"}'
    # Plaintext written before sealing reads as it is, and is not current (a reseal seals it).
    assert box.open(SECRET) == SECRET and not box.is_current(SECRET)
    assert box.open_bytes(b'{"id":"1"}') == b'{"id":"1"}' and not box.is_current_bytes(b'{"id":"1"}')
    with pytest.raises(InvalidToken):
        secrets.SecretBox([secrets.new_key()]).open(sealed)  # another key opens nothing


def test_rotation_new_key_first_then_the_old_one_removed() -> None:
    old_key, new_key = secrets.new_key(), secrets.new_key()
    under_old = secrets.SecretBox([old_key]).seal(SECRET)
    both = secrets.SecretBox([new_key, old_key])
    assert both.open(under_old) == SECRET and not both.is_current(under_old)
    moved = both.seal(both.open(under_old))
    assert both.is_current(moved)
    assert secrets.SecretBox([new_key]).open(moved) == SECRET
    with pytest.raises(InvalidToken):
        secrets.SecretBox([new_key]).open(under_old)


def test_keys_come_from_settings_or_a_development_file(tmp_path: Path) -> None:
    key_a, key_b = secrets.new_key(), secrets.new_key()
    configured = secrets.box_from_settings("plans", f" {key_a}, {key_b} ", str(tmp_path), required=True)
    assert secrets.SecretBox([key_a]).open(configured.seal("x")) == "x"
    with pytest.raises(secrets.SecretKeysMissing, match="ICEP_PLANS_SECRET_KEYS"):
        secrets.box_from_settings("plans", "", str(tmp_path), required=True)
    first = secrets.box_from_settings("plans", "", str(tmp_path), required=False)
    key_file = tmp_path / "plans" / "secret-keys"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # A restart (or another replica on the same var dir) uses the same key.
    assert secrets.box_from_settings("plans", "", str(tmp_path), required=False).open(first.seal("y")) == "y"


async def test_stored_answers_are_sealed_and_resealed_after_a_rotation(
    db: Database, tables: PlatformTables
) -> None:
    old_key, new_key = secrets.new_key(), secrets.new_key()
    old = IdempotencyStore(
        db, tables.idempotency, timedelta(hours=1), timedelta(minutes=1), secrets.SecretBox([old_key])
    )
    body = b'{"id":"s1","secret":"' + SECRET.encode() + b'"}'
    claim = await old.claim("c1", "k1", "fp")
    assert isinstance(claim, Execute)
    assert await old.complete("c1", "k1", "fp", claim.token, StoredAnswer(201, [], body), uncommitted=True)

    async def raw() -> bytes:
        async with db.connect() as conn:
            value = (await conn.execute(sa.select(tables.idempotency.c.body))).scalar_one()
        return bytes(value)

    assert raw_has_no_secret(await raw())
    assert await old.claim("c1", "k1", "fp") == Replay(StoredAnswer(201, [], body))
    rotated = IdempotencyStore(
        db,
        tables.idempotency,
        timedelta(hours=1),
        timedelta(minutes=1),
        secrets.SecretBox([new_key, old_key]),
    )
    assert await rotated.claim("c1", "k1", "fp") == Replay(StoredAnswer(201, [], body))
    assert await rotated.reseal() == 1 and await rotated.reseal() == 0
    only_new = IdempotencyStore(
        db, tables.idempotency, timedelta(hours=1), timedelta(minutes=1), secrets.SecretBox([new_key])
    )
    assert await only_new.claim("c1", "k1", "fp") == Replay(StoredAnswer(201, [], body))
    assert raw_has_no_secret(await raw())


def raw_has_no_secret(stored: bytes) -> bool:
    return stored.startswith(b"icep-sealed:v1:") and b"whsec_" not in stored
