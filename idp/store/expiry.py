"""What has expired in each table, and deleting it in bounded batches (`idp prune`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, exists, select
from sqlalchemy.orm import Session

from idp.store.assertions import UsedAssertion
from idp.store.codes import AuthorizationCode
from idp.store.interactions import Interaction
from idp.store.logout_deliveries import LogoutDelivery
from idp.store.refresh_tokens import FamilyAccessToken, RefreshToken, TokenFamily
from idp.store.revocations import RevokedToken
from idp.store.sessions import BrowserSession

# Keep used codes and tokens a while past expiry, so a late replay is still recognised as one.
REPLAY_MEMORY = 86400


def _targets(ts: int) -> list[tuple[str, Any, Any]]:
    old = ts - REPLAY_MEMORY
    return [
        # Sessions first: a code outlives its expiry while its session lives (below).
        ("sessions", BrowserSession.id_hash, BrowserSession.expires_at < ts),
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
        ("logout deliveries", LogoutDelivery.id, LogoutDelivery.created_at < old),
    ]


TABLES = [name for name, _, _ in _targets(0)]


def delete_batch(db: Session, name: str, ts: int, batch: int) -> int:
    """Delete up to `batch` expired rows of one table; returns how many went."""
    _, key, expired = next(t for t in _targets(ts) if t[0] == name)
    keys = db.scalars(select(key).where(expired).limit(batch)).all()
    if keys:
        db.execute(delete(key.class_).where(key.in_(keys), expired))
    return len(keys)
