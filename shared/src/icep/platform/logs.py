"""Logs an operator can read: one access-log line per request, request ids, and a quiet broker outage.

Access log. `install_access_log(app, service)` puts `AccessLogMiddleware` at the outside of an app's
middleware stack (inside the tracing middleware, so the line carries the request's trace id). It writes one
JSON line per request on the `icep.access` logger: method, route template, status, duration, request id,
client id and nation (of the verified token, where the request had one), trace id and client address.
Health and metrics probes are logged at DEBUG only.

Request ids. The caller's `X-Request-Id` is kept when it is sane (1-128 characters, letters, digits and
`!#$%&'*+-.^_`|~/=:@`); otherwise, or when absent, a UUIDv7 is made. The id is returned on every answer
(problems, 404s and 500s included), kept in the request state (`request.state.request_id`) for the gateway
to forward upstream, and is in every log line written while the request is handled (`RequestContextFilter`).

Broker outages. aiokafka logs every failed connection attempt, metadata refresh and fetch: thousands of
ERROR lines a minute per process while a broker is away. `KafkaOutageFilter` lets the first such line of
each Kafka client through as one WARNING, drops the repeats, and writes one line when the client talks to
the broker again (with how many lines it held back): at its request, or, when that request came right after
the last error, once the broker has stayed quiet for a while (an idle client, such as a relay that sent its
backlog at once, may send nothing more for minutes). Other aiokafka errors pass unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from starlette.applications import Starlette
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from icep.platform.ids import new_id

ACCESS_LOGGER = "icep.access"
access_log = logging.getLogger(ACCESS_LOGGER)

#: Paths of probes (orchestrators, Prometheus) that are logged at DEBUG, not once per poll.
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/livez", "/metrics"})

#: A caller's request id is kept when it matches: bounded, and token characters (RFC 9110 `tchar`) plus
#: `/`, `=`, `:` and `@` (base64 and URN-like ids), so it is safe in headers, logs and JSON as it is.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~/=:@]{1,128}$")

_request_id: ContextVar[str | None] = ContextVar("icep_request_id", default=None)


def utc_times(formatter: logging.Formatter) -> logging.Formatter:
    """Make `formatter` write `%(asctime)s` as RFC 3339 in UTC with its offset and milliseconds
    (`2026-12-06T23:10:00.123+00:00`), whatever the machine's zone."""
    formatter.converter = time.gmtime
    formatter.default_time_format = "%Y-%m-%dT%H:%M:%S"
    formatter.default_msec_format = "%s.%03d+00:00"
    return formatter


def current_request_id() -> str | None:
    """The id of the request being handled in this context, if any."""
    return _request_id.get()


def accepted_request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The caller's `X-Request-Id` if there is exactly one and it is sane, else a new UUIDv7."""
    sent = [value for name, value in headers if name.lower() == b"x-request-id"]
    if len(sent) == 1:
        candidate = sent[0].decode("latin-1")
        if _SANE_REQUEST_ID.match(candidate):
            return candidate
    return new_id()


class RequestContextFilter(logging.Filter):
    """Adds `request_id` to every record written while a request is handled."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = _request_id.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


class AccessLogMiddleware:
    """Request id in, request id out, and one access-log line per request (see the module's docstring)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accepted_request_id(scope["headers"])
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode("latin-1"))
        token = _request_id.set(request_id)
        started = time.perf_counter()
        status = 500  # what the caller gets when the app fails before answering
        span: trace.SpanContext | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, span
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, header]}
                span = trace.get_current_span().get_span_context()
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            try:
                self._log(scope, status, (time.perf_counter() - started) * 1000, span)
            finally:
                _request_id.reset(token)

    def _log(self, scope: Scope, status: int, duration_ms: float, span: trace.SpanContext | None) -> None:
        path: str = scope.get("path", "")
        level = logging.DEBUG if path in PROBE_PATHS else logging.INFO
        if not access_log.isEnabledFor(level):
            return
        state: dict[str, Any] = scope.get("state") or {}
        route = route_of(scope)
        principal = state.get("principal")
        client = scope.get("client")
        fields: dict[str, Any] = {
            "method": scope.get("method"),
            "route": route,
            "status": status,
            "duration_ms": round(duration_ms, 2),
            "request_id": state.get("request_id"),
            "client_id": getattr(principal, "client_id", None),
            "nation": getattr(principal, "nation", None),
            "client_address": client[0] if client else None,
        }
        if route is None:
            fields["path"] = path  # no template known (a 404, a proxied call): the path says what it was
        if span is not None and span.is_valid:  # the filter sets these too while the request's span is open
            fields["trace_id"] = format(span.trace_id, "032x")
            fields["span_id"] = format(span.span_id, "016x")
        access_log.log(level, "%s %s %s", scope.get("method"), route or path, status, extra=fields)


