"""GET|POST /logout: the end_session_endpoint (OpenID Connect RP-Initiated Logout 1.0 §2).

A browser without a session only reads (a read-only transaction); one with a session signs out
in one write transaction. The logout tokens that queues leave from the worker's delivery pool
right after the response.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.background import BackgroundTask
from starlette.responses import RedirectResponse, Response

from idp import deps
from idp.audit.events import AuditEvent, record
from idp.errors import N_
from idp.protocol.logout import Confirm, end_session
from idp.protocol.requests import Params
from idp.security import cookies, csrf

router = APIRouter()


@router.api_route("/logout", methods=["GET", "POST"], include_in_schema=False)
def logout_endpoint(
    request: Request,
    params: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
) -> Response:
    settings = runtime.settings
    confirmed = request.method == "POST" and params.get("confirm") == "yes"
    # Only our own confirmation form counts as the user's decision.
    if confirmed and not csrf.verify(request, settings, runtime.csrf_key, params.get("csrf_token")):
        with deps.transaction(runtime) as db:
            record(db, AuditEvent.CSRF_REJECTED, ip=browser.ip, path="/logout")
        return pages.error(request, N_("This form expired"), N_("Try signing out again."), 403)
    forwarded = Params(params.without("csrf_token", "confirm"))
    unit = deps.transaction if browser.session_cookie else deps.read_transaction
    with unit(runtime) as db:
        decision = end_session(
            db, runtime, forwarded, browser.session_cookie, confirmed, browser.ip
        )
    if isinstance(decision, Confirm):
        return pages.render(
            request,
            "end_session/confirm.html",
            {
                "client_name": decision.client_name,
                "user_email": decision.user_email,
                "params": decision.forwarded,
            },
            form_action_origins=decision.form_action_origins,
        )
    response: Response
    if decision.location:
        response = RedirectResponse(decision.location, status_code=303 if confirmed else 302)
    else:
        response = pages.render(request, "end_session/done.html")
    cookies.clear(response, settings, cookies.SESSION)
    if decision.ended:
        csrf.rotate(response, settings)  # no form made in the ended session works after it
        response.background = BackgroundTask(request.app.state.worker.kick)
    return response
