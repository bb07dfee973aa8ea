"""The reverse proxy: everything under /v1 forwarded to the service that owns it, buffered or streamed,
with the edge's headers replaced and the event streams capped per client."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping

import aiohttp
import httpx
from prometheus_client import Counter, Gauge
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send
from yarl import URL

from icep.gateway.edge import TRUSTED_PEER, path_refusal, raw_path_of, under_route
from icep.gateway.ratelimit import RATE_LIMIT_HEADERS, RateLimits, too_many_requests
from icep.gateway.routing import end_to_end_raw, route
from icep.gateway.upstream import (
    BROKEN_OFF,
    CONNECT_ERRORS,
    TRANSPORT_ERRORS,
    AiohttpAnswer,
    HttpxAnswer,
    UpstreamAnswer,
    aiohttp_session,
    decoded,
    httpx_client,
    is_utf8_text,
    with_context,
)
from icep.platform.ids import new_id
from icep.platform.problems import problem
from icep.platform.telemetry import http_client_call

log = logging.getLogger("icep.gateway")

# --- request ids --------------------------------------------------------------------------------------
# Accepted or made, returned and logged by the platform's access log (`icep.platform.logs`), outside every
# gateway middleware; the proxy forwards it upstream.


def request_id_of(request: Request) -> str:
    """The request's id (`icep.platform.logs.AccessLogMiddleware` puts it in the request state)."""
    request_id = getattr(request.state, "request_id", None)
    return request_id if isinstance(request_id, str) else new_id()


# --- proxy --------------------------------------------------------------------------------------------

#: Request headers the proxy sets itself rather than passing on (`expect`: the body is already read). The
#: forwarding headers are rebuilt from what the gateway trusts (`Proxy._headers`); `Forwarded` and
#: `X-Real-IP` are never passed on: the services read `X-Forwarded-*` only.
_REPLACED_REQUEST_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "expect",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-for",
        "forwarded",
        "x-real-ip",
        "x-request-id",
    }
)
#: Response headers the gateway writes itself (forwarding them would duplicate them); the RateLimit fields
#: describe the gateway's limits, which only the gateway knows.
_REPLACED_RESPONSE_HEADERS = frozenset(
    {"date", "server", "x-request-id", *(name.lower() for name in RATE_LIMIT_HEADERS)}
)
_REPLACED_REQUEST_RAW = frozenset(name.encode("latin-1") for name in _REPLACED_REQUEST_HEADERS)
_REPLACED_RESPONSE_RAW = frozenset(name.encode("latin-1") for name in _REPLACED_RESPONSE_HEADERS)


class _BodyTooLarge(Exception):
    pass


class _PathOutsideRoute(Exception):
    """The upstream URL would not carry exactly the checked path, under its route's prefix."""


class UpstreamResponse(StreamingResponse):
    """Streams an upstream event stream through and always closes it, also when the caller goes away; then
    it gives back the stream slot it holds (if any), however the stream ended."""

    def __init__(
        self,
        upstream: UpstreamAnswer,
        headers: list[tuple[bytes, bytes]],
        idle_timeout: float | None,
        slot: StreamSlot | None = None,
    ) -> None:
        super().__init__(_relay(upstream, idle_timeout), status_code=upstream.status)
        self.raw_headers = headers
        self._upstream = upstream
        self._slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                await self._upstream.aclose()
            finally:
                if self._slot is not None:
                    self._slot.release()


async def _relay(upstream: UpstreamAnswer, idle_timeout: float | None) -> AsyncIterator[bytes]:
    # Raw bytes: the caller gets exactly what the service sent (still compressed, if it was), chunk by chunk,
    # so Server-Sent Events arrive as they are written.
    chunks = upstream.chunks()
    while True:
        try:
            async with asyncio.timeout(idle_timeout):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        yield chunk


#: The paths of the services' event streams (`text/event-stream`), as path segments.
STREAM_PATHS: frozenset[tuple[str, ...]] = frozenset({("v1", "events", "stream")})
#: Seconds a caller refused a stream is told to wait (`Retry-After`).
STREAM_RETRY_AFTER_SECONDS = 5
OPEN_STREAMS = Gauge("icep_gateway_open_streams", "Event streams open through this gateway process")
STREAMS_REFUSED = Counter(
    "icep_gateway_streams_refused_total",
    "Event streams refused because a cap was reached: `client` (429) or `total` (503)",
    ["cap"],
)