#: Where an inner layer that knows the template better than the router puts it (the gateway: the template
#: of the upstream's API that a proxied path matches); "unmatched" counts as not known.
SCOPE_ROUTE = "icep.route_template"


def route_of(scope: Scope) -> str | None:
    """The route template that answered (`/v1/plans/{plan_id}`), or None when none is known: no route
    matched (a 404), or only a catch-all did (the gateway's proxy route `/v1/{path:path}`) and no inner
    layer said which template of the upstream's API the path is (`SCOPE_ROUTE` in the scope)."""
    template = scope.get(SCOPE_ROUTE)
    if isinstance(template, str) and template != "unmatched":
        return template
    path = getattr(scope.get("route"), "path", None)
    if not isinstance(path, str) or ":path}" in path:
        return None
    return path


def install_access_log(app: Starlette, service: str) -> None:
    """Put `AccessLogMiddleware` outside every middleware `app` has or will get (call before the tracing
    instrumentation, which then wraps it, so the access line has the request's trace id).

    It goes between two `ServerErrorMiddleware`s: the inner one turns an unhandled error into the 500
    answer (which so gets the request id and is logged as a 500), the outer one is what the tracing
    instrumentation expects to find at the top of the stack.
    """
    build = app.build_middleware_stack

    def build_with_access_log() -> ASGIApp:
        stack = build()
        if isinstance(stack, ServerErrorMiddleware):
            return ServerErrorMiddleware(
                AccessLogMiddleware(stack, service), handler=stack.handler, debug=stack.debug
            )
        return AccessLogMiddleware(stack, service)

    app.build_middleware_stack = build_with_access_log  # type: ignore[method-assign]


# --- broker outages -----------------------------------------------------------------------------------

#: The Kafka client a record comes from ("outbox producer", "consumer icep-plans", ...): set around a
#: client's start (`icep.platform.kafka.start_with_retry`), so the tasks the client starts carry it.
kafka_client: ContextVar[str | None] = ContextVar("icep_kafka_client", default=None)

#: What aiokafka logs, again and again, while it cannot reach a broker (seen with a stopped broker:
#: connect failures, metadata refreshes, fetches, coordinator lookups, produce retries). Such a line opens
#: an outage of its client.
_UNREACHABLE = re.compile(
    r"Unable connect to|Unable to update metadata|Unable to request metadata|NodeNotReady|"
    r"KafkaConnectionError|Connect call failed|Connection at \S+ (closed|broken)|RequestTimedOut|"
    r"KafkaTimeoutError",
    re.IGNORECASE,
)
#: What a broker says while a cluster settles after a restart: held back while its client's outage is open
#: (part of it), shown as they are otherwise (a fresh broker's first coordinator lookup, say).
_SETTLING = re.compile(
    r"CoordinatorNotAvailable|NotCoordinator|LeaderNotAvailable|NotLeader|coordinator dead|"
    r"not started or not valid|Heartbeat failed",
    re.IGNORECASE,
)
#: aiokafka's DEBUG line for a request written to a broker connection: the client is talking again.
_REQUEST_SENT = "Request to %s:%d %d: %s"


@dataclass
class _Outage:
    since: float
    last_error: float
    suppressed: int = 0
    #: When and on which logger the client last sent a request within the quiet period: the recovery line
    #: is written (on that logger) when the quiet period passes with no error after it (`_confirm`).
    talked_at: float = 0.0
    talked_on: str = ""
    confirming: bool = False


