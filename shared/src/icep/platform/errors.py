"""Plain-Python errors raised by domain rules and use cases.

Domain code raises these without knowing about HTTP; the HTTP layer (`problems.py`) turns each into an
RFC 9457 problem with the matching status. Keeping them free of FastAPI lets `domain.py` stay plain.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base for errors that are the caller's doing (4xx), never a bug."""

    status = 400
    title = "Bad request"
    slug = "bad-request"
    #: Response headers the problem carries (e.g. `WWW-Authenticate` of a scope refusal).
    headers: dict[str, str] | None = None

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class Unauthorized(DomainError):
    status = 401
    title = "Unauthorized"
    slug = "unauthorized"


class Forbidden(DomainError):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFound(DomainError):
    """Also used when the caller may not see a record: absence and secrecy look the same."""

    status = 404
    title = "Not found"
    slug = "not-found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"
    slug = "conflict"


class IllegalTransition(Conflict):
    """A state-machine action that the current state does not allow."""

    title = "Illegal state transition"
    slug = "illegal-transition"

    def __init__(self, entity: str, action: str, current_state: str) -> None:
        super().__init__(
            f"cannot {action} {'an' if entity[:1] in 'aeiou' else 'a'} {entity} that is {current_state}",
            current_state=current_state,
            action=action,
        )


class PreconditionFailed(DomainError):
    status = 412
    title = "Precondition failed"
    slug = "precondition-failed"


class PreconditionRequired(DomainError):
    status = 428
    title = "Precondition required"
    slug = "precondition-required"


class Unprocessable(DomainError):
    status = 422
    title = "Unprocessable content"
    slug = "unprocessable"
