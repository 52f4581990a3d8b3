"""GET /metrics: for a scraper on this machine, or anywhere with IDP_METRICS_TOKEN.

The address is the client's after the trusted proxy (ProxyHeadersMiddleware runs first), so a
request forwarded from outside is not loopback even though the proxy is.
"""

from __future__ import annotations

import ipaddress

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from idp import deps
from idp.ops import metrics
from idp.security.secrets import same
from idp.settings import Settings

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def scrape(request: Request) -> Response:
    runtime = deps.runtime_of(request)
    if not allowed(request, runtime.settings):
        return JSONResponse(
            {"error": "forbidden", "error_description": "metrics answer loopback or the token"},
            status_code=403,
            headers={"Cache-Control": "no-store"},
        )
    body = await run_in_threadpool(metrics.exposition, runtime.reads)
    return Response(body, media_type=metrics.CONTENT_TYPE, headers={"Cache-Control": "no-store"})


def allowed(request: Request, settings: Settings) -> bool:
    token = settings.metrics_token
    header = request.headers.get("authorization", "")
    if token is not None and header[:7].lower() == "bearer ":
        return same(header[7:], token.get_secret_value())
    return _is_loopback(request.client.host if request.client else None)


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
