"""Refresh tokens (hashes only), grouped in families: one family per authorization grant.

Every use rotates: the presented token is marked used and its successor stored, in one
conditional UPDATE, so concurrent refreshes cannot both win. The access tokens a family produced
are remembered (by jti) so that revoking the family can revoke them too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, String, Text, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from idp.store import revocations
from idp.store.base import Base, now
from idp.store.driver import Columns, Sql, execute, fetch_one


class TokenFamily(Base):
    __tablename__ = "token_families"

    id: Mapped[str] = mapped_column(String(43), primary_key=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    sid: Mapped[str | None] = mapped_column(String(43), index=True)
    scope: Mapped[str] = mapped_column(Text)
    auth_time: Mapped[int]
    amr: Mapped[list[str]] = mapped_column(JSON)
    acr: Mapped[str] = mapped_column(String(64))
    # The user granted offline_access: the family may outlive the browser session.
    offline: Mapped[bool] = mapped_column(Boolean, default=False)
    # RFC 8707 §2.2: the resources the grant was asked for, which a refresh may narrow.
    resources: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[int]
    expires_at: Mapped[int] = mapped_column(index=True)  # absolute lifetime
    revoked_at: Mapped[int | None]
    revoke_reason: Mapped[str | None] = mapped_column(String(64))


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[str] = mapped_column(
        ForeignKey("token_families.id", ondelete="CASCADE"), index=True
    )
    client_id: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int]
    expires_at: Mapped[int] = mapped_column(index=True)  # idle lifetime, capped by the family's
    used_at: Mapped[int | None]
    successor_hash: Mapped[str | None] = mapped_column(String(64))


class FamilyAccessToken(Base):
    __tablename__ = "family_access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[str] = mapped_column(
        ForeignKey("token_families.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[int] = mapped_column(index=True)


# The refresh grant's statements run on the driver's cursor (idp.store.driver): through the ORM
# they were most of the grant's cost.
_TOKENS = Columns(RefreshToken)
_FAMILIES = Columns(TokenFamily)
_PEEK = Sql(_TOKENS.select + " WHERE token_hash = ?")
_FAMILY = Sql(_FAMILIES.select + " WHERE id = ?")
_ROTATE = Sql(
    "UPDATE refresh_tokens SET used_at = ?, successor_hash = ?"  # noqa: S608 (names from the table)
    " WHERE token_hash = ? AND client_id = ? AND used_at IS NULL AND expires_at > ?"
    f" RETURNING {', '.join(_TOKENS.names)}"
)
_ADD = Sql(
    "INSERT INTO refresh_tokens (token_hash, family_id, client_id, scope, created_at, expires_at)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_LINK = Sql("INSERT INTO family_access_tokens (jti, family_id, expires_at) VALUES (?, ?, ?)")
# A rotation that fails after its UPDATE is undone, while the transaction goes on. COMMIT
# releases the savepoint (SQL: every savepoint ends with its transaction), so the successful
# grant sends no RELEASE.
_SAVEPOINT = Sql("SAVEPOINT refresh_rotation")
_UNDO = Sql("ROLLBACK TO SAVEPOINT refresh_rotation")


def begin_rotation(db: Session) -> None:
    execute(db, _SAVEPOINT, ())


def undo_rotation(db: Session) -> None:
    """Undo what was written since begin_rotation: the rotation and the successor."""
    execute(db, _UNDO, ())


def add_family(db: Session, **columns: Any) -> TokenFamily:
    """A new family (every column but the revocation's given), as a read-only copy."""
    return _FAMILIES.insert(db, **columns)


def add_token(db: Session, token_hash: str, family: TokenFamily, scope: str, idle: int) -> None:
    ts = now()
    expires_at = min(ts + idle, family.expires_at)
    execute(db, _ADD, (token_hash, family.id, family.client_id, scope, ts, expires_at))


def link_access_token(db: Session, family_id: str, jti: str, expires_at: int) -> None:
    execute(db, _LINK, (jti, family_id, expires_at))


def rotate(
    db: Session, token_hash: str, client_id: str, successor_hash: str
) -> RefreshToken | None:
    """Mark a live token used and name its successor; None if it is not live for this client.

    One conditional UPDATE: of several concurrent refreshes with one token, exactly one wins.
    The row comes back as a transient copy (idp.store.driver).
    """
    ts = now()
    row = fetch_one(db, _ROTATE, (ts, successor_hash, token_hash, client_id, ts))
    return _TOKENS.instance(row) if row is not None else None


def peek(db: Session, token_hash: str) -> RefreshToken | None:
    """The token's row as a transient copy, for the refresh grant's first look at it."""
    row = fetch_one(db, _PEEK, (token_hash,))
    return _TOKENS.instance(row) if row is not None else None


def get(db: Session, token_hash: str) -> RefreshToken | None:
    """The token's row in the Session, read afresh (a rotation may have changed it since)."""
    return db.get(RefreshToken, token_hash, populate_existing=True)


def family(db: Session, family_id: str) -> TokenFamily | None:
    return db.get(TokenFamily, family_id)


def live_family(db: Session, family_id: str) -> TokenFamily | None:
    """The family, if neither revoked nor past its lifetime, as a transient copy."""
    row = fetch_one(db, _FAMILY, (family_id,))
    found = _FAMILIES.instance(row) if row is not None else None
    if found is None or found.revoked_at is not None or found.expires_at <= now():
        return None
    return found


def revoke_family(db: Session, family_id: str, reason: str) -> bool:
    """Revoke a family, its refresh tokens and the access tokens it produced; False if it was
    already revoked."""
    ts = now()
    changed = db.execute(
        update(TokenFamily)
        .where(TokenFamily.id == family_id, TokenFamily.revoked_at.is_(None))
        .values(revoked_at=ts, revoke_reason=reason),
        execution_options={"synchronize_session": False},
    ).rowcount  # type: ignore[attr-defined]
    jtis = db.execute(
        select(FamilyAccessToken.jti, FamilyAccessToken.expires_at).where(
            FamilyAccessToken.family_id == family_id, FamilyAccessToken.expires_at > ts
        )
    ).all()
    for jti, expires_at in jtis:
        revocations.revoke(db, jti, expires_at, reason)
    return bool(changed)


def live_families_of_session(db: Session, sid: str) -> list[str]:
    """The unrevoked families a session started, except offline ones (OIDC Core §11: they
    outlive the session)."""
    return list(
        db.scalars(
            select(TokenFamily.id).where(
                TokenFamily.sid == sid,
                TokenFamily.offline.is_(False),
                TokenFamily.revoked_at.is_(None),
            )
        )
    )


def live_families_of_user(db: Session, user_id: str, client_id: str | None = None) -> list[str]:
    """The unrevoked families of a user; of one client's only, when client_id is given."""
    query = select(TokenFamily.id).where(
        TokenFamily.user_id == user_id, TokenFamily.revoked_at.is_(None)
    )
    if client_id is not None:
        query = query.where(TokenFamily.client_id == client_id)
    return list(db.scalars(query))


def live_families_of_client(db: Session, client_id: str) -> list[str]:
    """The unrevoked families of a client, of every user (offline ones included)."""
    return list(
        db.scalars(
            select(TokenFamily.id).where(
                TokenFamily.client_id == client_id, TokenFamily.revoked_at.is_(None)
            )
        )
    )


def clients_holding_tokens(db: Session, user_id: str) -> dict[str, int]:
    """client_id -> when the newest live family of this user began, for each client that
    holds one (an application can keep access without a consent on file: a trusted one)."""
    rows = db.execute(
        select(TokenFamily.client_id, func.max(TokenFamily.created_at))
        .where(
            TokenFamily.user_id == user_id,
            TokenFamily.revoked_at.is_(None),
            TokenFamily.expires_at > now(),
        )
        .group_by(TokenFamily.client_id)
    ).all()
    return {client_id: int(created) for client_id, created in rows}
