"""RFC 9457 problem details for every error a service or the gateway returns."""

from __future__ import annotations

import errno
import logging
import socket
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from icep.platform.errors import DomainError

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://icep.nato.int/problems/"

log = logging.getLogger("icep.problems")

#: Seconds a client is asked to wait (`Retry-After`) when the service's database does not answer.
UNAVAILABLE_RETRY_AFTER = 5
#: OS errors that mean "the database cannot be reached" (a driver's socket), not a bug in the code.
_CONNECTION_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.EHOSTDOWN,
        errno.ETIMEDOUT,
        errno.EPIPE,
        errno.ENOTCONN,
    }
)


def database_unavailable(exc: BaseException) -> bool:
    """The error says the database cannot be reached (connection refused or lost, pool exhausted, timed
    out), not that the request or the code is wrong: the answer is 503 with Retry-After, not 500."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # the cause chain: drivers wrap OSErrors
        seen.add(id(current))
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(
            current,
            OperationalError
            | InterfaceError
            | DisconnectionError
            | PoolTimeout
            | ConnectionError
            | TimeoutError,
        ):
            return True
        if isinstance(current, socket.gaierror) or (
            isinstance(current, OSError) and current.errno in _CONNECTION_ERRNOS
        ):
            return True  # e.g. EHOSTUNREACH, ENETUNREACH while connecting; a missing file is a bug (500)
        current = current.__cause__ or current.__context__
    return False


def unavailable(request: Request) -> JSONResponse:
    return problem(
        503,
        "the service cannot reach its database right now; retry later",
        title="Service unavailable",
        slug="unavailable",
        instance=request.url.path,
        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER)},
    )


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    412: "Precondition failed",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    428: "Precondition required",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    slug: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """One problem response; `slug` names the problem type under the platform's problem base URI."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (slug or str(status)),
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extensions)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {
            "location": ".".join(str(p) for p in err.get("loc", ())),
            "message": err.get("msg", ""),
            "type": err.get("type", ""),
        }
        for err in exc.errors()
    ]


def _last_resort(request: Request, exc: BaseException) -> JSONResponse:
    if database_unavailable(exc):
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        return unavailable(request)
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "an unexpected error occurred; it has been logged", instance=request.url.path)


class AnswerErrors:
    """The last net of an app's middleware: an exception that escaped every handler (one raised by a
    middleware, or one only the server-error layer would see) is answered here as problem JSON: 503 when the
    database cannot be reached, else 500. It never reaches the server, which would drop the connection, and
    a keep-alive peer (the gateway) would then meet a closed connection on its next request (a 502)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def noted(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, noted)
        except Exception as exc:
            if started:
                raise  # half an answer is out: only closing the connection tells the peer
            await _last_resort(Request(scope), exc)(scope, receive, send)


def install_problem_handlers(app: FastAPI) -> None:
    """Map every error, expected or not, to problem JSON (a 500 is logged as the bug it is)."""

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        headers = exc.headers or ({"WWW-Authenticate": 'Bearer realm="icep"'} if exc.status == 401 else None)
        return problem(
            exc.status,
            exc.detail,
            title=exc.title,
            slug=exc.slug,
            instance=request.url.path,
            headers=headers,
            **exc.extensions,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(
            422,
            "the request does not match the schema",
            slug="validation",
            instance=request.url.path,
            errors=_validation_errors(exc),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "Error")
        return problem(exc.status_code, detail, instance=request.url.path, headers=headers)

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        # Two requests changed the same thing at once and the database kept the first: retry.
        log.warning("integrity conflict on %s %s: %s", request.method, request.url.path, exc.orig)
        return problem(
            409,
            "a concurrent change got there first; read the resource again and retry",
            slug="concurrent-change",
            instance=request.url.path,
        )

    @app.exception_handler(DataError)
    async def _data(request: Request, _exc: DBAPIError) -> JSONResponse:
        return problem(
            422,
            "a value is out of range or not storable (e.g. a NUL character)",
            slug="unstorable-value",
            instance=request.url.path,
        )

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        # Some drivers (asyncpg) raise a plain DBAPIError for data exceptions (SQLSTATE class 22, e.g. a
        # NUL character in text): the caller's value, not a fault of ours.
        sqlstate = str(getattr(exc.orig, "sqlstate", "") or getattr(exc.orig, "pgcode", "") or "")
        if sqlstate.startswith("22"):
            return await _data(request, exc)
        return await _bug(request, exc)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        return _last_resort(request, exc)

    # Answered inside the app (the server-error layer would answer and then re-raise to the server, which
    # drops the connection): a database that cannot be reached is 503, any other of these a 500.
    @app.exception_handler(OSError)
    @app.exception_handler(DisconnectionError)
    @app.exception_handler(PoolTimeout)
    async def _unreachable(request: Request, exc: Exception) -> JSONResponse:
        return _last_resort(request, exc)