class KafkaOutageFilter(logging.Filter):
    """Collapses aiokafka's repeats during a broker outage: one WARNING per Kafka client when it loses the
    broker, one INFO line when it sends to the broker again, nothing in between. Other aiokafka records at
    WARNING or above pass unchanged; its DEBUG and INFO records are dropped (they are read here only).

    Needs the `aiokafka.conn` logger at DEBUG (`setup_logging` does it) to see the client talk again. A
    client counts as back when it sends a request `quiet_seconds` after its last connection error, so a
    cluster with one broker down does not announce recovery between two errors. A client that sent a
    request within that time and no error after it until `quiet_seconds` have passed counts as back too
    (the line is written then, on the event loop the client runs on): an idle client may send nothing more
    for minutes.
    """

    def __init__(self, quiet_seconds: float = 2.0) -> None:
        super().__init__()
        self.quiet_seconds = quiet_seconds
        self._outages: dict[str, _Outage] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if not (record.name == "aiokafka" or record.name.startswith("aiokafka.")):
            return True
        if getattr(record, "kafka_outage", None) == "ended":
            return True  # a recovery line this filter wrote itself (`_confirm`)
        client = kafka_client.get() or _client_from_logger(record.name)
        if record.levelno < logging.WARNING:
            if record.msg == _REQUEST_SENT:
                return self._maybe_recovered(record, client)
            return False
        message = record.getMessage()
        unreachable = _UNREACHABLE.search(message) is not None
        if not unreachable and _SETTLING.search(message) is None:
            return True
        with self._lock:
            outage = self._outages.get(client)
            if outage is not None:
                outage.suppressed += 1
                outage.last_error = record.created
                return False
            if not unreachable:
                return True
            self._outages[client] = _Outage(since=record.created, last_error=record.created)
        _rewrite(
            record,
            logging.WARNING,
            f"kafka {client}: cannot reach the broker ({message}); its repeats are held back until it is "
            "connected again",
            {"kafka_client": client, "kafka_outage": "started"},
        )
        return True

    def _maybe_recovered(self, record: logging.LogRecord, client: str) -> bool:
        with self._lock:
            outage = self._outages.get(client)
            if outage is None:
                return False
            if record.created - outage.last_error < self.quiet_seconds:
                outage.talked_at, outage.talked_on = record.created, record.name
                if not outage.confirming:
                    outage.confirming = self._confirm_later(client, outage)
                return False
            del self._outages[client]
        _rewrite(record, logging.INFO, *_recovered(client, outage, record.created))
        return True

    def _confirm_later(self, client: str, outage: _Outage) -> bool:
        """Check again when the quiet period after the client's last error has passed (False: cannot)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False  # not on an event loop: the client's next request says it
        delay = max(0.0, outage.last_error + self.quiet_seconds - time.time()) + 0.05
        loop.call_later(delay, self._confirm, client, outage)
        return True

    def _confirm(self, client: str, outage: _Outage) -> None:
        """The client sent a request within the quiet period: it is back if no error came after it."""
        now = time.time()
        with self._lock:
            outage.confirming = False
            if self._outages.get(client) is not outage or outage.talked_at <= outage.last_error:
                return  # over already, or an error came after the request: its next request decides
            if now - outage.last_error < self.quiet_seconds:
                outage.confirming = self._confirm_later(client, outage)
                return
            del self._outages[client]
        logger = logging.getLogger(outage.talked_on)
        message, fields = _recovered(client, outage, now)
        line = logger.makeRecord(logger.name, logging.INFO, __file__, 0, message, (), None, extra=fields)
        logger.handle(line)


def _recovered(client: str, outage: _Outage, now: float) -> tuple[str, dict[str, Any]]:
    """The recovery line of a client's outage: its message and fields."""
    down = now - outage.since
    message = (
        f"kafka {client}: connected to the broker again after {down:.1f}s "
        f"({outage.suppressed} repeated errors held back)"
    )
    fields = {
        "kafka_client": client,
        "kafka_outage": "ended",
        "outage_seconds": round(down, 1),
        "suppressed": outage.suppressed,
    }
    return message, fields


def _client_from_logger(name: str) -> str:
    parts = name.split(".")
    if len(parts) > 1 and parts[1] in ("producer", "consumer", "admin"):
        return parts[1]
    return "client"


def _rewrite(record: logging.LogRecord, level: int, message: str, fields: dict[str, Any]) -> None:
    record.levelno = level
    record.levelname = logging.getLevelName(level)
    record.msg = message
    record.args = ()
    record.exc_info = None
    record.exc_text = None
    for key, value in fields.items():
        setattr(record, key, value)
