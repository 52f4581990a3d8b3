"""Signing keys: public JWK in the clear, private JWK sealed with the key-encryption key."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import JSON, LargeBinary, String, delete, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from idp.store.base import Base


class KeyState(StrEnum):
    STAGED = "staged"  # in /jwks.json, not signing yet
    ACTIVE = "active"  # signs new tokens; exactly one per algorithm
    RETIRED = "retired"  # still in /jwks.json until everything it signed has expired
    REVOKED = "revoked"  # withdrawn in an emergency: neither published nor trusted


PUBLISHED_STATES = (KeyState.STAGED, KeyState.ACTIVE, KeyState.RETIRED)


class SigningKey(Base):
    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, object]] = mapped_column(JSON)
    private_jwk_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[int]
    # When a staged key starts signing; set when it is staged.
    activates_at: Mapped[int | None]
    activated_at: Mapped[int | None]
    retired_at: Mapped[int | None]
    # When a retired key leaves the JWKS: after every token it signed has expired.
    remove_after: Mapped[int | None]
    revoked_at: Mapped[int | None]
    updated_at: Mapped[int] = mapped_column(index=True)


def all_keys(db: Session) -> list[SigningKey]:
    return list(db.scalars(select(SigningKey).order_by(SigningKey.created_at, SigningKey.kid)))


def published(db: Session) -> list[SigningKey]:
    return [key for key in all_keys(db) if key.state in PUBLISHED_STATES]


def fingerprint(db: Session) -> tuple[tuple[str, str, int], ...]:
    """What changes whenever the key set does: each key's id, state and last change."""
    rows = db.execute(
        select(SigningKey.kid, SigningKey.state, SigningKey.updated_at).order_by(SigningKey.kid)
    ).all()
    return tuple((kid, state, updated) for kid, state, updated in rows)


def get(db: Session, kid: str) -> SigningKey | None:
    return db.get(SigningKey, kid)


def in_state(db: Session, alg: str, state: KeyState) -> list[SigningKey]:
    return list(
        db.scalars(
            select(SigningKey)
            .where(SigningKey.alg == alg, SigningKey.state == state)
            .order_by(SigningKey.created_at, SigningKey.kid)
        )
    )


def active(db: Session, alg: str) -> SigningKey | None:
    found = in_state(db, alg, KeyState.ACTIVE)
    return found[0] if found else None


def remove(db: Session, kid: str) -> None:
    db.execute(delete(SigningKey).where(SigningKey.kid == kid))


def newest(db: Session) -> SigningKey | None:
    return db.scalars(select(SigningKey).order_by(SigningKey.created_at.desc()).limit(1)).first()


def advisory_lock(db: Session, lock_id: int) -> None:
    """PostgreSQL: serialise key changes across workers and nodes until the transaction ends."""
    db.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