def wants_stream(request: Request) -> bool:
    """Whether `request` asks for an event stream: a stream path, or `text/event-stream` in `Accept`."""
    if tuple(s for s in request.url.path.split("/") if s) in STREAM_PATHS:
        return True
    return any(
        part.split(";", 1)[0].strip().lower() == "text/event-stream"
        for value in request.headers.getlist("accept")
        for part in value.split(",")
    )


class StreamCapReached(Exception):
    """No stream slot: the client has `cap` streams open (`per_client`), or the process has (total)."""

    def __init__(self, cap: int, *, per_client: bool) -> None:
        super().__init__(f"{cap} streams open {'for this client' if per_client else 'in all'}")
        self.cap = cap
        self.per_client = per_client


class StreamSlot:
    """One open stream's place in `StreamSlots`; `release()` gives it back (more calls do nothing)."""

    def __init__(self, slots: StreamSlots, client: str) -> None:
        self._slots = slots
        self.client = client
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots._release(self.client)


class StreamSlots:
    """Caps on the event streams open at once through this process: `total`, and `per_client` for each.

    Rate limits count requests; a stream is one request that then stays open, holding a connection to its
    service. These caps bound what the open ones hold. They count in this process only (each replica has
    its own), and need no lock: the event loop runs one acquire or release at a time.
    """

    def __init__(self, *, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self._open: dict[str, int] = {}
        self._count = 0

    def acquire(self, client: str) -> StreamSlot:
        """A slot for one more stream of `client`; `StreamCapReached` when a cap is reached."""
        if self._open.get(client, 0) >= self.per_client:
            raise StreamCapReached(self.per_client, per_client=True)
        if self._count >= self.total:
            raise StreamCapReached(self.total, per_client=False)
        self._open[client] = self._open.get(client, 0) + 1
        self._count += 1
        OPEN_STREAMS.inc()
        return StreamSlot(self, client)

    def _release(self, client: str) -> None:
        left = self._open.get(client, 0) - 1
        if left > 0:
            self._open[client] = left
        else:
            self._open.pop(client, None)
        self._count -= 1
        OPEN_STREAMS.dec()

    def open_for(self, client: str) -> int:
        return self._open.get(client, 0)

    @property
    def open(self) -> int:
        return self._count


def stream_refused(cap: StreamCapReached, *, instance: str) -> Response:
    """429 when the client has its streams open, 503 when the gateway has; both with `Retry-After`."""
    retry = STREAM_RETRY_AFTER_SECONDS
    if cap.per_client:
        STREAMS_REFUSED.labels("client").inc()
        return problem(
            429,
            f"this client already has {cap.cap} event streams open through this gateway, the most it may; "
            f"close one or retry after {retry} s",
            slug="too-many-streams",
            instance=instance,
            headers={"Retry-After": str(retry)},
            retry_after=retry,
        )
    STREAMS_REFUSED.labels("total").inc()
    return problem(
        503,
        f"this gateway has {cap.cap} event streams open, the most it serves; retry after {retry} s",
        slug="stream-capacity-reached",
        instance=instance,
        headers={"Retry-After": str(retry)},
        retry_after=retry,
    )


class Proxy:
    """Forwards requests to the upstream services, within each client's rate limits (`rate_limits`; None:
    unlimited) and its cap on open event streams (`streams`).

    Each upstream has two pooled HTTP clients: one for ordinary requests (`max_connections`) and one for
    requests that ask for an event stream (as large as the total stream cap). A stream holds its connection
    for as long as it lasts; in a pool of its own it never makes an ordinary request wait for a connection.
    The clients are aiohttp sessions; a request with a header value that is not UTF-8 goes through an httpx
    client instead, which sends octets as received (`icep.gateway.upstream`).
    """

    def __init__(
        self,
        upstreams: Mapping[str, str],
        *,
        timeout: float,
        max_body_bytes: int,
        rate_limits: RateLimits | None = None,
        max_connections: int = 256,
        streams: StreamSlots | None = None,
        max_response_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.upstreams = dict(upstreams)
        self.timeout = timeout
        self.max_body_bytes = max_body_bytes
        self.max_response_bytes = max_response_bytes
        self.rate_limits = rate_limits
        self.streams = streams if streams is not None else StreamSlots(total=1000, per_client=5)
        self.max_connections = max_connections
        #: Each upstream's parsed base URL and its path prefix, parsed once rather than per request.
        self._bases = {
            name: (base, base.raw_path.split(b"?", 1)[0].rstrip(b"/"))
            for name, base in ((name, httpx.URL(url)) for name, url in self.upstreams.items())
        }
        #: Each upstream's origin and path prefix as text, for the aiohttp URL (`_url`).
        self._origins = {
            name: (str(base.copy_with(raw_path=b"/")).rstrip("/"), prefix.decode("ascii"))
            for name, (base, prefix) in self._bases.items()
        }
        #: (upstream, for streams?) -> its session; made at first use, in the running loop.
        self._sessions: dict[tuple[str, bool], aiohttp.ClientSession] = {}
        self._fallback: httpx.AsyncClient | None = None

    def _session(self, upstream: str, stream: bool) -> aiohttp.ClientSession:
        session = self._sessions.get((upstream, stream))
        if session is None:
            session = aiohttp_session(self.streams.total if stream else self.max_connections)
            self._sessions[(upstream, stream)] = session
        return session

    def _fallback_client(self) -> httpx.AsyncClient:
        if self._fallback is None:
            self._fallback = httpx_client(self.max_connections)
        return self._fallback

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        fallback, self._fallback = self._fallback, None
        await asyncio.gather(*(session.close() for session in sessions))
        if fallback is not None:
            await fallback.aclose()

    async def forward(self, request: Request) -> Response:
        """Count `request` against its client's rate limits, then forward it and relay the answer."""
        principal = getattr(request.state, "principal", None)  # set by the token check before this
        verdict = None
        if self.rate_limits is not None and principal is not None:
            verdict = await self.rate_limits.for_client(principal.client_id)
        if verdict is not None and not verdict.allowed:
            return too_many_requests(
                verdict, "client", "this client has used its request budget", instance=request.url.path
            )
        # Streams are capped per client; a request without a principal (none reaches here) per address.
        peer = request.client.host if request.client is not None else "unknown"
        caller = principal.client_id if principal is not None else f"address:{peer}"
        response = await self._forward(request, caller)
        if verdict is not None:
            response.headers.update(verdict.headers(time.time()))
        return response

    async def _forward(self, request: Request, caller: str) -> Response:
        """Forward `request` to the service owning its path and relay the answer (buffered, or streamed for
        an event stream); a stream takes one of `caller`'s stream slots first, and goes through the
        upstream's stream pool."""
        instance = request.url.path
        # Routed on the raw path, the very bytes sent upstream (`_target`), never on a decoded form of it.
        raw_path = raw_path_of(request.scope)
        reason = path_refusal(raw_path)  # PathGuardMiddleware refused these already; a Proxy stands alone
        if reason is not None:
            return problem(400, f"the request path contains {reason}", slug="invalid-path", instance=instance)
        upstream = route(raw_path.decode("ascii"))
        if upstream is None or upstream not in self.upstreams:
            return problem(404, f"no service serves {instance}", slug="not-found", instance=instance)
        try:
            body = await self._read_body(request)
        except _BodyTooLarge:
            return problem(
                413,
                f"the request body exceeds {self.max_body_bytes} bytes",
                slug="content-too-large",
                instance=instance,
            )
        except ValueError:
            return problem(400, "the Content-Length header is invalid", slug="bad-request", instance=instance)

        slot: StreamSlot | None = None
        if wants_stream(request):
            try:
                slot = self.streams.acquire(caller)
            except StreamCapReached as cap:
                return stream_refused(cap, instance=instance)
        return await self._send(request, upstream, slot, caller, body)

    async def _send(
        self, request: Request, upstream: str, slot: StreamSlot | None, caller: str, body: bytes
    ) -> Response:
        """Send to `upstream` and answer with its response, which takes over `slot`; on any other answer
        the slot is given back here."""
        instance = request.url.path
        handed_over = False
        try:
            response = await self._exchange(request, upstream, slot is not None, body)
            if isinstance(response, Response):
                return response
            headers = end_to_end_raw(response.raw_headers, _REPLACED_RESPONSE_RAW)
            streaming = (response.header("content-type") or "").startswith("text/event-stream")
            if not streaming:
                # Buffered: a service that dies mid-answer gives the caller a 502, not a status line
                # followed by a reset. (The slot of a request that asked for a stream is given back below.)
                return await self._buffered(request, upstream, response, headers)
            if slot is None:
                # A stream the request did not announce (a path not in STREAM_PATHS, no Accept): it holds
                # an ordinary connection, but counts against the caps all the same.
                log.warning("%s %s streams but was not sent as a stream", request.method, instance)
                try:
                    slot = self.streams.acquire(caller)
                except StreamCapReached as cap:
                    await response.aclose()
                    return stream_refused(cap, instance=instance)
            answer = UpstreamResponse(response, headers, idle_timeout=None, slot=slot)
            handed_over = True
            return answer
        finally:
            if slot is not None and not handed_over:
                slot.release()

    async def _buffered(
        self, request: Request, upstream: str, response: UpstreamAnswer, headers: list[tuple[bytes, bytes]]
    ) -> Response:
        """The whole upstream answer as one response, read before anything is sent to the caller; a 502
        problem when it cannot be read whole (the service failed mid-answer) or exceeds the size limit."""
        instance = request.url.path
        limit = self.max_response_bytes
        try:
            declared = response.header("content-length")
            # (A HEAD answer's length describes the GET body, which is not sent.)
            if (
                declared is not None
                and declared.isdigit()
                and int(declared) > limit
                and _may_have_body(request.method, response.status)
            ):
                raise _BodyTooLarge
            chunks: list[bytes] = []
            size = 0
            # Bounded like the wait for the head: a service that stalls mid-answer is a failure. (One timer
            # for the whole body, not one per chunk.)
            async with asyncio.timeout(self.timeout):
                async for chunk in response.chunks():
                    size += len(chunk)
                    if size > limit:
                        raise _BodyTooLarge
                    chunks.append(chunk)
        except _BodyTooLarge:
            log.warning(
                "upstream %s answered %s %s with more than %d bytes",
                upstream,
                request.method,
                instance,
                limit,
            )
            return problem(
                502,
                f"the {upstream} service's answer exceeds {limit} bytes",
                slug="upstream-answer-too-large",
                instance=instance,
            )
        except BROKEN_OFF as exc:
            log.warning("upstream %s failed mid-answer on %s %s: %r", upstream, request.method, instance, exc)
            return problem(
                502, f"the {upstream} service's answer broke off", slug="bad-gateway", instance=instance
            )
        finally:
            await response.aclose()
        # One copy at most: a body that came in one chunk is used as it is.
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        answer = Response(body, status_code=response.status)
        # Raw bytes as the service sent them (still compressed, if it was); its Content-Length stays when it
        # sent one (a HEAD answer's describes the GET body), else it is the length read.
        answer.raw_headers = headers
        if response.header("content-length") is None and _may_have_body(request.method, response.status):
            answer.raw_headers.append((b"content-length", str(len(body)).encode("latin-1")))
        return answer

    async def _exchange(
        self, request: Request, upstream: str, stream: bool, body: bytes
    ) -> UpstreamAnswer | Response:
        """The upstream's response (its body not read yet), or the problem that answers for it."""
        instance = request.url.path
        headers = self._headers(request)
        try:
            target = self._target(upstream, request.scope)
            if isinstance(target, URL) and not is_utf8_text(headers):
                target = self._httpx_target(upstream, request.scope)
        except _PathOutsideRoute:
            log.warning(
                "refused %s %s: the upstream URL would differ from the checked path", request.method, instance
            )
            return problem(
                400, "the request path cannot be forwarded as sent", slug="invalid-path", instance=instance
            )
        try:
            async with asyncio.timeout(self.timeout):
                if isinstance(target, URL):
                    return await self._send_aiohttp(request.method, upstream, stream, target, headers, body)
                return await self._send_httpx(request.method, target, headers, body)
        except (TimeoutError, httpx.TimeoutException):
            log.warning("upstream %s timed out on %s %s", upstream, request.method, instance)
            return problem(
                504,
                f"the {upstream} service did not answer in time",
                slug="upstream-timeout",
                instance=instance,
            )
        except CONNECT_ERRORS:
            log.warning("upstream %s unreachable for %s %s", upstream, request.method, instance)
            return problem(
                503, f"the {upstream} service is unavailable", slug="upstream-unavailable", instance=instance
            )
        except TRANSPORT_ERRORS as exc:
            log.warning("upstream %s failed on %s %s: %r", upstream, request.method, instance, exc)
            return problem(
                502, f"the {upstream} service gave no valid answer", slug="bad-gateway", instance=instance
            )
        except ValueError as exc:
            # A header value the HTTP client may not send (a control character; the server in front of the
            # gateway lets some through): the caller's request is at fault, and nothing went upstream.
            log.info("refused %s %s: %s", request.method, instance, exc)
            return problem(400, "a request header cannot be forwarded", slug="bad-request", instance=instance)

    async def _send_aiohttp(
        self,
        method: str,
        upstream: str,
        stream: bool,
        url: URL,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> UpstreamAnswer:
        carrier: dict[str, str] = {}
        with http_client_call(method, str(url), carrier) as call:
            response = await self._session(upstream, stream).request(
                method,
                url,
                headers=with_context(decoded(headers), carrier),
                data=body or None,
                allow_redirects=False,
            )
            call.answered(response.status)
        return AiohttpAnswer(response)

    async def _send_httpx(
        self, method: str, target: httpx.URL, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> UpstreamAnswer:
        client = self._fallback_client()
        # Bytes, as received: the octets of a value that is not UTF-8 go on unchanged.
        outgoing = client.build_request(method, target, headers=headers, content=body or None)
        return HttpxAnswer(await client.send(outgoing, stream=True))

    def _target(self, upstream: str, scope: Scope) -> URL | httpx.URL:
        """The upstream URL: the service's base URL and the caller's raw path and query, unchanged; for
        aiohttp (a `yarl.URL` taken as encoded, so nothing is re-quoted) unless the query holds octets
        outside ASCII, which only the httpx fallback sends as they are.

        `_PathOutsideRoute` if the URL's path is not exactly the checked one or not under a prefix of
        `upstream`'s routes."""
        raw_path = raw_path_of(scope)
        query: bytes = scope.get("query_string", b"")
        if not (raw_path.isascii() and query.isascii()):
            return self._httpx_target(upstream, scope)
        origin, prefix = self._origins[upstream]
        expected = prefix + raw_path.decode("ascii")
        try:
            url = URL(origin + expected + ("?" + query.decode("ascii") if query else ""), encoded=True)
        except ValueError:
            raise _PathOutsideRoute from None
        if url.raw_path != expected or not under_route(raw_path, upstream):
            raise _PathOutsideRoute
        return url

    def _httpx_target(self, upstream: str, scope: Scope) -> httpx.URL:
        """`_target` for the httpx fallback (httpx normalises dot segments and escapes some characters when
        it builds a URL: a path it would change is refused)."""
        base, prefix = self._bases[upstream]
        raw_path = raw_path_of(scope)
        query: bytes = scope.get("query_string", b"")
        expected = prefix + raw_path
        try:
            target = base.copy_with(raw_path=expected + (b"?" + query if query else b""))
        except (UnicodeDecodeError, httpx.InvalidURL):
            raise _PathOutsideRoute from None
        if target.raw_path.split(b"?", 1)[0] != expected or not under_route(raw_path, upstream):
            raise _PathOutsideRoute
        return target

    def _headers(self, request: Request) -> list[tuple[bytes, bytes]]:
        """The request's end-to-end headers, as received (bytes), and the gateway's forwarding headers."""
        incoming: list[tuple[bytes, bytes]] = request.scope["headers"]
        headers = end_to_end_raw(incoming, _REPLACED_REQUEST_RAW)
        # The forwarding headers are the gateway's own. Only a trusted proxy in front of it (a load balancer,
        # see ForwardedHeadersMiddleware) has its chain and its X-Forwarded-Host kept; the peer is appended.
        trusted_peer = request.scope.get("state", {}).get(TRUSTED_PEER)
        host = next((v for k, v in incoming if k.lower() == b"host"), None)
        if trusted_peer is not None:
            chain = [v for k, v in incoming if k.lower() == b"x-forwarded-for"] + [
                trusted_peer.encode("latin-1")
            ]
            host = next((v for k, v in reversed(incoming) if k.lower() == b"x-forwarded-host"), host)
        else:
            client = request.scope.get("client")
            chain = [client[0].encode("latin-1")] if client else []
        if chain:
            headers.append((b"x-forwarded-for", b", ".join(chain)))
        headers.append((b"x-forwarded-proto", request.scope.get("scheme", "http").encode("latin-1")))
        if host:
            headers.append((b"x-forwarded-host", host))
        headers.append((b"x-request-id", request_id_of(request).encode("latin-1")))
        return headers

    async def _read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise ValueError("invalid Content-Length")
            if int(declared) > self.max_body_bytes:
                raise _BodyTooLarge
        # Count what actually arrives too: a chunked body declares no length, and a declared one may lie.
        parts: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _BodyTooLarge
            parts.append(chunk)
        return b"".join(parts)


def _may_have_body(method: str, status: int) -> bool:
    return method != "HEAD" and status >= 200 and status not in (204, 304)
