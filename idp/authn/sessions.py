"""Browser sessions as a person's sign-in: start, end, end every one of a user.

Every way a session ends queues back-channel logout tokens for the relying parties it signed in
to (OIDC Back-Channel Logout 1.0 §2.5), and revokes the refresh tokens bound to it unless the
user granted offline access (OIDC Core §11): a sign-out, a sign-in that replaces the session
(prompt=login, max_age, another account), and `idp users revoke-sessions`. A session that timed
out is told to its relying parties when it is pruned (store.expiry).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from idp.audit.events import AuditEvent, record
from idp.settings import Settings
from idp.store import logout_deliveries, refresh_tokens, sessions as store
from idp.store.sessions import BrowserSession

__all__ = [
    "BrowserSession",
    "current",
    "end",
    "end_all",
    "end_every",
    "end_others",
    "read_current",
    "start",
]


def current(
    db: Session, cookie: str | None, settings: Settings, touch: bool = True
) -> BrowserSession | None:
    """The live session behind this cookie, or None (unknown, idle too long, or expired)."""
    return store.current(db, cookie, settings.session_idle_timeout_seconds, touch=touch)


def read_current(
    db: Session, cookie: str | None, settings: Settings, touch: bool = True
) -> BrowserSession | None:
    """As current(), as a read-only copy: for callers that only read who is signed in."""
    return store.read_current(db, cookie, settings.session_idle_timeout_seconds, touch=touch)


def start(
    db: Session,
    user_id: str,
    amr: list[str],
    acr: str,
    settings: Settings,
    replacing: str | None,
    ip: str | None,
    *,
    user_agent: str | None = None,
) -> tuple[str, BrowserSession]:
    """A new session, with a new id at every sign-in (no session fixation). The session whose
    cookie the browser still held ends properly: its relying parties hear of it."""
    if replacing and (old := store.current(db, replacing, settings.session_idle_timeout_seconds)):
        end(db, old, ip, reason="replaced")
    elif replacing:
        store.end(db, replacing)  # expired or unknown: nothing signed in with it any more
    return store.start(
        db,
        user_id,
        amr,
        acr,
        settings.session_absolute_timeout_seconds,
        ip=ip,
        user_agent=user_agent,
    )


def end(db: Session, session: BrowserSession, ip: str | None, reason: str = "logout") -> None:
    """End one session: logout tokens queued, non-offline refresh tokens revoked, audited.
    Logout tokens are queued only if this call really ended the session's row: a second
    sign-out of the same session (two tabs, a retried POST) tells nobody twice."""
    if store.end_by_sid(db, session.sid):
        logout_deliveries.queue_session_end(db, session.sid, session.user_id)
    families = refresh_tokens.live_families_of_session(db, session.sid)
    for family_id in families:
        refresh_tokens.revoke_family(db, family_id, "logout")
    record(
        db, AuditEvent.LOGOUT, ip=ip, user_id=session.user_id, families=len(families), why=reason
    )


def end_all(db: Session, user_id: str) -> tuple[int, int]:
    """End every session and refresh-token family of a user (offline ones included)."""
    ended, families = end_every(db, user_id, "sessions_revoked")
    record(db, AuditEvent.SESSIONS_REVOKED, user_id=user_id, sessions=ended, families=families)
    return ended, families


def end_every(db: Session, user_id: str, reason: str) -> tuple[int, int]:
    """end_all() without its audit event, for callers that record their own
    (idp.admin.revocation): (sessions ended, families revoked)."""
    ended = store.of_user(db, user_id)
    for session in ended:
        if store.end_by_sid(db, session.sid):  # else it ended meanwhile, and told its RPs
            logout_deliveries.queue_session_end(db, session.sid, session.user_id)
    families = refresh_tokens.live_families_of_user(db, user_id)
    for family_id in families:
        refresh_tokens.revoke_family(db, family_id, reason)
    return len(ended), len(families)


def end_others(db: Session, user_id: str, keep_sid: str, ip: str | None, reason: str) -> int:
    """End every session of a user but the one with `keep_sid`, each as `end` does (logout
    tokens queued, its non-offline refresh tokens revoked); returns how many ended."""
    others = [s for s in store.of_user(db, user_id) if s.sid != keep_sid]
    for session in others:
        end(db, session, ip, reason=reason)
    return len(others)
