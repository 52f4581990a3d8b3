"""/account/password: the signed-in person changes their password (templates/account/).

It takes the current password and a sign-in of the last five minutes (web.reauth): a browser
left signed in is not enough to take the account over. The current password is checked like a
sign-in, through the sign-in throttle (reserved before the hash, judged after), so the form
cannot be used to guess it. As at /login, both argon2 runs happen outside any transaction: the
request reads and reserves in one short write transaction, hashes, then writes in another.
A new password ends every other session of the account (NIST SP 800-63B-4 §4.1.3 leaves it to
the verifier; whoever knew the old one should not stay signed in), keeping this one.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from idp import deps
from idp.audit.events import AuditEvent, record
from idp.authn import sessions, throttle
from idp.authn.passwords import PasswordRejected, PasswordsBusy, check_policy, min_password_length
from idp.authn.throttle import Attempt, Throttled
from idp.errors import N_
from idp.protocol.authorization import Browser
from idp.protocol.requests import Params
from idp.runtime import Runtime
from idp.security import cookies, csrf, devices
from idp.store import factors, users
from idp.web import forms, reauth
from idp.web.reauth import SignedIn
from idp.web.templating import Templates

router = APIRouter()

PATH = "/account/password"
WRONG_CURRENT = N_("Your current password is not correct.")
MISMATCH = N_("The new passwords do not match.")
TOO_SHORT = N_("Your new password must have at least %(n)s characters.")
TOO_LONG = N_("Your new password is too long.")
TOO_COMMON = N_("This password is too common. Choose another.")
IS_EMAIL = N_("Your new password must not be your email address.")
SAME = N_("Your new password must differ from the current one.")
THROTTLED = N_("Too many failed attempts. Wait %(wait)s, then try again.")
BUSY = N_("Too many people are signing in right now. Wait a moment, then try again.")
BACK = N_("Go back to your account and try again.")
BUSY_WAIT_SECONDS = 2.0
BUSY_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Problem:
    """Why the form is shown again: a message id, its values, and the HTTP status."""

    message: str
    status: int = 400
    values: tuple[tuple[str, str], ...] = ()
    retry_after: int | None = None  # seconds, for the Retry-After header
    wait: int | None = None  # seconds, for the message's %(wait)s (in words)


def _interaction(request: Request) -> str | None:
    """The sign-in this change interrupts (its password was flagged as too short), if any:
    after the change it goes on. Only an id's shape is accepted; resume() checks the rest."""
    value = getattr(request.state, "interaction", None) or request.query_params.get("interaction")
    return value if value and _INTERACTION_ID.fullmatch(value) else None


_INTERACTION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _page(
    request: Request, pages: Templates, who: SignedIn, problem: Problem | None = None
) -> Response:
    response = pages.render(
        request,
        "account/password.html",
        {
            "interaction": _interaction(request),
            "required": who.user.password_change_required,
            "user": who.user,
            "error": problem.message if problem else None,
            "values": dict(problem.values) if problem else {},
            "wait": problem.wait if problem else None,
        },
        status=problem.status if problem else 200,
    )
    if problem and problem.retry_after:
        response.headers["Retry-After"] = str(problem.retry_after)  # RFC 6585 §4
    return response


@router.get(PATH, include_in_schema=False)
def password_form(
    request: Request, runtime: deps.Rt, pages: deps.Pages, browser: deps.Browser
) -> Response:
    who = reauth.page_signed_in(runtime, browser, PATH, fresh=True)
    if isinstance(who, Response):
        return who
    return _page(request, pages, who)


def _policy_problem(password: str, min_length: int, email: str) -> Problem | None:
    """The policy's verdict (passwords.check_policy) in words of this page's catalogue."""
    try:
        check_policy(password, min_length, email)
    except PasswordRejected as rejected:
        reason = str(rejected)
        if "at least" in reason:
            return Problem(TOO_SHORT, values=(("n", str(min_length)),))
        if "at most" in reason:
            return Problem(TOO_LONG)
        return Problem(TOO_COMMON if "common" in reason else IS_EMAIL)
    return None


@dataclass(frozen=True)
class Prepared:
    """What the first transaction found: who, and the throttle slots taken (or why not)."""

    who: SignedIn | None
    problem: Problem | None = None
    attempt: Attempt | None = None


