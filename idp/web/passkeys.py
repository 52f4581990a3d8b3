"""Passkeys and security keys (WebAuthn) in pages: registering and removing them at
/account/mfa/passkey, and signing in without a password at /login/passkey.

Every challenge is stored server-side, single use, for five minutes: in the session row for a
registration, in the interaction row for a sign-in. The browser side is /static/webauthn.js;
without JavaScript these buttons stay hidden, and password and codes still work.

A passwordless sign-in needs user verification (a PIN or biometric on the key): the key and
its unlocking are then two factors, so it reaches acr `phr` and satisfies every policy.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response

from idp import deps
from idp.audit.events import AuditEvent, record
from idp.authn import mfa, webauthn
from idp.authn.webauthn import WebAuthnRefused
from idp.errors import N_, PageError
from idp.protocol import interaction
from idp.runtime import Runtime
from idp.security import cookies, devices
from idp.store import users, webauthn as credentials
from idp.web import forms, reauth
from idp.web.login import sign_in, signed_in_response
from idp.web.mfa_account import KEEP_ONE, PAGE, fresh_or_refused, new_codes_page
from idp.web.templating import Templates

router = APIRouter()

MAX_CREDENTIAL_JSON = 65536
NOT_ADDED = N_("The passkey or security key was not added. Try again.")
NOT_SIGNED_IN = N_("The passkey did not sign you in. Try again, or use your password.")
AGAIN = N_("Go back and try again.")


def _register_page(
    request: Request,
    pages: Templates,
    db: Session,
    runtime: Runtime,
    who: reauth.SignedIn,
    error: str | None = None,
    status: int = 200,
) -> Response:
    options, challenge = webauthn.registration_options(
        runtime.settings, who.user, credentials.of_user(db, who.user.id)
    )
    credentials.put_session_challenge(db, who.session.id_hash, challenge)
    return pages.render(
        request,
        "account/passkey.html",
        {"options": options, "error": error},
        status=status,
        scripts=True,
    )


@router.get(f"{PAGE}/passkey", include_in_schema=False)
def passkey_form(
    request: Request, runtime: deps.Rt, pages: deps.Pages, browser: deps.Browser
) -> Response:
    who = reauth.page_signed_in(runtime, browser, f"{PAGE}/passkey", fresh=True)
    if isinstance(who, Response):
        return who
    with deps.transaction(runtime) as db:
        return _register_page(request, pages, db, runtime, who)


@router.post(f"{PAGE}/passkey", include_in_schema=False)
def passkey_add(
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
    challenge = credentials.take_session_challenge(db, who.session.id_hash)
    first = not mfa.factors_of(db, who.user.id).any
    try:
        webauthn.register(
            db,
            runtime.settings,
            who.user,
            (form.get("name") or "")[:200],
            (form.get("credential") or "")[:MAX_CREDENTIAL_JSON],
            challenge,
        )
    except WebAuthnRefused as refused:
        record(db, AuditEvent.WEBAUTHN_FAILED, ip=browser.ip, user_id=who.user.id, why=refused.kind)
        return _register_page(request, pages, db, runtime, who, NOT_ADDED, 400)
    if first or not mfa.factors_of(db, who.user.id).recovery_codes:
        return new_codes_page(request, pages, db, who.user.id, browser.ip)
    return RedirectResponse(f"{PAGE}?notice=passkey_added", status_code=303)


@router.post(f"{PAGE}/passkey/remove", include_in_schema=False)
def passkey_remove(
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
    credential_id = (form.get("id") or "")[:36]
    if credentials.get(db, who.user.id, credential_id) is None:
        raise PageError(
            N_("Not found"), N_("This passkey is not registered for your account."), 404
        )
    factors = mfa.factors_of(db, who.user.id)
    last = factors.passkeys == 1 and not factors.totp
    if last and mfa.must_use_mfa(db, who.user, None):
        return pages.error(request, *KEEP_ONE, 409)
    webauthn.remove(db, who.user, credential_id)
    if last:
        mfa.forget_recovery_codes(db, who.user.id)
    return RedirectResponse(f"{PAGE}?notice=passkey_removed", status_code=303)


# --- signing in with a passkey -----------------------------------------------------------------


def _sign_in_page(
    request: Request,
    pages: Templates,
    runtime: Runtime,
    db: Session,
    interaction_id: str,
    pending: interaction.Pending,
    error: str | None = None,
    status: int = 200,
) -> Response:
    # Any discoverable credential of this site: nobody is identified yet (WebAuthn L3 §5.5).
    options, challenge = webauthn.authentication_options(runtime.settings, None, "required")
    credentials.put_interaction_challenge(db, pending.row, challenge)
    return pages.render(
        request,
        "login/passkey.html",
        {"interaction": interaction_id, "options": options, "error": error},
        status=status,
        form_action_origins=pending.origins,
        ui_locales=pending.params.get("ui_locales"),
        scripts=True,
    )


@router.post("/login/passkey", include_in_schema=False)
def passkey_start(
    request: Request,
    form: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
    db: deps.Db,
) -> Response:
    """The login page's "Sign in with a passkey": a challenge in the interaction (one of the
    IdP's own when the sign-in has none), and the page that asks the browser for the key."""
    if expired := forms.refused(request, form, runtime, pages, browser, db, AGAIN):
        return expired
    interaction_id = form.get("interaction") or ""
    if not interaction_id:
        interaction_id = interaction.start_own(db, browser, "/", login_required=True).interaction_id
    pending = interaction.pending(db, interaction_id, browser)
    response = _sign_in_page(request, pages, runtime, db, interaction_id, pending)
    deps.bind_browser(response, runtime, browser)
    return response


@router.post("/login/passkey/finish", include_in_schema=False)
def passkey_finish(
    request: Request,
    form: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
    db: deps.Db,
) -> Response:
    """The browser's answer: the interaction's challenge is taken (once); the credential names
    its user (the user handle must agree), and user verification is required."""
    if expired := forms.refused(request, form, runtime, pages, browser, db, AGAIN):
        return expired
    interaction_id = form.get("interaction") or ""
    pending = interaction.pending(db, interaction_id, browser)
    challenge = credentials.take_interaction_challenge(db, pending.row.id_hash)
    answer = (form.get("credential") or "")[:MAX_CREDENTIAL_JSON]
    try:
        done = webauthn.verify_authentication(db, runtime.settings, answer, challenge, True, None)
    except WebAuthnRefused as refused:
        # Answered, not raised: a counter regression recorded in this transaction commits.
        record(db, AuditEvent.WEBAUTHN_FAILED, ip=browser.ip, why=refused.kind)
        return _sign_in_page(
            request, pages, runtime, db, interaction_id, pending, NOT_SIGNED_IN, 400
        )
    user = users.get(db, done.credential.user_id)
    if user is None or user.disabled:
        record(
            db,
            AuditEvent.LOGIN_FAILED,
            ip=browser.ip,
            user_id=done.credential.user_id,
            reason="disabled",
        )
        return _sign_in_page(
            request, pages, runtime, db, interaction_id, pending, NOT_SIGNED_IN, 400
        )
    amr = webauthn.amr_for(done.credential, done.user_verified)
    cookie = sign_in(db, runtime, user.id, amr, mfa.PHR, browser, interaction_id)
    device = devices.read(
        runtime.device_key, cookies.read(request, runtime.settings, cookies.DEVICE)
    )
    return signed_in_response(runtime, browser, device, user.id, cookie, interaction_id)
