"""/login: email and password, then back to the interaction that sent the person here.

The page carries only the interaction id; what was asked stays on the server. Without an
interaction the person signs in to the IdP itself and lands on the home page.

The password check (argon2id, ~100 ms) runs outside any transaction: a SQLite write lock held
that long would stall every other writer. The request reads in one read-only transaction,
checks the password, then writes the new session in one short write transaction.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from idp import deps
from idp.audit.events import AuditEvent, record
from idp.authn import mfa, new_device, sessions, throttle
from idp.authn.passwords import PasswordsBusy, min_password_length, normalize
from idp.authn.throttle import Attempt, Throttled
from idp.errors import N_
from idp.protocol import interaction
from idp.protocol.authorization import Browser, Outcome
from idp.protocol.endpoints.authorize import respond
from idp.protocol.interaction import Pending
from idp.runtime import Runtime
from idp.security import cookies, csrf, devices
from idp.store import users
from idp.store.users import User
from idp.web.templating import Templates

router = APIRouter()

BAD_CREDENTIALS = N_("Incorrect email or password.")
FORM_EXPIRED = N_("This form expired. Please try again.")
BUSY = N_("Too many people are signing in right now. Wait a moment, then try again.")
# How long a sign-in waits for a throttle slot held by parallel attempts still being judged.
BUSY_WAIT_SECONDS = 2.0
BUSY_POLL_SECONDS = 0.05
THROTTLED = N_("Too many failed attempts. Wait %(wait)s, then try again.")


def _interaction(db: Session, interaction_id: str | None, browser: Browser) -> Pending | None:
    """The interaction this sign-in belongs to; an error page when the id is stale."""
    return interaction.pending(db, interaction_id, browser) if interaction_id else None


def _page(
    request: Request,
    pages: Templates,
    interaction_id: str | None,
    pending: Pending | None,
    email: str = "",
    error: str | None = None,
    status: int = 200,
    wait: int | None = None,
) -> Response:
    return pages.render(
        request,
        "login/password.html",
        {
            "interaction": interaction_id if pending else None,
            "email": email,
            "error": error,
            "wait": wait,
            "client_name": pending.client.name if pending and pending.client else None,
        },
        status=status,
        # Chromium applies form-action to every redirect after the POST: the last one goes to
        # the relying party's validated redirect_uri.
        form_action_origins=pending.origins if pending else [],
        ui_locales=pending.params.get("ui_locales") if pending else None,
        scripts=True,  # the passkey button (webauthn.js shows it where WebAuthn works)
    )


@router.get("/login", include_in_schema=False)
async def login_form(
    request: Request, runtime: deps.Rt, pages: deps.Pages, browser: deps.Browser
) -> Response:
    interaction_id = request.query_params.get("interaction")
    pending = await deps.in_read_transaction(
        runtime, lambda db: _interaction(db, interaction_id, browser)
    )
    hint = (pending.params.get("login_hint") if pending else None) or ""
    return _page(request, pages, interaction_id, pending, hint[:320])


@router.post("/login", include_in_schema=False)
async def login_submit(
    request: Request,
    form: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
) -> Response:
    # async: the database work runs in the shared pool, a few milliseconds each; the password
    # check is awaited on the event loop, so a flood of sign-ins holds none of those threads.
    interaction_id = form.get("interaction") or None
    email = (form.get("email") or "").strip()[:320]
    settings = runtime.settings
    if not csrf.verify(request, settings, runtime.csrf_key, form.get("csrf_token")):
        pending = await run_in_threadpool(_csrf_rejected, runtime, interaction_id, browser)
        return _page(request, pages, interaction_id, pending, email, FORM_EXPIRED, 403)
    device = devices.read(runtime.device_key, cookies.read(request, settings, cookies.DEVICE))
    waited = 0.0
    while True:
        pending, user, attempt, refused = await deps.in_transaction(
            runtime,
            lambda db: _look_up_and_reserve(db, runtime, interaction_id, email, browser, device),
        )
        if refused is None or not refused.busy or waited >= BUSY_WAIT_SECONDS:
            break
        # Every slot is held by an attempt still being judged (parallel sign-ins of one
        # account): they end within a hash's time, so wait a moment rather than refuse.
        await asyncio.sleep(BUSY_POLL_SECONDS)
        waited += BUSY_POLL_SECONDS
    if refused is not None:
        # RFC 6585 §4; nothing was hashed, and the page does not say whether the account exists.
        wait = refused.retry_after
        response = _page(request, pages, interaction_id, pending, email, THROTTLED, 429, wait)
        response.headers["Retry-After"] = str(wait)
        return response
    password = form.get("password") or ""
    try:
        ok = await runtime.passwords.averify(user.password_hash if user else None, password)
        rehashed = None
        if ok and user is not None and runtime.passwords.needs_rehash(user.password_hash):
            rehashed = await runtime.passwords.ahash(password)  # before the transaction too
    except PasswordsBusy as busy:
        # Nothing was judged: the slots go back, and the person may simply try again.
        await deps.in_transaction(runtime, lambda db: throttle.not_judged(db, attempt))
        response = _page(request, pages, interaction_id, pending, email, BUSY, 503)
        response.headers["Retry-After"] = str(busy.retry_after_seconds)
        return response
    length = len(normalize(password))
    concluded = await deps.in_transaction(
        runtime,
        lambda db: _conclude(
            db, runtime, user, ok, rehashed, browser, interaction_id, attempt, length
        ),
    )
    if concluded is None or user is None:
        return _page(request, pages, interaction_id, pending, email, BAD_CREDENTIALS, 400)
    if concluded.next is not None:
        # The password was right, and a second factor is owed (or cannot be had): no session
        # yet, so the device is not remembered yet either.
        return respond(concluded.next, runtime, browser, 303)
    return signed_in_response(runtime, browser, device, user.id, concluded.cookie, interaction_id)


def signed_in_response(
    runtime: Runtime,
    browser: Browser,
    device: devices.Device | None,
    user_id: str,
    cookie: str | None,
    interaction_id: str | None,
    target: str | None = None,
) -> Response:
    """After a sign-in: back to the interaction (or home), with the new session's cookie (None:
    the session was stepped up in place) and the device cookie that now knows this account."""
    settings = runtime.settings
    if target is None:
        target = "/"
        if interaction_id:
            target = "/authorize/resume?" + urlencode({"interaction": interaction_id})
    response: Response = RedirectResponse(target, status_code=303)
    if cookie is not None:
        cookies.set_cookie(response, settings, cookies.SESSION, cookie)
    cookies.set_cookie(
        response,
        settings,
        cookies.DEVICE,
        devices.signed_in(runtime.device_key, device, user_id),
        max_age=devices.MAX_AGE_SECONDS,
    )
    csrf.rotate(response, settings)  # no form made before this sign-in works after it
    return response


def _look_up_and_reserve(
    db: Session,
    runtime: Runtime,
    interaction_id: str | None,
    email: str,
    browser: Browser,
    device: devices.Device | None,
) -> tuple[Pending | None, User | None, Attempt, Throttled | None]:
    """The first write transaction: the interaction and the account, and the attempt's
    throttle slots (committed before the hash, so parallel attempts see them), or why there
    are none."""
    pending = _interaction(db, interaction_id, browser)
    user = users.read_by_email(db, email) if email else None
    # A known device: this browser's cookie names the account that is signing in.
    known = device.id if device and user and device.knows(user.id) else None
    attempt = throttle.sign_in_attempt(runtime.settings, email, browser.ip, known)
    try:
        throttle.reserve(db, runtime.settings, attempt)
    except Throttled as refused:
        return pending, user, attempt, refused
    return pending, user, attempt, None


def _csrf_rejected(
    runtime: Runtime, interaction_id: str | None, browser: Browser
) -> Pending | None:
    """Audit the refusal, then read the interaction for the page: committed first, so a stale
    interaction (an error page) does not roll the audit event back."""
    with deps.transaction(runtime) as db:
        record(db, AuditEvent.CSRF_REJECTED, ip=browser.ip, path="/login")
    with deps.read_transaction(runtime) as db:
        return _interaction(db, interaction_id, browser)


@dataclass(frozen=True)
class Concluded:
    """A correct password: the new session's cookie, or the step owed before there is one."""

    cookie: str | None
    next: Outcome | None = None