def _prepare(
    runtime: Runtime,
    browser: Browser,
    device: devices.Device | None,
    current: str,
    new: str,
    confirm: str,
) -> Prepared:
    """One write transaction: the session (fresh?), the new password against the policy, then
    the throttle slots for checking the current one (committed before the hash, as at /login)."""
    settings = runtime.settings
    with deps.transaction(runtime) as db:
        who = reauth.signed_in(runtime, db, browser)
        if who is None or not who.fresh:
            return Prepared(who)
        user = who.user
        # Checked before the current password, so these answers say nothing about it.
        if new != confirm:
            return Prepared(who, Problem(MISMATCH))
        if new == current:
            return Prepared(who, Problem(SAME))
        min_length = min_password_length(settings, factors.has_second_factor(db, user.id))
        if problem := _policy_problem(new, min_length, user.email):
            return Prepared(who, problem)
        known = device.id if device and device.knows(user.id) else None
        attempt = throttle.sign_in_attempt(settings, user.email, browser.ip, known)
        try:
            throttle.reserve(db, settings, attempt)
        except Throttled as refused:
            if refused.busy:
                return Prepared(who, Problem(BUSY, 503, retry_after=1))
            wait = refused.retry_after
            return Prepared(who, Problem(THROTTLED, 429, retry_after=wait, wait=wait))
        return Prepared(who, attempt=attempt)


def _not_judged(runtime: Runtime, attempt: Attempt) -> None:
    with deps.transaction(runtime) as db:
        throttle.not_judged(db, attempt)


def _conclude(
    runtime: Runtime, browser: Browser, who: SignedIn, attempt: Attempt, new_hash: str | None
) -> bool:
    """One write transaction: the throttle's verdict, and the new password with every other
    session ended (or the failure audited). False when the current password was wrong."""
    with deps.transaction(runtime) as db:
        if new_hash is None:
            throttle.failed(db, runtime.settings, attempt, browser.ip, who.user.id)
            record(db, AuditEvent.PASSWORD_CHANGE_FAILED, ip=browser.ip, user_id=who.user.id)
            return False
        throttle.succeeded(db, attempt)
        user = users.get(db, who.user.id)
        if user is None:  # deleted meanwhile: nothing left to change
            return False
        users.set_password_hash(db, user, new_hash)
        user.password_change_required = False
        ended = sessions.end_others(
            db, user.id, who.session.sid, browser.ip, reason="password_changed"
        )
        record(db, AuditEvent.PASSWORD_CHANGED, ip=browser.ip, user_id=user.id, sessions=ended)
        return True


def _csrf_refused(
    request: Request, form: Params, runtime: Runtime, pages: Templates, browser: Browser
) -> Response | None:
    with deps.transaction(runtime) as db:  # the refusal's audit event commits with it
        return forms.refused(request, form, runtime, pages, browser, db, BACK)


async def _reserve(
    runtime: Runtime, browser: Browser, device: devices.Device | None, fields: tuple[str, ...]
) -> Prepared:
    """`_prepare`, waiting a moment while every slot is busy with attempts still being judged
    (parallel sign-ins of the account), as /login does."""
    waited = 0.0
    while True:
        prepared = await run_in_threadpool(_prepare, runtime, browser, device, *fields)
        busy = prepared.problem is not None and prepared.problem.message == BUSY
        if not busy or waited >= BUSY_WAIT_SECONDS:
            return prepared
        await asyncio.sleep(BUSY_POLL_SECONDS)
        waited += BUSY_POLL_SECONDS


@router.post(PATH, include_in_schema=False)
async def password_submit(
    request: Request,
    form: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
) -> Response:
    # async, as login_submit: the two hashes are awaited on the event loop, the short
    # transactions run in the thread pool.
    if refused := await run_in_threadpool(_csrf_refused, request, form, runtime, pages, browser):
        return refused
    request.state.interaction = form.get("interaction")
    current = form.get("current_password") or ""
    new = form.get("new_password") or ""
    confirm = form.get("confirm_password") or ""
    settings = runtime.settings
    device = devices.read(runtime.device_key, cookies.read(request, settings, cookies.DEVICE))
    prepared = await _reserve(runtime, browser, device, (current, new, confirm))
    who = prepared.who
    if who is None:
        return await run_in_threadpool(reauth.sign_in_first, runtime, browser, PATH)
    if not who.fresh:
        # A POST cannot be replayed through a sign-in: say so, with the way back.
        return pages.render(request, "account/sign_in_again.html", {"path": PATH}, status=403)
    if prepared.attempt is None:
        return _page(request, pages, who, prepared.problem)
    try:
        ok = await runtime.passwords.averify(who.user.password_hash, current)
        new_hash = await runtime.passwords.ahash(new) if ok else None
    except PasswordsBusy as busy:
        # Not judged, or judged but not done: the slots go back, and they may try again.
        await run_in_threadpool(_not_judged, runtime, prepared.attempt)
        return _page(request, pages, who, Problem(BUSY, 503, retry_after=busy.retry_after_seconds))
    if not await run_in_threadpool(_conclude, runtime, browser, who, prepared.attempt, new_hash):
        return _page(request, pages, who, Problem(WRONG_CURRENT))
    interrupted = _interaction(request)
    target = "/account?notice=password_changed"
    if interrupted:
        target = "/authorize/resume?" + urlencode({"interaction": interrupted})
    response = RedirectResponse(target, status_code=303)
    csrf.rotate(response, settings)  # no form made before the change works after it
    response.background = BackgroundTask(request.app.state.worker.kick)  # the logout tokens
    return response
