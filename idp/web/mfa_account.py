"""/account/mfa: the person's own second factors: an authenticator app (TOTP) and recovery
codes. Adding or removing a factor, and new recovery codes, need a fresh sign-in (web.reauth).

Once a user has a confirmed factor, every sign-in asks for one. An account the policy requires
to use two factors (an admin) cannot remove its last one.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response

from idp import deps
from idp.authn import mfa
from idp.errors import N_
from idp.protocol.authorization import Browser
from idp.protocol.requests import Params
from idp.runtime import Runtime
from idp.store import webauthn as credentials
from idp.web import forms, reauth
from idp.web.reauth import SignedIn
from idp.web.second_factor import totp_issuer
from idp.web.templating import Templates

router = APIRouter()

PAGE = "/account/mfa"
NOTICES = {
    "totp_added": N_("Your authenticator app is set up. Every sign-in now asks for a code."),
    "totp_removed": N_("Your authenticator app was removed."),
    "passkey_added": N_("Your passkey was added."),
    "passkey_removed": N_("The passkey was removed."),
}
AGAIN = N_("Go back to your account and try again.")
WRONG_CODE = N_("That code is not right. Check the app and try again.")
KEEP_ONE = (
    N_("A second factor is required"),
    N_("Your account must use two-step verification: add another factor before removing this one."),
)
NONE_YET = (
    N_("No second factor yet"),
    N_("Recovery codes stand in for a second factor: set one up first."),
)


@router.get(PAGE, include_in_schema=False)
def mfa_page(
    request: Request, runtime: deps.Rt, pages: deps.Pages, browser: deps.Browser
) -> Response:
    who = reauth.page_signed_in(runtime, browser, PAGE)
    if isinstance(who, Response):
        return who
    with deps.read_transaction(runtime) as db:
        factors = mfa.factors_of(db, who.user.id)
        required = mfa.must_use_mfa(db, who.user, None)
        passkeys = credentials.of_user(db, who.user.id)
    return pages.render(
        request,
        "account/mfa.html",
        {
            "factors": factors,
            "required": required,
            "passkeys": passkeys,
            "notice": NOTICES.get(request.query_params.get("notice", "")),
        },
    )


def new_codes_page(
    request: Request, pages: Templates, db: Session, user_id: str, ip: str | None
) -> Response:
    """A new set of recovery codes (the old set void), shown this once, then back here."""
    codes = mfa.new_recovery_codes(db, user_id, ip)
    return pages.render(request, "mfa/recovery_codes.html", {"codes": codes, "continue_url": PAGE})


def _totp_page(
    request: Request,
    pages: Templates,
    enrolment: mfa.Enrolment,
    error: str | None = None,
    status: int = 200,
) -> Response:
    context = {"enrolment": enrolment, "error": error}
    return pages.render(request, "account/totp.html", context, status=status)


@router.get(f"{PAGE}/totp", include_in_schema=False)
def totp_form(
    request: Request, runtime: deps.Rt, pages: deps.Pages, browser: deps.Browser
) -> Response:
    who = reauth.page_signed_in(runtime, browser, f"{PAGE}/totp", fresh=True)
    if isinstance(who, Response):
        return who
    issuer = totp_issuer(runtime.settings)
    with deps.transaction(runtime) as db:
        if mfa.factors_of(db, who.user.id).totp:
            return RedirectResponse(PAGE, status_code=302)
        enrolment = mfa.pending_totp(db, runtime.sealer, who.user, issuer) or mfa.start_totp(
            db, runtime.sealer, who.user, issuer
        )
    return _totp_page(request, pages, enrolment)


def fresh_or_refused(
    request: Request,
    form: Params,
    runtime: Runtime,
    pages: Templates,
    browser: Browser,
    db: Session,
) -> SignedIn | Response:
    """A form POST's checks: its CSRF token, then a fresh sign-in (else sign in again and come
    back to the page: the POST is not replayed)."""
    if expired := forms.refused(request, form, runtime, pages, browser, db, AGAIN):
        return expired
    who = reauth.signed_in(runtime, db, browser)
    if who is None or not who.fresh:
        return reauth.sign_in_first(runtime, browser, PAGE, 303, db)
    return who


@router.post(f"{PAGE}/totp", include_in_schema=False)
def totp_confirm(
    request: Request,
    form: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
    db: deps.Db,
) -> Response:
    who = fresh_or_refused(request, form, runtime, pages, browser, db)
    if isinstance(who, Response):
        return who
    enrolment = mfa.pending_totp(db, runtime.sealer, who.user, totp_issuer(runtime.settings))
    if enrolment is None:
        return RedirectResponse(PAGE, status_code=303)
    code = (form.get("code") or "")[:64]
    if not mfa.confirm_totp(db, runtime.sealer, who.user, code, browser.ip):
        return _totp_page(request, pages, enrolment, WRONG_CODE, 400)
    if mfa.factors_of(db, who.user.id).recovery_codes:
        return RedirectResponse(f"{PAGE}?notice=totp_added", status_code=303)
    return new_codes_page(request, pages, db, who.user.id, browser.ip)


@router.post(f"{PAGE}/totp/remove", include_in_schema=False)
def totp_remove(
    request: Request,
    form: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
    db: deps.Db,
) -> Response:
    who = fresh_or_refused(request, form, runtime, pages, browser, db)
    if isinstance(who, Response):
        return who
    factors = mfa.factors_of(db, who.user.id)
    if mfa.must_use_mfa(db, who.user, None) and factors.passkeys == 0:
        return pages.error(request, *KEEP_ONE, 409)
    mfa.remove_totp(db, who.user.id, browser.ip)
    return RedirectResponse(f"{PAGE}?notice=totp_removed", status_code=303)


@router.post(f"{PAGE}/recovery-codes", include_in_schema=False)
def recovery_codes(
    request: Request,
    form: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
    db: deps.Db,
) -> Response:
    who = fresh_or_refused(request, form, runtime, pages, browser, db)
    if isinstance(who, Response):
        return who
    if not mfa.factors_of(db, who.user.id).any:
        return pages.error(request, *NONE_YET, 409)
    return new_codes_page(request, pages, db, who.user.id, browser.ip)
