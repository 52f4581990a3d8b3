"""jti values of client assertions already used (RFC 7523 §3, item 7: replay protection)."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, Session, mapped_column

from idp.store.base import Base
from idp.store.upsert import insert_ignore


class UsedAssertion(Base):
    __tablename__ = "used_client_assertions"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    jti: Mapped[str] = mapped_column(String(256), primary_key=True)
    expires_at: Mapped[int] = mapped_column(index=True)


def first_use(db: Session, client_id: str, jti: str, expires_at: int) -> bool:
    """Record the jti; False if this client used it before (a replay)."""
    return insert_ignore(db, UsedAssertion, client_id=client_id, jti=jti, expires_at=expires_at)
