"""What has expired in each table, and deleting it in bounded batches (`idp prune`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, exists, or_, select
from sqlalchemy.orm import Session

from idp.store import audit_chain, logout_deliveries
from idp.store.approvals import PendingChange
from idp.store.assertions import UsedAssertion
from idp.store.audit import AuditRecord
from idp.store.codes import AuthorizationCode
from idp.store.interactions import Interaction
from idp.store.logout_deliveries import LogoutDelivery
from idp.store.refresh_tokens import FamilyAccessToken, RefreshToken, TokenFamily
from idp.store.revocations import RevokedToken
from idp.store.sessions import BrowserSession
from idp.store.throttle import SprayMark, ThrottleCounter

# Keep used codes and tokens a while past expiry, so a late replay is still recognised as one.
REPLAY_MEMORY = 86400
# IDP_AUDIT_RETENTION_DAYS' default: the audit trail is kept this long, then pruned.
AUDIT_RETENTION_DAYS = 400


def _targets(
    ts: int, idle_timeout: int | None = None, audit_retention_days: int = AUDIT_RETENTION_DAYS
) -> list[tuple[str, Any, Any]]:
    old = ts - REPLAY_MEMORY
    session_over = BrowserSession.expires_at < ts
    if idle_timeout:
        session_over = or_(session_over, BrowserSession.last_seen_at < ts - idle_timeout)
    return [
        # Sessions first: a code outlives its expiry while its session lives (below).
        ("sessions", BrowserSession.id_hash, session_over),
        # A code is also the record of which clients a session signed in to (the back-channel
        # logout targets): kept while its session lives, however long that is.
        (
            "authorization codes",
            AuthorizationCode.code_hash,
            and_(
                AuthorizationCode.expires_at < old,
                ~exists().where(BrowserSession.sid == AuthorizationCode.sid),
            ),
        ),
        ("refresh tokens", RefreshToken.token_hash, RefreshToken.expires_at < old),
        ("token families", TokenFamily.id, TokenFamily.expires_at < old),
        ("family access tokens", FamilyAccessToken.jti, FamilyAccessToken.expires_at < ts),
        ("revoked tokens", RevokedToken.jti, RevokedToken.expires_at < ts),
        ("interactions", Interaction.id_hash, Interaction.expires_at < ts),
        ("client assertions", UsedAssertion.jti, UsedAssertion.expires_at < ts),
        ("throttle counters", ThrottleCounter.key, ThrottleCounter.expires_at < ts),
        ("sign-in spray marks", SprayMark.network, SprayMark.expires_at < ts),
        # Pending or decided, a request is of no use past its day (the audit trail keeps it).
        ("pending changes", PendingChange.id, PendingChange.expires_at < ts),
        ("logout deliveries", LogoutDelivery.id, LogoutDelivery.created_at < old),
        # Unauthenticated requests can add audit rows: without retention the table only grows.
        # Pruned in chain order, with a checkpoint (delete_batch).
        ("audit events", AuditRecord.id, AuditRecord.at < ts - audit_retention_days * 86400),
    ]


TABLES = [name for name, _, _ in _targets(0)]


def delete_batch(
    db: Session,
    name: str,
    ts: int,
    batch: int,
    idle_timeout: int | None = None,
    audit_retention_days: int = AUDIT_RETENTION_DAYS,
) -> int:
    """Delete up to `batch` expired rows of one table; returns how many went. A session that
    timed out (absolute, or idle when `idle_timeout` is given) has ended: its relying parties
    are told, as at any other end (Back-Channel Logout 1.0 §2.5)."""
    if name == "audit events":
        return audit_chain.prune_before(db, ts - audit_retention_days * 86400, batch)
    targets = _targets(ts, idle_timeout, audit_retention_days)
    _, key, expired = next(t for t in targets if t[0] == name)
    if name == "sessions":
        # The rows this DELETE removed, and only those, are told: a session touched since the
        # select (no longer expired) or pruned by another worker meanwhile queues nothing.
        batch_of = select(BrowserSession.id_hash).where(expired).limit(batch)
        ended = db.execute(
            delete(BrowserSession)
            .where(BrowserSession.id_hash.in_(batch_of), expired)
            .returning(BrowserSession.sid, BrowserSession.user_id),
            execution_options={"synchronize_session": False},
        ).all()
        for sid, user_id in ended:
            logout_deliveries.queue_session_end(db, sid, user_id)
        return len(ended)
    keys = list(db.scalars(select(key).where(expired).limit(batch)))
    if keys:
        db.execute(delete(key.class_).where(key.in_(keys), expired))
    return len(keys)
