"""GET|POST /authorize: RFC 6749 §4.1.1, OIDC Core §3.1.2.1 (both methods MUST be supported)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from idp import deps
from idp.protocol.authorization import AuthorizationContext, authorize
from idp.protocol.requests import BadParameters, Params, query_params, read_form

router = APIRouter()


@router.api_route("/authorize", methods=["GET", "POST"], include_in_schema=False)
async def authorization_endpoint(request: Request) -> Response:
    runtime, templates = deps.get_runtime(request), deps.get_templates(request)
    settings = runtime.settings
    try:
        params: Params = (
            await read_form(request, settings.max_body_bytes, settings.max_param_bytes)
            if request.method == "POST"
            else query_params(request, settings.max_param_bytes)
        )
    except BadParameters as exc:
        return templates.error(request, "Invalid request", str(exc))
    ctx = AuthorizationContext(
        runtime,
        templates,
        request,
        params,
        redirect_status=303 if request.method == "POST" else 302,
    )
    return await run_in_threadpool(authorize, ctx)
