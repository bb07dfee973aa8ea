"""`GET /v1/audit` through the gateway: one query over every service's audit trail.

Each service keeps the audit log of its own records and serves its own `/v1/audit` (it checks the token
and applies the visibility rule itself). The gateway sends the caller's query, with the caller's token, to
every service at once and merges the answers newest first. Entry ids are UUIDv7 and every service pages by
`id < cursor`, so one cursor (the last id shown) continues all of them: the next page asks each service
for what is older than the last entry shown.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from icep.gateway.api import active_principal
from icep.gateway.proxy import Proxy, request_id_of
from icep.gateway.ratelimit import too_many_requests
from icep.platform.audit import (
    LIST_AUDIT_DESCRIPTION,
    LIST_AUDIT_SUMMARY,
    AuditPage,
    AuditQueryDep,
    may_query,
)
from icep.platform.auth import Principal
from icep.platform.http import next_link
from icep.platform.problems import problem

#: The services that keep an audit log (the gateway keeps none).
AUDITED = ("plans", "procurement", "standards", "notifications")

router = APIRouter(tags=["audit"])


class AuditFanout:
    """The HTTP client the fan-out uses (one pool, closed with the gateway)."""

    def __init__(self, upstreams: dict[str, str], timeout: float) -> None:
        self.upstreams = {name: url for name, url in upstreams.items() if name in AUDITED}
        self.client = httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def ask(self, name: str, request: Request) -> httpx.Response | None:
        headers = {
            "authorization": request.headers.get("authorization", ""),
            "x-request-id": request_id_of(request),
            "accept": "application/json",
        }
        url = f"{self.upstreams[name].rstrip('/')}/v1/audit"
        try:
            params = str(request.query_params)
            return await self.client.get(url, params=params, headers=headers)
        except httpx.HTTPError:
            return None


def fanout_of(request: Request) -> AuditFanout:
    fanout: AuditFanout | None = getattr(request.app.state, "audit_fanout", None)
    if fanout is None:
        proxy: Proxy = request.app.state.proxy
        fanout = AuditFanout(proxy.upstreams, proxy.timeout)
        request.app.state.audit_fanout = fanout
    return fanout


async def close_fanout(app: Any) -> None:
    fanout: AuditFanout | None = getattr(app.state, "audit_fanout", None)
    if fanout is not None:
        await fanout.aclose()


@router.get(
    "/v1/audit",
    operation_id="listAudit",
    summary=LIST_AUDIT_SUMMARY,
    description=LIST_AUDIT_DESCRIPTION,
    response_model=AuditPage,
)
async def list_audit(
    request: Request,
    principal: Annotated[Principal, Depends(active_principal)],
    query: AuditQueryDep,
) -> Response:
    may_query(principal)  # at the edge too: a refused caller costs the services nothing
    proxy: Proxy = request.app.state.proxy
    verdict = None
    if proxy.rate_limits is not None:
        verdict = await proxy.rate_limits.for_client(principal.client_id)
        if verdict is not None and not verdict.allowed:
            return too_many_requests(
                verdict, "client", "this client has used its request budget", instance=request.url.path
            )
    fanout = fanout_of(request)
    names = sorted(fanout.upstreams)
    answers = await asyncio.gather(*(fanout.ask(name, request) for name in names))
    items: list[dict[str, Any]] = []
    more = False
    for name, answer in zip(names, answers, strict=True):
        if answer is None or answer.status_code >= 500:
            return problem(
                502, f"the audit trail of {name} is not available", slug="bad-gateway", instance="/v1/audit"
            )
        if answer.status_code != 200:  # the service's own refusal (401, 403, 422): the caller's answer
            return Response(
                answer.content,
                status_code=answer.status_code,
                media_type=answer.headers.get("content-type", "application/problem+json"),
            )
        page = answer.json()
        items.extend(page["items"])
        more = more or page.get("next") is not None
    items.sort(key=lambda item: str(item["id"]), reverse=True)
    shown = items[: query.limit]
    more = more or len(items) > query.limit
    cursor = shown[-1]["id"] if more and shown else None
    response = JSONResponse({"items": shown, "next": next_link(request, cursor)})
    if verdict is not None:
        response.headers.update(verdict.headers(time.time()))
    return response
