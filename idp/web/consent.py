"""/consent: what the application asks, and the person's answer, for one interaction.

GET shows the page for the interaction's validated request; POST records the answer and the
interaction goes on (to the code, or to access_denied for the relying party).
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from idp import deps
from idp.audit.events import AuditEvent, record
from idp.authn import sessions
from idp.errors import PageError
from idp.protocol import interaction
from idp.protocol.claims import describe
from idp.protocol.endpoints.authorize import respond
from idp.security import csrf
from idp.store import users

router = APIRouter()


@router.get("/consent", include_in_schema=False)
def consent_page(
    request: Request, runtime: deps.Rt, pages: deps.Pages, browser: deps.Browser, db: deps.ReadDb
) -> Response:
    interaction_id = request.query_params.get("interaction")
    pending = interaction.pending(db, interaction_id, browser)
    if pending.client is None:
        raise PageError("Invalid request", "Nothing here needs your consent.")
    session = sessions.current(db, browser.session_cookie, runtime.settings, touch=False)
    user = users.get(db, session.user_id) if session else None
    if user is None:
        # Signed out in another tab meanwhile: sign in again, within the same interaction.
        query = urlencode({"interaction": interaction_id or ""})
        return RedirectResponse(f"/login?{query}", status_code=302)
    return pages.render(
        request,
        "consent/ask.html",
        {
            "client_name": pending.client.name,
            "user_email": user.email,
            "scopes": [describe(s) for s in pending.scopes],
            "interaction": interaction_id,
            "redirect_host": urlsplit(pending.redirect_uri).netloc,
        },
        # Chromium applies form-action to the redirect after the POST, to the relying party.
        form_action_origins=pending.origins,
    )


@router.post("/consent", include_in_schema=False)
def consent_submit(
    request: Request,
    form: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
    db: deps.Db,
) -> Response:
    if not csrf.verify(request, runtime.settings, runtime.csrf_key, form.get("csrf_token")):
        # Answered with a page, not raised: the audit event commits with the request.
        record(db, AuditEvent.CSRF_REJECTED, ip=browser.ip, path="/consent")
        return pages.error(
            request, "This form expired", "Go back to the application and sign in again.", 403
        )
    decision = form.get("decision")
    if decision not in ("allow", "deny"):
        raise PageError("Invalid request", "Choose Allow or Deny.")
    outcome = interaction.decide(
        db, runtime, form.get("interaction"), browser, allow=decision == "allow"
    )
    return respond(outcome, runtime, browser, 303)
