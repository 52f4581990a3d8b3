"""Authorization codes: stored as a hash, single use, bound to everything that made them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from idp.security.secrets import sha256_hex
from idp.store.base import Base, now
from idp.store.driver import Columns, Sql, execute, fetch_one


class AuthorizationCode(Base):
    __tablename__ = "authorization_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    sid: Mapped[str] = mapped_column(String(43))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str | None] = mapped_column(Text)
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(8))
    auth_time: Mapped[int]
    amr: Mapped[list[str]] = mapped_column(JSON)
    acr: Mapped[str] = mapped_column(String(64))
    # RFC 8707 §2.1: the resources the authorization request named (None: it named none).
    resources: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[int]
    expires_at: Mapped[int] = mapped_column(index=True)
    used_at: Mapped[int | None]
    # The access token issued from this code, so a replayed code can revoke it (RFC 6749 §4.1.2).
    token_jti: Mapped[str | None] = mapped_column(String(64))
    token_expires_at: Mapped[int | None]
    # The refresh-token family started from this code, revoked too if the code is replayed.
    family_id: Mapped[str | None] = mapped_column(String(43))

    # authlib's AuthorizationCodeMixin
    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str:
        return self.acr

    def get_amr(self) -> list[str]:
        return self.amr


def save(db: Session, code: str, **columns: Any) -> None:
    """Store a new code (its SHA-256) with its columns, on the driver's cursor."""
    _CODES.insert(db, code_hash=sha256_hex(code), **columns)


# The code exchange's own statements, on the driver's cursor (idp.store.driver).
_CODES = Columns(AuthorizationCode)
_CONSUME = Sql(
    "UPDATE authorization_codes SET used_at = ?"  # noqa: S608 (names from the table)
    " WHERE code_hash = ? AND client_id = ? AND used_at IS NULL AND expires_at > ?"
    f" RETURNING {', '.join(_CODES.names)}"
)
_RECORD_ISSUED = Sql(
    "UPDATE authorization_codes SET token_jti = ?, token_expires_at = ?, family_id = ?"
    " WHERE code_hash = ?"
)


def consume(db: Session, code: str, client_id: str) -> AuthorizationCode | None:
    """Mark the code used and return it (a transient copy); None if unknown, expired, used or
    not this client's.

    One conditional UPDATE: two workers racing on one code cannot both win.
    """
    ts = now()
    row = fetch_one(db, _CONSUME, (ts, sha256_hex(code), client_id, ts))
    return _CODES.instance(row) if row is not None else None


def resources_of(db: Session, code: str, client_id: str) -> tuple[bool, list[str] | None]:
    """Whether this client holds this unused code, and the resources it was asked for; a read
    that leaves the code as it is."""
    row = db.execute(
        select(AuthorizationCode.resources).where(
            AuthorizationCode.code_hash == sha256_hex(code),
            AuthorizationCode.client_id == client_id,
            AuthorizationCode.used_at.is_(None),
        )
    ).one_or_none()
    return (False, None) if row is None else (True, row[0])


def used_before(db: Session, code: str, client_id: str) -> AuthorizationCode | None:
    """The row of a code that was already redeemed by this client (a replay), if any."""
    return db.scalars(
        select(AuthorizationCode).where(
            AuthorizationCode.code_hash == sha256_hex(code),
            AuthorizationCode.client_id == client_id,
            AuthorizationCode.used_at.is_not(None),
        )
    ).one_or_none()


def record_issued_token(
    db: Session, code: AuthorizationCode, jti: str, expires_at: int, family_id: str | None
) -> None:
    execute(db, _RECORD_ISSUED, (jti, expires_at, family_id, code.code_hash))


def live_tokens_of(db: Session, user_id: str, client_id: str, ts: int) -> list[tuple[str, int]]:
    """The (jti, expires_at) of the access tokens issued from this user's codes for this
    client that have not expired yet (codes are kept a day past their use, see expiry.py)."""
    c = AuthorizationCode
    rows = db.execute(
        select(c.token_jti, c.token_expires_at).where(
            c.user_id == user_id,
            c.client_id == client_id,
            c.token_jti.is_not(None),
            c.token_expires_at > ts,
        )
    )
    return [(str(jti), exp) for jti, exp in rows if exp is not None]
