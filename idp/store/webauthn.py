"""WebAuthn credentials (passkeys and security keys) a user registered."""

from __future__ import annotations

from sqlalchemy import JSON, ForeignKey, LargeBinary, String, Text, delete, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from idp.store.base import Base


class WebAuthnCredential(Base):
    __tablename__ = "webauthn_credentials"

    # Our own id for the credential (in /account URLs): not the authenticator's credential id.
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The authenticator's credential id, base64url (up to 1,023 bytes), and its SHA-256 for
    # the lookup an assertion makes.
    credential_id: Mapped[str] = mapped_column(Text)
    credential_id_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE_Key
    sign_count: Mapped[int] = mapped_column(default=0)
    transports: Mapped[list[str]] = mapped_column(JSON, default=list)
    aaguid: Mapped[str | None] = mapped_column(String(36))
    # Flags from registration (WebAuthn L3 §6.1): BE (may be synced: amr `swk`, else `hwk`).
    backup_eligible: Mapped[bool] = mapped_column(default=False)
    backed_up: Mapped[bool] = mapped_column(default=False)
    # A resident key: usable for sign-in without a password or a username.
    discoverable: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[int]
    last_used_at: Mapped[int | None]


def of_user(db: Session, user_id: str) -> list[WebAuthnCredential]:
    return list(
        db.scalars(
            select(WebAuthnCredential)
            .where(WebAuthnCredential.user_id == user_id)
            .order_by(WebAuthnCredential.created_at)
        )
    )


def count_of(db: Session, user_id: str) -> int:
    return int(db.scalar(select(func.count()).where(WebAuthnCredential.user_id == user_id)) or 0)


def remove(db: Session, user_id: str, id: str) -> bool:
    result = db.execute(
        delete(WebAuthnCredential).where(
            WebAuthnCredential.user_id == user_id, WebAuthnCredential.id == id
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
