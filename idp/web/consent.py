"""/consent: what the application asks, and the person's answer, for one interaction.

GET shows the page for the interaction's validated request; POST records the answer and the
interaction goes on (to the code, or to access_denied for the relying party).
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response

from idp import deps
from idp.authn import sessions
from idp.errors import N_, PageError
from idp.protocol import interaction
from idp.protocol.authorization import Browser
from idp.protocol.endpoints.authorize import respond
from idp.protocol.requests import Params
from idp.runtime import Runtime
from idp.store import users
from idp.web import forms
from idp.web.templating import Templates

router = APIRouter()

# What each scope lets the application do, in plain words.
SCOPE_DESCRIPTIONS = {
    "openid": N_("Confirm who you are (your account identifier)"),
    "profile": N_("See your name"),
    "email": N_("See your email address and whether it is verified"),
    "offline_access": N_("Keep access while you are not signed in"),
    "roles": N_("See the roles you hold (what you may do in its services)"),
    "idp:admin": N_("Administer this sign-in service: its applications, users and keys"),
    "idp:admin.read": N_("See this sign-in service's applications, users, keys and audit trail"),
}
OTHER_SCOPE = N_("Access “%(scope)s”")


def describe(scope: str) -> tuple[str, dict[str, str]]:
    """A message id and its values, translated by the page."""
    if scope in SCOPE_DESCRIPTIONS:
        return SCOPE_DESCRIPTIONS[scope], {}
    return OTHER_SCOPE, {"scope": scope}


@router.get("/consent", include_in_schema=False)
async def consent_page(
    request: Request, runtime: deps.Rt, pages: deps.Pages, browser: deps.Browser
) -> Response:
    return await deps.in_read_transaction(
        runtime, lambda db: _consent_page(request, runtime, pages, browser, db)
    )


def _consent_page(
    request: Request, runtime: Runtime, pages: Templates, browser: Browser, db: Session
) -> Response:
    interaction_id = request.query_params.get("interaction")
    pending = interaction.pending(db, interaction_id, browser)
    if pending.client is None:
        raise PageError(N_("Invalid request"), N_("Nothing here needs your consent."))
    session = sessions.read_current(db, browser.session_cookie, runtime.settings, touch=False)
    user = users.read(db, session.user_id) if session else None
    if user is None:
        # Signed out in another tab meanwhile: sign in again, within the same interaction.
        query = urlencode({"interaction": interaction_id or ""})
        return RedirectResponse(f"/login?{query}", status_code=302)
    return pages.render(
        request,
        "consent/ask.html",
        {
            "client": pending.client,
            # The application's own site, as it registered it; else where it sends people.
            "client_domain": urlsplit(pending.client.client_uri or pending.redirect_uri).netloc,
            "user_email": user.email,
            "scopes": [describe(s) for s in pending.scopes],
            "interaction": interaction_id,
            "redirect_host": urlsplit(pending.redirect_uri).netloc,
        },
        ui_locales=pending.params.get("ui_locales"),
        # Chromium applies form-action to the redirect after the POST, to the relying party.
        form_action_origins=pending.origins,
    )


@router.post("/consent", include_in_schema=False)
async def consent_submit(
    request: Request,
    form: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
) -> Response:
    return await deps.in_transaction(
        runtime, lambda db: _consent_submit(request, form, runtime, pages, browser, db)
    )


def _consent_submit(
    request: Request,
    form: Params,
    runtime: Runtime,
    pages: Templates,
    browser: Browser,
    db: Session,
) -> Response:
    next_step = N_("Go back to the application and sign in again.")
    if expired := forms.refused(request, form, runtime, pages, browser, db, next_step):
        return expired
    decision = form.get("decision")
    if decision not in ("allow", "deny"):
        raise PageError(N_("Invalid request"), N_("Choose Allow or Deny."))
    outcome = interaction.decide(
        db, runtime, form.get("interaction"), browser, allow=decision == "allow"
    )
    return respond(outcome, runtime, browser, 303)
