"""POST /consent: the user's answer to the consent page; the request is validated again."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from idp import deps
from idp.audit.events import AuditEvent, record
from idp.protocol.authorization import AuthorizationContext, authorize
from idp.protocol.requests import BadParameters, client_ip, parse, read_form
from idp.security import csrf

router = APIRouter()


@router.post("/consent", include_in_schema=False)
async def consent_submit(request: Request) -> Response:
    runtime, templates = deps.get_runtime(request), deps.get_templates(request)
    settings = runtime.settings
    try:
        form = await read_form(request, settings.max_body_bytes, settings.max_param_bytes * 8)
        original = parse(form.get("request") or "", settings.max_param_bytes)
    except BadParameters as exc:
        return templates.error(request, "Invalid request", str(exc))

    if not csrf.verify(request, settings, form.get("csrf_token")):
        with runtime.sessions.begin() as db:
            record(db, AuditEvent.CSRF_REJECTED, ip=client_ip(request), path="/consent")
        return templates.error(
            request,
            "This form expired",
            "Go back to the application and sign in again.",
            status=403,
        )
    decision = form.get("decision")
    if decision not in ("allow", "deny"):
        return templates.error(request, "Invalid request", "Choose Allow or Deny.")
    ctx = AuthorizationContext(runtime, templates, request, original, redirect_status=303)
    return await run_in_threadpool(authorize, ctx, decision)
