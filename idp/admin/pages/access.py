"""Who may see an admin page: a live browser session of a user with the `admin` role, signed in
with a second factor (AAL2), with an admin cookie that has not gone idle; and, for a sensitive
action (secrets, roles, keys, deletions, disabling), a sign-in within the last ten minutes.

The admin cookie (`__Host-idp_admin`, SameSite=Strict) is signed and bound to the browser
session (a hash of the session cookie); its signature's timestamp is the last admin request,
and every admin response signs it again (a sliding idle timeout). Nothing is kept in the
process: any worker checks any cookie.

A GET that falls short sends the person through a sign-in of the IdP's own and back; a POST
whose sign-in went stale is refused with a page linking back (a POST cannot be replayed through
a redirect).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from idp import deps
from idp.authn import mfa
from idp.protocol.authorization import Browser
from idp.protocol.requests import Params
from idp.runtime import Runtime
from idp.security import cookies, csrf
from idp.security.secrets import derive_key, sha256_hex
from idp.settings import Settings
from idp.store import roles
from idp.store.base import now
from idp.store.users import User
from idp.web import forms, reauth
from idp.web.templating import Templates

ADMIN_COOKIE = "idp_admin"
# How recent a sign-in must be for a sensitive action.
ADMIN_FRESH_SECONDS = 600
_SALT = "idp admin cookie v1"


@dataclass(frozen=True)
class Admin:
    """The administrator behind this request."""

    user: User
    auth_time: int

    @property
    def actor(self) -> str:
        return f"user:{self.user.id}"

    @property
    def fresh(self) -> bool:
        return now() - self.auth_time <= ADMIN_FRESH_SECONDS


def _serializer(runtime: Runtime) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(derive_key(runtime.csrf_key, _SALT), salt=_SALT)


def _bound_to(browser: Browser) -> str:
    return sha256_hex(browser.session_cookie or "")


def cookie_live(
    request: Request, runtime: Runtime, browser: Browser, auth_time: int, required: bool = False
) -> bool:
    """The admin cookie is this session's and was used within the idle window; without one
    (or with another session's), the sign-in itself must be that recent, unless the cookie is
    `required` (a form: it was loaded from an admin page, which set it, and a SameSite=Strict
    cookie missing from a POST means the POST came from another site)."""
    idle = runtime.settings.admin_idle_seconds
    value = cookies.read(request, runtime.settings, ADMIN_COOKIE)
    if value:
        try:
            bound = _serializer(runtime).loads(value, max_age=idle)
        except SignatureExpired:
            return False
        except BadSignature:
            bound = None
        if bound == _bound_to(browser):
            return True
    return not required and now() - auth_time <= idle


def issue(response: Response, runtime: Runtime, browser: Browser) -> Response:
    """Sign the admin cookie again: the idle window starts over."""
    settings: Settings = runtime.settings
    response.set_cookie(
        cookies.name(settings, ADMIN_COOKIE),
        _serializer(runtime).dumps(_bound_to(browser)),
        path="/",
        secure=not settings.is_development,
        httponly=True,
        samesite="strict",
    )
    return response


def _check(
    request: Request,
    runtime: Runtime,
    pages: Templates,
    browser: Browser,
    cookie_required: bool = False,
) -> Admin | Response | None:
    """The admin, a 403 page for a person who is not one, or None: sign in (again) first."""
    with deps.read_transaction(runtime) as db:
        who = reauth.signed_in(runtime, db, browser)
        if who is None:
            return None
        is_admin = roles.holds(db, who.user.id, roles.ADMIN)
    if not is_admin:
        return pages.render(request, "admin/forbidden.html", status=403)
    if mfa.rank(who.session.acr) < mfa.rank(mfa.AAL2):
        return None  # the sign-in asks for the second factor: admins owe AAL2 by policy
    if not cookie_live(request, runtime, browser, who.session.auth_time, cookie_required):
        return None
    return Admin(who.user, who.session.auth_time)


def page(
    request: Request,
    runtime: Runtime,
    pages: Templates,
    browser: Browser,
    sensitive: bool = False,
) -> Admin | Response:
    """For a GET: the admin, or the way there (sign in first, then back to this page)."""
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    checked = _check(request, runtime, pages, browser)
    if isinstance(checked, Response):
        return checked
    if checked is None or (sensitive and not checked.fresh):
        return reauth.sign_in_first(runtime, browser, path)
    return checked


def form(
    request: Request,
    params: Params,
    runtime: Runtime,
    pages: Templates,
    browser: Browser,
    back: str,
    sensitive: bool = False,
) -> Admin | Response:
    """For a POST: its CSRF token, then the admin (a stale sign-in is refused with a page
    linking back to the form at `back`)."""
    if not csrf_ok(request, params, runtime):
        with deps.transaction(runtime) as db:
            refused = forms.refused(request, params, runtime, pages, browser, db, _BACK)
        assert refused is not None
        return refused
    checked = _check(request, runtime, pages, browser, cookie_required=True)
    if isinstance(checked, Response):
        return checked
    if checked is None:
        return reauth.sign_in_first(runtime, browser, back, 303)
    if sensitive and not checked.fresh:
        return pages.render(request, "admin/sign_in_again.html", {"path": back}, status=403)
    return checked


_BACK = "Go back to the admin pages and try again."


def csrf_ok(request: Request, params: Params, runtime: Runtime) -> bool:
    return csrf.verify(request, runtime.settings, runtime.csrf_key, params.get("csrf_token"))


def render(
    request: Request,
    runtime: Runtime,
    pages: Templates,
    browser: Browser,
    name: str,
    context: Mapping[str, object] | None = None,
    *,
    status: int = 200,
    scripts: bool = False,
) -> Response:
    """An admin page, with the admin cookie signed again."""
    response = pages.render(request, name, dict(context or {}), status=status, scripts=scripts)
    return issue(response, runtime, browser)


# What a page may confirm after a redirect (`?notice=`): a fixed word, never the link's own
# text, so a crafted link cannot put words of its choosing on an admin page.
NOTICES = frozenset(
    {
        "created", "updated", "deleted", "disabled", "enabled", "rotated", "revoked",
        "disable", "enable", "reset-mfa", "end-sessions", "grant-role", "revoke-role",
        "approved", "rejected", "approval-requested",
    }
)  # fmt: skip


def notice(request: Request) -> str | None:
    value = request.query_params.get("notice")
    return value if value in NOTICES else None


def redirect(runtime: Runtime, browser: Browser, location: str) -> Response:
    """After a form: 303 to a page (the admin cookie signed again)."""
    return issue(RedirectResponse(location, status_code=303), runtime, browser)
