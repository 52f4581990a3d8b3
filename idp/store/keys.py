"""Signing keys: public JWK in the clear, private JWK sealed with the key-encryption key."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import JSON, LargeBinary, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from idp.store.base import Base


class KeyState(StrEnum):
    STAGED = "staged"  # in /jwks.json, not signing yet
    ACTIVE = "active"  # signs new tokens; exactly one per algorithm
    RETIRED = "retired"  # still in /jwks.json until everything it signed has expired


class SigningKey(Base):
    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, object]] = mapped_column(JSON)
    private_jwk_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[int]
    activated_at: Mapped[int | None]
    retired_at: Mapped[int | None]
    updated_at: Mapped[int] = mapped_column(index=True)


def published(db: Session) -> list[SigningKey]:
    return list(db.scalars(select(SigningKey).order_by(SigningKey.created_at, SigningKey.kid)))


def version(db: Session) -> tuple[int, int]:
    """A cheap fingerprint of the key set: (row count, latest change)."""
    count, latest = db.execute(
        select(func.count(), func.coalesce(func.max(SigningKey.updated_at), 0))
    ).one()
    return int(count), int(latest)


def active(db: Session, alg: str) -> SigningKey | None:
    return db.scalars(
        select(SigningKey).where(SigningKey.alg == alg, SigningKey.state == KeyState.ACTIVE)
    ).first()
