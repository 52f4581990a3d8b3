"""Ending a user's sessions, and pruning what has expired, in bounded batches.

Pruning is safe while servers run: each batch is its own short transaction and deletes only rows
that can no longer be used (expired, or used and past any retry window).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from idp.audit import AuditEvent, record
from idp.protocol.backchannel import queue_session_end
from idp.store import refresh_tokens
from idp.store.assertions import UsedAssertion
from idp.store.base import now
from idp.store.codes import AuthorizationCode
from idp.store.logout_deliveries import LogoutDelivery
from idp.store.refresh_tokens import FamilyAccessToken, RefreshToken, TokenFamily
from idp.store.revocations import RevokedToken
from idp.store.sessions import BrowserSession

BATCH = 1000
# Keep used codes and tokens a while past expiry, so a late replay is still recognised as one.
REPLAY_MEMORY = 86400


def revoke_user_sessions(db: Session, user_id: str) -> tuple[int, int]:
    """End every session and refresh-token family of a user (offline ones included)."""
    for session in db.scalars(select(BrowserSession).where(BrowserSession.user_id == user_id)):
        queue_session_end(db, session)
    ended = db.execute(delete(BrowserSession).where(BrowserSession.user_id == user_id))
    families = db.scalars(
        select(TokenFamily.id).where(
            TokenFamily.user_id == user_id, TokenFamily.revoked_at.is_(None)
        )
    ).all()
    for family_id in families:
        refresh_tokens.revoke_family(db, family_id, "sessions_revoked")
    count = int(ended.rowcount)  # type: ignore[attr-defined]
    record(db, AuditEvent.SESSIONS_REVOKED, user_id=user_id, sessions=count, families=len(families))
    return count, len(families)


def _targets(ts: int) -> list[tuple[str, Any, Any]]:
    old = ts - REPLAY_MEMORY
    return [
        ("authorization codes", AuthorizationCode.code_hash, AuthorizationCode.expires_at < old),
        ("refresh tokens", RefreshToken.token_hash, RefreshToken.expires_at < old),
        ("token families", TokenFamily.id, TokenFamily.expires_at < old),
        ("family access tokens", FamilyAccessToken.jti, FamilyAccessToken.expires_at < ts),
        ("revoked tokens", RevokedToken.jti, RevokedToken.expires_at < ts),
        ("sessions", BrowserSession.id_hash, BrowserSession.expires_at < ts),
        ("client assertions", UsedAssertion.jti, UsedAssertion.expires_at < ts),
        ("logout deliveries", LogoutDelivery.id, LogoutDelivery.created_at < old),
    ]


def prune(factory: sessionmaker[Session], batch: int = BATCH) -> dict[str, int]:
    """Delete expired rows table by table, `batch` rows per transaction; returns the counts."""
    counts: dict[str, int] = {}
    for name, key, expired in _targets(now()):
        total = 0
        while True:
            with factory.begin() as db:
                keys = db.scalars(select(key).where(expired).limit(batch)).all()
                if keys:
                    db.execute(delete(key.class_).where(key.in_(keys), expired))
            total += len(keys)
            if len(keys) < batch:
                break
        counts[name] = total
    return counts
