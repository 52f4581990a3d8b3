"""/ : who is signed in and which applications may use their account, with a way to take that
access back (POST /apps/revoke)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from idp import deps
from idp.errors import N_
from idp.protocol import access
from idp.security import cookies
from idp.store import sessions, users
from idp.web import forms

router = APIRouter()

# Notices a redirect back to a page may ask for: a fixed set, so nothing a link carries is
# ever shown as text.
NOTICES = {
    "revoked": N_("Access removed. The application must ask you again to use your account."),
    "signed_out_everywhere": N_("You were signed out everywhere."),
}


def notice(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("notice", ""))


@router.get("/", include_in_schema=False)
def home(request: Request, runtime: deps.Rt, pages: deps.Pages, db: deps.ReadDb) -> Response:
    settings = runtime.settings
    session = sessions.current(
        db,
        cookies.read(request, settings, cookies.SESSION),
        settings.session_idle_timeout_seconds,
        touch=False,  # a read-only look: the page does not keep the session alive
    )
    user = users.get(db, session.user_id) if session else None
    apps = access.granted_apps(db, user.id) if user else []
    return pages.render(
        request, "home/index.html", {"user": user, "apps": apps, "notice": notice(request)}
    )


@router.post("/apps/revoke", include_in_schema=False)
def revoke_app(
    request: Request,
    form: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
    db: deps.Db,
) -> Response:
    next_step = N_("Go back to the home page and try again.")
    if expired := forms.refused(request, form, runtime, pages, browser, db, next_step):
        return expired
    session = sessions.current(
        db, browser.session_cookie, runtime.settings.session_idle_timeout_seconds
    )
    if session is None:  # signed out meanwhile: the home page offers to sign in
        return RedirectResponse("/", status_code=303)
    client_id = form.get("client_id") or ""
    if len(client_id) > 64 or not access.withdraw(db, session.user_id, client_id, browser.ip):
        return pages.error(
            request,
            N_("Nothing to remove"),
            N_("This application has no access to your account."),
            404,
        )
    return RedirectResponse("/?notice=revoked", status_code=303)
