"""What the client raises: every answer that is not a success becomes a `ProblemError` carrying the RFC
9457 problem the API sent (`type`, `title`, `status`, `detail`, `instance` and the extensions), with a
subclass for the statuses a partner handles in code."""

from __future__ import annotations

import json
from typing import Any

import httpx

__all__ = [
    "Conflict",
    "Forbidden",
    "IcepError",
    "NotFound",
    "PreconditionFailed",
    "PreconditionRequired",
    "ProblemError",
    "RateLimited",
    "TokenError",
    "Unauthorized",
    "Unprocessable",
]

_STANDARD = ("type", "title", "status", "detail", "instance")


class IcepError(Exception):
    """Base of everything this client raises on purpose."""


class ProblemError(IcepError):
    """The API answered with an error: the fields of its RFC 9457 problem document."""

    def __init__(
        self,
        status: int,
        *,
        type: str = "about:blank",
        title: str = "",
        detail: str = "",
        instance: str | None = None,
        extensions: dict[str, Any] | None = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.instance = instance
        #: Members beyond the standard five, e.g. `errors` (the offending fields of a 422),
        #: `current_state` (an illegal transition), `required_roles` (403), `purged_through` (410).
        self.extensions: dict[str, Any] = dict(extensions or {})
        self.headers = headers if headers is not None else httpx.Headers()
        super().__init__(f"{status} {title}: {detail}" if detail else f"{status} {title}")

    def __getitem__(self, name: str) -> Any:
        """A problem member by name, standard or extension: `error["current_state"]`."""
        if name in _STANDARD:
            return getattr(self, name)
        return self.extensions[name]

    @property
    def problem(self) -> dict[str, Any]:
        """The problem document as the API sent it."""
        standard = {"type": self.type, "title": self.title, "status": self.status, "detail": self.detail}
        if self.instance is not None:
            standard["instance"] = self.instance
        return {**standard, **self.extensions}

    @classmethod
    def from_response(cls, response: httpx.Response) -> ProblemError:
        """The error for a failed answer, as the subclass its status calls for."""
        body: dict[str, Any] = {}
        try:
            parsed = json.loads(response.content) if response.content else {}
        except ValueError:
            parsed = {}
        if isinstance(parsed, dict):
            body = parsed
        stated = body.get("status")
        status = stated if isinstance(stated, int) else response.status_code
        kind = _BY_STATUS.get(response.status_code, ProblemError)
        return kind(
            status,
            type=str(body.get("type", "about:blank")),
            title=str(body.get("title") or response.reason_phrase),
            detail=str(body.get("detail") or body.get("error_description") or response.text[:500]),
            instance=body.get("instance") if isinstance(body.get("instance"), str) else None,
            extensions={k: v for k, v in body.items() if k not in _STANDARD},
            headers=response.headers,
        )


class Unauthorized(ProblemError):
    """401: the token was refused (also after one fresh token)."""


class Forbidden(ProblemError):
    """403: the client lacks a role (`required_roles`) or may not see the record."""


class NotFound(ProblemError):
    """404: no such resource, or one the caller may not see."""


class Conflict(ProblemError):
    """409: e.g. an illegal state transition (`current_state`, `action`)."""


class PreconditionFailed(ProblemError):
    """412: the `If-Match` version is no longer current: read the resource again and decide again."""


class Unprocessable(ProblemError):
    """422: the request does not match the schema (`errors`), or an Idempotency-Key was reused."""


class PreconditionRequired(ProblemError):
    """428: a change needs `If-Match`."""


class RateLimited(ProblemError):
    """429 after the retries: `Retry-After` says when to try again."""


_BY_STATUS: dict[int, type[ProblemError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    422: Unprocessable,
    428: PreconditionRequired,
    429: RateLimited,
}


class TokenError(IcepError):
    """The token endpoint refused the client credentials (an OAuth 2.0 error, RFC 6749 section 5.2)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        self.status = status
        self.error = error
        self.description = description
        super().__init__(f"token refused ({status} {error}): {description}")
