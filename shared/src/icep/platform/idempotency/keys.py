"""The `Idempotency-Key` header and what makes two requests "the same request": parsing the key
(bare or as a structured-field string) and the request's fingerprint.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

HEADER = "Idempotency-Key"


REPLAYED_HEADER = "Idempotent-Replayed"


#: Visible ASCII only, 1 to 255 characters (a UUID is the usual choice).
_KEY = re.compile(r"[\x21-\x7e]{1,255}", re.ASCII)


class InvalidKey(ValueError):
    """An `Idempotency-Key` header that is not one key of visible ASCII, 1 to 255 characters."""


def parse_key(values: Sequence[bytes]) -> str:
    """The key of the request's `Idempotency-Key` header(s).

    The header may carry the key bare (`abc-123`) or as a structured-field string (`"abc-123"`, as the
    IETF draft writes it); both name the same key."""
    if len(values) != 1:
        raise InvalidKey("send exactly one Idempotency-Key header")
    raw = values[0].decode("latin-1").strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        raw = raw[1:-1]
    if not _KEY.fullmatch(raw):
        raise InvalidKey("an Idempotency-Key is 1 to 255 visible ASCII characters (a UUID, for example)")
    return raw


def fingerprint(method: str, path: str, query: bytes, content_type: str, body: bytes) -> str:
    """What makes two requests "the same request": a digest of method, path, query, content type and
    body. Each part is length-prefixed, so no two different requests run together into one string."""
    digest = hashlib.sha256()
    for part in (
        method.upper().encode(),
        path.encode(),
        query,
        content_type.strip().lower().encode("latin-1"),
        hashlib.sha256(body).digest(),
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()
