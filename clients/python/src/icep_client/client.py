"""`IcepClient`: one authenticated, retrying HTTP client for the ICEP partner API, with a helper per
resource (`plans`, `initiatives`, `standards`, `subscriptions`, `capacity`, `events`, `suppliers`,
`demand_signals`, `conformance_claims`, `clearances`, and for operators `audit` and `dead_letters`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, retry_if_result, stop_after_attempt

from icep_client.auth import ClientCredentials
from icep_client.errors import ProblemError
from icep_client.models import IcepModel
from icep_client.resources.capacity import Capacity
from icep_client.resources.clearances import Clearances
from icep_client.resources.conformance import ConformanceClaims
from icep_client.resources.demand import DemandSignals
from icep_client.resources.events import Events
from icep_client.resources.initiatives import Initiatives
from icep_client.resources.operations import Audit, DeadLetters
from icep_client.resources.plans import Plans
from icep_client.resources.standards import Standards
from icep_client.resources.subscriptions import Subscriptions
from icep_client.resources.suppliers import Suppliers
from icep_client.retrying import RetryPolicy
from icep_client.wire import Params, parse, query

__all__ = ["IcepClient"]

M = TypeVar("M", bound=IcepModel)

USER_AGENT = "icep-client/0.1.0"


class IcepClient:
    """The partner API at `base_url` (the gateway), as the OAuth2 client `client_id`.

    Use it as an async context manager (or call `aclose()`). Tokens are fetched from `/oauth/token` when
    first needed, cached, and fetched again shortly before they expire or once after a 401. Requests are
    retried as `retry` says (see `icep_client.retrying`); every POST carries an `Idempotency-Key` made
    once per call and sent again on each retry. Failed answers raise `ProblemError` (or a subclass)."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        timeout: float | httpx.Timeout = 30.0,
        retry: RetryPolicy | None = None,
        token_refresh_margin: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = ClientCredentials(
            f"{self.base_url}/oauth/token",
            client_id,
            client_secret,
            scope=scope,
            refresh_margin=token_refresh_margin,
            clock=clock,
        )
        self.retry = retry or RetryPolicy()
        self.http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=self.auth,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )
        self.plans = Plans(self)
        self.initiatives = Initiatives(self)
        self.standards = Standards(self)
        self.subscriptions = Subscriptions(self)
        self.capacity = Capacity(self)
        self.events = Events(self)
        self.suppliers = Suppliers(self)
        self.demand_signals = DemandSignals(self)
        self.conformance_claims = ConformanceClaims(self)
        self.clearances = Clearances(self)
        self.audit = Audit(self)
        self.dead_letters = DeadLetters(self)

    async def __aenter__(self) -> IcepClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    # --- requests -------------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        if_match: str | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One logical call, retried as the policy allows; the answer when it is a success, else the
        `ProblemError` it carried. A POST gets `idempotency_key` (default: a new UUID) on every attempt."""
        method = method.upper()
        sent = dict(headers or {})
        if method == "POST":
            sent["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        if if_match is not None:
            sent["If-Match"] = if_match
        policy = self.retry

        def last_answer(state: RetryCallState) -> httpx.Response:
            assert state.outcome is not None
            answer: httpx.Response = state.outcome.result()  # raises the last error, if that was one
            return answer

        retrying = AsyncRetrying(
            stop=stop_after_attempt(max(1, policy.attempts)),
            wait=policy.wait,
            retry=retry_if_exception(lambda e: policy.retries_exception(method, e))
            | retry_if_result(lambda r: policy.retries_response(method, r)),
            retry_error_callback=last_answer,
            sleep=policy.sleep,
            reraise=True,
        )
        response: httpx.Response = await retrying(
            # (No params at all rather than empty ones: httpx would drop the query a `next` link holds.)
            self.http.request,
            method,
            path,
            params=query(params) or None,
            json=json,
            headers=sent,
        )
        if response.is_error:
            raise ProblemError.from_response(response)
        return response

    async def fetch(
        self,
        model: type[M],
        method: str,
        path: str,
        **kw: Any,
    ) -> M:
        """`request`, its answer read as `model` (a versioned one keeps the answer's ETag)."""
        return parse(model, await self.request(method, path, **kw))

    async def paginate(self, model: type[M], path: str, params: Params | None = None) -> AsyncIterator[M]:
        """Every item of a cursor-paginated list, page after page: each answer's `next` (a relative link
        holding the cursor and the filters) is followed until it is null."""
        async for item in self.iterate(path, params):
            yield model.model_validate(item)

    async def iterate(self, path: str, params: Params | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every item (as JSON) of any cursor-paginated list of the API, e.g. `/v1/suppliers`."""
        response = await self.request("GET", path, params=params)
        while True:
            page = response.json()
            for item in page["items"]:
                yield item
            following = page.get("next")
            if not following:
                return
            response = await self.request("GET", following)