def _conclude(
    db: Session,
    runtime: Runtime,
    user: User | None,
    ok: bool,
    rehashed: str | None,
    browser: Browser,
    interaction_id: str | None,
    attempt: Attempt,
    length: int,
) -> Concluded | None:
    """The second write transaction: the session and its cookie (or the second factor owed),
    or the failure's audit event; the throttle hears the verdict in the same transaction."""
    if not ok or user is None or user.disabled:
        reason = "disabled" if ok and user is not None else "bad_credentials"
        user_id = user.id if user else None
        throttle.failed(db, runtime.settings, attempt, browser.ip, user_id)
        record(db, AuditEvent.LOGIN_FAILED, ip=browser.ip, user_id=user_id, reason=reason)
        return None
    throttle.succeeded(db, attempt)
    # This transaction's row (`user` was read in another), read-only unless it changes.
    current = users.read(db, user.id)
    if current is None:
        return None
    has_factor = mfa.factors_of(db, current.id).any
    # Too short for the account as it is now (its factors were reset, or the policy grew):
    # signed in, but a new password comes before anything else.
    too_short = length < min_password_length(runtime.settings, has_factor)
    if rehashed or too_short:
        current = users.get(db, user.id)
        if current is None:
            return None
        if rehashed:
            users.set_password_hash(db, current, rehashed)
        if too_short:
            current.password_change_required = True
    owed = interaction.password_checked(db, runtime, interaction_id, browser, current)
    if owed is not None:
        return Concluded(None, owed)
    cookie = sign_in(db, runtime, user.id, [mfa.PWD], mfa.AAL1, browser, interaction_id)
    return Concluded(cookie)


def sign_in(
    db: Session,
    runtime: Runtime,
    user_id: str,
    amr: list[str],
    acr: str,
    browser: Browser,
    interaction_id: str | None,
) -> str:
    """Start the session (and end the one it replaces), note the step on the interaction;
    returns the new session cookie."""
    # A new id at every login (no session fixation); a session this one replaces ends, and its
    # relying parties are told (Back-Channel Logout §2.5).
    cookie, _ = sessions.start(
        db,
        user_id,
        amr,
        acr,
        runtime.settings,
        replacing=browser.session_cookie,
        ip=browser.ip,
        user_agent=browser.user_agent,
    )
    new_device.note_sign_in(db, user_id, user_id in browser.device_accounts, browser.ip)
    record(db, AuditEvent.LOGIN_SUCCEEDED, ip=browser.ip, user_id=user_id, amr=" ".join(amr))
    if interaction_id:
        interaction.logged_in(db, interaction_id, browser, user_id)
    return cookie
