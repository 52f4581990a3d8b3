"""/account: the signed-in person's own account: who they are, how this session signed in,
and signing out everywhere. (Second factors are added here by the MFA pages.)"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.background import BackgroundTask
from starlette.responses import RedirectResponse, Response

from idp import deps
from idp.authn import sessions
from idp.errors import N_
from idp.protocol import interaction
from idp.protocol.endpoints.authorize import respond
from idp.security import cookies, csrf
from idp.store import sessions as session_store, users
from idp.web import forms
from idp.web.home import notice

router = APIRouter()

# How a session signed in (RFC 8176 amr values), in words.
METHODS = {
    "pwd": N_("Password"),
    "otp": N_("One-time code"),
    "hwk": N_("Security key"),
    "swk": N_("Passkey"),
    "user": N_("Passkey"),
    "mfa": N_("Two factors"),
}


@router.get("/account", include_in_schema=False)
def account_page(
    request: Request, runtime: deps.Rt, pages: deps.Pages, browser: deps.Browser
) -> Response:
    settings = runtime.settings
    with deps.read_transaction(runtime) as db:
        session = sessions.current(db, browser.session_cookie, settings, touch=False)
        user = users.get(db, session.user_id) if session else None
        count = (
            session_store.live_count(db, user.id, settings.session_idle_timeout_seconds)
            if user
            else 0
        )
    if session is None or user is None:
        # Sign in first, then come back here (an interaction of the IdP's own).
        with deps.transaction(runtime) as db:
            step = interaction.start_own(db, browser, "/account")
        return respond(step, runtime, browser, 302)
    return pages.render(
        request,
        "account/index.html",
        {
            "user": user,
            "session": session,
            "methods": [METHODS.get(m, m) for m in session.amr],
            "session_count": count,
            "notice": notice(request),
        },
    )


@router.post("/account/sign-out-everywhere", include_in_schema=False)
def sign_out_everywhere(
    request: Request,
    form: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
    db: deps.Db,
) -> Response:
    settings = runtime.settings
    next_step = N_("Go back to your account and try again.")
    if expired := forms.refused(request, form, runtime, pages, browser, db, next_step):
        return expired
    session = sessions.current(db, browser.session_cookie, settings)
    if session is None:
        return RedirectResponse("/", status_code=303)
    sessions.end_all(db, session.user_id)
    response = RedirectResponse("/?notice=signed_out_everywhere", status_code=303)
    cookies.clear(response, settings, cookies.SESSION)
    csrf.rotate(response, settings)
    response.background = BackgroundTask(request.app.state.worker.kick)  # the logout tokens
    return response
