"""/account: the signed-in person's own account: who they are, how this session signed in,
where else they are signed in (ending one session, every other one, or all of them), and what
happened to the account lately. (Second factors are added here by the MFA pages; the password
is changed at /account/password, idp.web.account_password.)"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.responses import RedirectResponse, Response

from idp import deps
from idp.admin import revocation
from idp.audit.events import AuditEvent, record
from idp.authn import sessions
from idp.errors import N_
from idp.protocol import interaction
from idp.protocol.endpoints.authorize import respond
from idp.security import cookies, csrf
from idp.settings import Settings
from idp.store import audit as audit_store, sessions as session_store, users
from idp.store.audit import AuditRecord
from idp.web import forms, home, reauth, user_agents
from idp.web.user_agents import Device

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

# The audit events a person may want to see of their own account, in words. (Events of second
# factors join this list when they are defined.)
ACTIVITY = {
    AuditEvent.LOGIN_SUCCEEDED: N_("Signed in"),
    AuditEvent.LOGIN_NEW_DEVICE: N_("Signed in from a new device"),
    AuditEvent.LOGIN_FAILED: N_("Sign-in failed"),
    AuditEvent.THROTTLE_STARTED: N_("Sign-in paused after failed attempts"),
    AuditEvent.PASSWORD_CHANGED: N_("Password changed"),
    AuditEvent.PASSWORD_CHANGE_FAILED: N_("Password change refused: wrong current password"),
    AuditEvent.SESSION_ENDED_BY_USER: N_("Signed out other browsers"),
    AuditEvent.SESSIONS_REVOKED: N_("Signed out everywhere"),
    AuditEvent.MFA_ENROLLED: N_("Two-step verification set up"),
    AuditEvent.MFA_REMOVED: N_("Authenticator app removed"),
    AuditEvent.MFA_RESET: N_("Two-step verification reset by an administrator"),
    AuditEvent.MFA_FAILED: N_("Wrong second-step answer"),
    AuditEvent.RECOVERY_CODES_CREATED: N_("New recovery codes made"),
    AuditEvent.RECOVERY_CODE_USED: N_("Recovery code used"),
    AuditEvent.WEBAUTHN_REGISTERED: N_("Passkey added"),
    AuditEvent.WEBAUTHN_REMOVED: N_("Passkey removed"),
    AuditEvent.WEBAUTHN_SIGN_COUNT_REGRESSED: N_("Passkey refused: it may have been copied"),
}
ACTIVITY_LIMIT = 10

# Notices of this page, after one of its forms (a fixed set, as home.NOTICES).
NOTICES = {
    "session_ended": N_("That browser was signed out."),
    "others_ended": N_("Every other browser was signed out."),
    "password_changed": N_("Your password was changed. Every other browser was signed out."),
}
NOT_YOURS = N_("Session not found")
BACK_TO_ACCOUNT = N_("Go back to your account and try again.")


@dataclass(frozen=True)
class SessionRow:
    """One live session as the list shows it."""

    sid: str
    device: Device
    ip: str | None
    signed_in: int
    last_used: int
    this_browser: bool


@dataclass(frozen=True)
class ActivityRow:
    at: int
    what: str
    ip: str | None
    count: int  # > 1: a tally of failed sign-ins in one minute


def _session_rows(
    db: Session, settings: Settings, user_id: str, current_sid: str
) -> list[SessionRow]:
    live = session_store.live_of_user(db, user_id, settings.session_idle_timeout_seconds)
    return [
        SessionRow(
            s.sid,
            user_agents.parse(s.user_agent),
            s.ip,
            s.auth_time,
            s.last_seen_at,
            s.sid == current_sid,
        )
        for s in live
    ]


def _activity_row(event: AuditRecord) -> ActivityRow:
    count = event.detail.get("count", 1)
    return ActivityRow(
        event.at,
        ACTIVITY[AuditEvent(event.event)],
        event.ip,
        count if isinstance(count, int) else 1,
    )


def _activity(db: Session, user_id: str) -> list[ActivityRow]:
    events = audit_store.activity_of(db, user_id, {str(e) for e in ACTIVITY}, ACTIVITY_LIMIT)
    return [_activity_row(e) for e in events]


@router.get("/account", include_in_schema=False)
def account_page(
    request: Request, runtime: deps.Rt, pages: deps.Pages, browser: deps.Browser
) -> Response:
    settings = runtime.settings
    with deps.read_transaction(runtime) as db:
        session = sessions.current(db, browser.session_cookie, settings, touch=False)
        user = users.get(db, session.user_id) if session else None
        rows = _session_rows(db, settings, user.id, session.sid) if session and user else []
        activity = _activity(db, user.id) if user else []
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
            "session_count": len(rows),
            "sessions": rows,
            "activity": activity,
            "notice": NOTICES.get(request.query_params.get("notice", "")) or home.notice(request),
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
    # Every session, refresh token and access token of the account (the tokens through the
    # user's revocation epoch, on every worker at once).
    revocation.revoke_user(db, session.user_id, actor="user", reason="signed_out_everywhere")
    response = RedirectResponse("/?notice=signed_out_everywhere", status_code=303)
    cookies.clear(response, settings, cookies.SESSION)
    csrf.rotate(response, settings)
    response.background = BackgroundTask(request.app.state.worker.kick)  # the logout tokens
    return response


@router.post("/account/sessions/end", include_in_schema=False)
def end_session(
    request: Request,
    form: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
    db: deps.Db,
) -> Response:
    """Sign out one session of the person's own (by its public sid), as a sign-out there
    would: its relying parties are told (Back-Channel Logout §2.5)."""
    if expired := forms.refused(request, form, runtime, pages, browser, db, BACK_TO_ACCOUNT):
        return expired
    who = reauth.signed_in(runtime, db, browser)
    if who is None:
        return RedirectResponse("/", status_code=303)
    target = session_store.by_sid(db, form.get("sid") or "")
    if target is None or target.user_id != who.user.id:
        # Someone else's session, or one already gone: the same answer, so a sid learnt
        # elsewhere says nothing about whose it is.
        return pages.error(request, NOT_YOURS, BACK_TO_ACCOUNT, 404)
    sessions.end(db, target, browser.ip, reason="ended_by_user")
    record(db, AuditEvent.SESSION_ENDED_BY_USER, ip=browser.ip, user_id=who.user.id, sessions=1)
    if target.sid == who.session.sid:  # this browser's own: a plain sign-out
        response = RedirectResponse("/", status_code=303)
        cookies.clear(response, runtime.settings, cookies.SESSION)
        csrf.rotate(response, runtime.settings)
    else:
        response = RedirectResponse("/account?notice=session_ended", status_code=303)
    response.background = BackgroundTask(request.app.state.worker.kick)  # the logout tokens
    return response


@router.post("/account/sessions/end-others", include_in_schema=False)
def end_other_sessions(
    request: Request,
    form: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
    db: deps.Db,
) -> Response:
    """Sign out every session of the person but this browser's."""
    if expired := forms.refused(request, form, runtime, pages, browser, db, BACK_TO_ACCOUNT):
        return expired
    who = reauth.signed_in(runtime, db, browser)
    if who is None:
        return RedirectResponse("/", status_code=303)
    ended = sessions.end_others(
        db, who.user.id, who.session.sid, browser.ip, reason="ended_by_user"
    )
    record(
        db, AuditEvent.SESSION_ENDED_BY_USER, ip=browser.ip, user_id=who.user.id, sessions=ended
    )
    response = RedirectResponse("/account?notice=others_ended", status_code=303)
    response.background = BackgroundTask(request.app.state.worker.kick)  # the logout tokens
    return response
