"""GET|POST /logout: OpenID Connect RP-Initiated Logout 1.0 §2 (end_session_endpoint)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from idp import deps
from idp.audit.events import AuditEvent, record
from idp.protocol.end_session import end_session
from idp.protocol.requests import BadParameters, Params, client_ip, query_params, read_form
from idp.security import csrf

router = APIRouter()


@router.api_route("/logout", methods=["GET", "POST"], include_in_schema=False)
async def end_session_endpoint(request: Request) -> Response:
    runtime, templates = deps.get_runtime(request), deps.get_templates(request)
    settings = runtime.settings
    try:
        params = (
            await read_form(request, settings.max_body_bytes, settings.max_param_bytes)
            if request.method == "POST"
            else query_params(request, settings.max_param_bytes)
        )
    except BadParameters as exc:
        return templates.error(request, "Invalid request", str(exc))
    confirmed = False
    if request.method == "POST" and params.get("confirm") == "yes":
        # Only our own confirmation form counts as the user's decision.
        if not csrf.verify(request, settings, params.get("csrf_token")):
            with runtime.sessions.begin() as db:
                record(db, AuditEvent.CSRF_REJECTED, ip=client_ip(request), path="/logout")
            return templates.error(request, "This form expired", "Try signing out again.", 403)
        confirmed = True
    forwarded = params.without("csrf_token", "confirm")
    response = await run_in_threadpool(
        end_session, runtime, templates, request, Params(forwarded), confirmed
    )
    # Logout tokens queued by the session's end leave now, from the worker's delivery pool.
    response.background = BackgroundTask(request.app.state.worker.kick)
    return response
