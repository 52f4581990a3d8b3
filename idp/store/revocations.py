"""Revoked access tokens, by jti, kept until the token would have expired anyway."""

from __future__ import annotations

from sqlalchemy import String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from idp.store.base import Base, now
from idp.store.upsert import insert_ignore


class RevokedToken(Base):
    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(index=True)
    revoked_at: Mapped[int]
    reason: Mapped[str] = mapped_column(String(64))


def revoke(db: Session, jti: str, expires_at: int, reason: str) -> None:
    insert_ignore(db, RevokedToken, jti=jti, expires_at=expires_at, revoked_at=now(), reason=reason)


def is_revoked(db: Session, jti: str) -> bool:
    return db.scalar(select(RevokedToken.jti).where(RevokedToken.jti == jti)) is not None
