"""/login/factor and /login/enrol: the second step of a sign-in.

After a correct password the interaction records the PASSWORD step and no session exists yet;
this page asks for the second factor and only then starts the session (amr pwd otp mfa, acr
aal2). A session that is signed in but not strongly enough for a request (a step-up) is raised
in place: its amr gains the factor, its acr and auth_time move.

A code is checked in the same write transaction that reserves its throttle slot (a TOTP check
is a few microseconds of HMAC, no KDF), so the verdict, the replay guard's step and the count of
wrong answers commit together. Five wrong answers end the interaction.

An account the policy requires to use two factors (an admin, a client that requires MFA) and
that has none sets up an authenticator app here before the sign-in goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response

from idp import deps
from idp.audit.events import AuditEvent, record
from idp.authn import mfa, sessions, throttle, webauthn
from idp.authn.throttle import Throttled
from idp.authn.webauthn import WebAuthnRefused
from idp.errors import N_, PageError
from idp.protocol import interaction
from idp.protocol.authorization import Browser
from idp.protocol.interaction import Pending
from idp.protocol.requests import Params
from idp.runtime import Runtime
from idp.security import cookies, devices
from idp.settings import Settings
from idp.store import interactions, sessions as session_store, users, webauthn as credentials
from idp.store.interactions import LOGIN, PASSWORD
from idp.store.sessions import BrowserSession
from idp.store.users import User
from idp.web import forms
from idp.web.login import THROTTLED, sign_in, signed_in_response
from idp.web.templating import Templates

router = APIRouter()

WRONG_CODE = N_("That code is not right. Try again.")
TOO_MANY = (
    N_("Too many wrong codes"),
    N_("This sign-in has ended. Go back to the application and sign in again."),
)
NOT_STARTED = (N_("Sign in first"), N_("Go back to the application and sign in again."))
NEEDS_PASSKEY = (
    N_("A passkey is needed"),
    N_("The application asks for a sign-in with a passkey or security key."),
)
TOTP = "totp"
RECOVERY = "recovery"
PASSKEY = "passkey"
AMR = {TOTP: [mfa.PWD, mfa.OTP, mfa.MFA], RECOVERY: [mfa.PWD, mfa.MFA]}
PASSKEY_FAILED = N_("The passkey or security key did not sign you in. Try again.")


def totp_issuer(settings: Settings) -> str:
    """The name authenticator apps show beside the code."""
    return settings.display_name or urlsplit(settings.issuer).hostname or settings.issuer


@dataclass(frozen=True)
class Step:
    """Whose second factor this interaction asks for, and what it must reach."""

    pending: Pending
    user: User
    # The browser's session being raised (a step-up); None: a new sign-in after the password.
    session: BrowserSession | None
    needed: mfa.Requirement
    factors: mfa.Factors


def _step(db: Session, runtime: Runtime, interaction_id: str | None, browser: Browser) -> Step:
    it = interaction.pending(db, interaction_id, browser)
    row = it.row
    user = users.get(db, row.user_id) if row.user_id else None
    if user is None or user.disabled:
        raise PageError(*NOT_STARTED)
    session = sessions.current(db, browser.session_cookie, runtime.settings, touch=False)
    counts = session is not None and session.user_id == user.id
    if not (counts and (LOGIN in row.steps or not row.login_required)):
        session = None
        if PASSWORD not in row.steps:
            raise PageError(*NOT_STARTED)  # no password checked, no session to raise
    needed = mfa.requirement(db, user, it.client, it.params.get("acr_values"))
    return Step(it, user, session, needed, needed.factors)


def _too_many_wrong(db: Session, step: Step, interaction_id: str, browser: Browser) -> bool:
    """Count one wrong answer; the fifth ends the interaction (true: it has ended)."""
    if interactions.factor_failed(db, step.pending.row) < mfa.MAX_FACTOR_FAILURES:
        return False
    interactions.complete(db, interaction_id, browser.binding)
    return True


def _resume_url(interaction_id: str) -> str:
    return "/authorize/resume?" + urlencode({"interaction": interaction_id})


def _page(
    request: Request,
    pages: Templates,
    db: Session,
    runtime: Runtime,
    step: Step,
    interaction_id: str,
    method: str,
    error: str | None = None,
    status: int = 200,
    wait: int | None = None,
) -> Response:
    """The second-factor page. A user with passkeys gets a fresh challenge (stored in the
    interaction, single use) for the passkey button; a phr request offers only that."""
    passkey_options = None
    if step.factors.passkeys:
        passkey_options = _passkey_options(db, runtime, step)
    codes = step.needed.acr != mfa.PHR
    return pages.render(
        request,
        "login/factor.html",
        {
            "interaction": interaction_id,
            "method": method,
            "totp": codes and step.factors.totp,
            "recovery_codes": codes and step.factors.recovery_codes > 0,
            "passkey_options": passkey_options,
            "error": error,
            "wait": wait,
            "client_name": step.pending.client.name if step.pending.client else None,
        },
        status=status,
        form_action_origins=step.pending.origins,
        ui_locales=step.pending.params.get("ui_locales"),
        scripts=passkey_options is not None,
    )


def _passkey_options(db: Session, runtime: Runtime, step: Step) -> str:
    options, challenge = webauthn.authentication_options(
        runtime.settings, credentials.of_user(db, step.user.id), "preferred"
    )
    credentials.put_interaction_challenge(db, step.pending.row, challenge)
    return options


def _method(value: str | None, step: Step) -> str:
    if value == PASSKEY and step.factors.passkeys:
        return PASSKEY
    if step.needed.acr == mfa.PHR:
        return PASSKEY
    if value == RECOVERY and step.factors.recovery_codes > 0:
        return RECOVERY
    if step.factors.totp:
        return TOTP
    return PASSKEY if step.factors.passkeys else RECOVERY


@router.get("/login/factor", include_in_schema=False)
def factor_form(
    request: Request, runtime: deps.Rt, pages: deps.Pages, browser: deps.Browser, db: deps.Db
) -> Response:
    interaction_id = request.query_params.get("interaction") or ""
    step = _step(db, runtime, interaction_id, browser)
    if not step.factors.any:
        if step.needed.by_policy:
            query = urlencode({"interaction": interaction_id})
            return RedirectResponse(f"/login/enrol?{query}", status_code=302)
        return RedirectResponse(_resume_url(interaction_id), status_code=302)
    if not step.factors.can_reach(step.needed.acr):
        raise PageError(*NEEDS_PASSKEY)
    method = _method(request.query_params.get("method"), step)
    return _page(request, pages, db, runtime, step, interaction_id, method)


@router.post("/login/factor", include_in_schema=False)
def factor_submit(
    request: Request,
    form: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
    db: deps.Db,
) -> Response:
    interaction_id = form.get("interaction") or ""
    if expired := forms.refused(
        request, form, runtime, pages, browser, db, N_("Go back and enter the code again.")
    ):
        return expired
    settings = runtime.settings
    step = _step(db, runtime, interaction_id, browser)
    if not step.factors.can_reach(step.needed.acr):
        raise PageError(*NEEDS_PASSKEY)
    method = _method(form.get("method"), step)
    if method == PASSKEY:
        return _passkey_answer(request, form, runtime, pages, browser, db, step, interaction_id)
    user = step.user
    device = devices.read(runtime.device_key, cookies.read(request, settings, cookies.DEVICE))
    known = device.id if device and device.knows(user.id) else None
    # The same budgets as the password: a second factor is guessed no faster than a password.
    attempt = throttle.sign_in_attempt(settings, user.email, browser.ip, known)
    try:
        throttle.reserve(db, settings, attempt)
    except Throttled as refused:
        response = _page(
            request,
            pages,
            db,
            runtime,
            step,
            interaction_id,
            method,
            THROTTLED,
            429,
            refused.retry_after,
        )
        response.headers["Retry-After"] = str(refused.retry_after)
        return response
    code = (form.get("code") or "")[:64]
    if method == RECOVERY:
        ok = mfa.use_recovery_code(db, user.id, code, browser.ip)
    else:
        ok = mfa.check_totp(db, runtime.sealer, user.id, code)
    if not ok:
        throttle.failed(db, settings, attempt, browser.ip, user.id)
        record(db, AuditEvent.MFA_FAILED, ip=browser.ip, user_id=user.id, factor=method)
        if _too_many_wrong(db, step, interaction_id, browser):
            return pages.error(request, *TOO_MANY, 400)
        return _page(request, pages, db, runtime, step, interaction_id, method, WRONG_CODE, 400)
    throttle.succeeded(db, attempt)
    cookie = _signed_in(db, runtime, step, AMR[method], mfa.AAL2, browser, interaction_id)
    return signed_in_response(runtime, browser, device, user.id, cookie, interaction_id)


def _passkey_answer(
    request: Request,
    form: Params,
    runtime: Runtime,
    pages: Templates,
    browser: Browser,
    db: Session,
    step: Step,
    interaction_id: str,
) -> Response:
    """A passkey or security key as the second factor: the interaction's challenge is taken
    (once), the assertion must be by one of this user's credentials; user verification is
    preferred, not required (the password was the first factor)."""
    user = step.user
    challenge = credentials.take_interaction_challenge(db, step.pending.row.id_hash)
    try:
        done = webauthn.verify_authentication(
            db, runtime.settings, (form.get("credential") or "")[:65536], challenge, False, user.id
        )
    except WebAuthnRefused as refused:
        # A counter regression was recorded in this transaction: answered, not raised, so the
        # record commits.
        record(db, AuditEvent.MFA_FAILED, ip=browser.ip, user_id=user.id, factor=PASSKEY)
        record(db, AuditEvent.WEBAUTHN_FAILED, ip=browser.ip, user_id=user.id, why=refused.kind)
        if _too_many_wrong(db, step, interaction_id, browser):
            return pages.error(request, *TOO_MANY, 400)
        return _page(
            request, pages, db, runtime, step, interaction_id, PASSKEY, PASSKEY_FAILED, 400
        )
    amr = list(dict.fromkeys([mfa.PWD, *webauthn.amr_for(done.credential, done.user_verified)]))
    if mfa.MFA not in amr:
        amr.append(mfa.MFA)  # the password and the key: two factors
    cookie = _signed_in(db, runtime, step, amr, mfa.PHR, browser, interaction_id)
    device = devices.read(
        runtime.device_key, cookies.read(request, runtime.settings, cookies.DEVICE)
    )
    return signed_in_response(runtime, browser, device, user.id, cookie, interaction_id)


def _signed_in(
    db: Session,
    runtime: Runtime,
    step: Step,
    amr: list[str],
    acr: str,
    browser: Browser,
    interaction_id: str,
) -> str | None:
    """A new session after the password, or the browser's session raised (a step-up); the
    interaction's sign-in is done either way. Returns the new session's cookie, if any."""
    if step.session is None:
        return sign_in(db, runtime, step.user.id, amr, acr, browser, interaction_id)
    # Raised, never lowered: a phr session answering a TOTP request keeps phr.
    stronger = acr if mfa.rank(acr) >= mfa.rank(step.session.acr) else step.session.acr
    session_store.step_up(db, step.session, amr[1:], stronger)  # its password was checked
    record(
        db,
        AuditEvent.LOGIN_SUCCEEDED,
        ip=browser.ip,
        user_id=step.user.id,
        step_up=True,
        amr=" ".join(amr),
    )
    interaction.logged_in(db, interaction_id, browser, step.user.id)
    return None


# --- enrolment during sign-in ------------------------------------------------------------------


def _enrol_step(db: Session, runtime: Runtime, interaction_id: str, browser: Browser) -> Step:
    step = _step(db, runtime, interaction_id, browser)
    if step.factors.any or not step.needed.by_policy:
        raise PageError(N_("Nothing to set up"), N_("Go back to the application."))
    return step


def _enrol_page(
    request: Request,
    pages: Templates,
    step: Step,
    interaction_id: str,
    enrolment: mfa.Enrolment,
    error: str | None = None,
    status: int = 200,
) -> Response:
    return pages.render(
        request,
        "login/enrol.html",
        {"interaction": interaction_id, "enrolment": enrolment, "error": error},
        status=status,
        form_action_origins=step.pending.origins,
        ui_locales=step.pending.params.get("ui_locales"),
    )


@router.get("/login/enrol", include_in_schema=False)
def enrol_form(
    request: Request, runtime: deps.Rt, pages: deps.Pages, browser: deps.Browser, db: deps.Db
) -> Response:
    interaction_id = request.query_params.get("interaction") or ""
    step = _enrol_step(db, runtime, interaction_id, browser)
    issuer = totp_issuer(runtime.settings)
    enrolment = mfa.pending_totp(db, runtime.sealer, step.user, issuer) or mfa.start_totp(
        db, runtime.sealer, step.user, issuer
    )
    return _enrol_page(request, pages, step, interaction_id, enrolment)


@router.post("/login/enrol", include_in_schema=False)
def enrol_submit(
    request: Request,
    form: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
    db: deps.Db,
) -> Response:
    interaction_id = form.get("interaction") or ""
    if expired := forms.refused(
        request, form, runtime, pages, browser, db, N_("Go back and enter the code again.")
    ):
        return expired
    step = _enrol_step(db, runtime, interaction_id, browser)
    user = step.user
    issuer = totp_issuer(runtime.settings)
    enrolment = mfa.pending_totp(db, runtime.sealer, user, issuer)
    if enrolment is None:
        return RedirectResponse(f"/login/enrol?{urlencode({'interaction': interaction_id})}", 303)
    if not mfa.confirm_totp(db, runtime.sealer, user, (form.get("code") or "")[:64], browser.ip):
        record(db, AuditEvent.MFA_FAILED, ip=browser.ip, user_id=user.id, factor="enrolment")
        if _too_many_wrong(db, step, interaction_id, browser):
            return pages.error(request, *TOO_MANY, 400)
        return _enrol_page(request, pages, step, interaction_id, enrolment, WRONG_CODE, 400)
    codes = mfa.new_recovery_codes(db, user.id, browser.ip)
    cookie = _signed_in(db, runtime, step, AMR[TOTP], mfa.AAL2, browser, interaction_id)
    device = devices.read(
        runtime.device_key, cookies.read(request, runtime.settings, cookies.DEVICE)
    )
    # The codes are shown once, on this response; "Continue" goes on with the sign-in.
    response = pages.render(
        request,
        "mfa/recovery_codes.html",
        {"codes": codes, "continue_url": _resume_url(interaction_id)},
    )
    redirect = signed_in_response(runtime, browser, device, user.id, cookie, interaction_id)
    for name, value in redirect.headers.items():
        if name == "set-cookie":
            response.headers.append(name, value)
    return response
