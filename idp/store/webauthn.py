"""WebAuthn credentials (passkeys and security keys) a user registered, and the challenges
of the ceremonies that register and use them.

The signature counter (WebAuthn L3 §6.1.1) advances in one conditional UPDATE, so two parallel
assertions carrying one counter value cannot both pass. A challenge is stored on the
interaction (sign-in) or the session (/account registration) that asked for it and is taken
once: the second take of the same challenge finds nothing.
"""

from __future__ import annotations

import uuid

from sqlalchemy import JSON, ForeignKey, LargeBinary, String, Text, func, inspect, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from idp.security.secrets import sha256_hex
from idp.store.base import Base, now
from idp.store.interactions import Interaction
from idp.store.sessions import BrowserSession

# WebAuthn L3 recommends ceremony timeouts from 5 minutes (300,000 ms) up; a challenge that
# outlives the ceremony only widens the window for replaying it, so it lives 5 minutes.
CHALLENGE_TTL = 300


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


def add(
    db: Session,
    user_id: str,
    credential_id_b64: str,
    public_key: bytes,
    sign_count: int,
    transports: list[str],
    aaguid: str | None,
    backup_eligible: bool,
    backed_up: bool,
    discoverable: bool,
    name: str,
) -> WebAuthnCredential:
    row = WebAuthnCredential(
        id=str(uuid.uuid4()),
        user_id=user_id,
        credential_id=credential_id_b64,
        credential_id_hash=sha256_hex(credential_id_b64),
        name=name,
        public_key=public_key,
        sign_count=sign_count,
        transports=list(transports),
        aaguid=aaguid,
        backup_eligible=backup_eligible,
        backed_up=backed_up,
        discoverable=discoverable,
        created_at=now(),
        last_used_at=None,
    )
    db.add(row)
    db.flush()
    return row


def of_user(db: Session, user_id: str) -> list[WebAuthnCredential]:
    return list(
        db.scalars(
            select(WebAuthnCredential)
            .where(WebAuthnCredential.user_id == user_id)
            .order_by(WebAuthnCredential.created_at, WebAuthnCredential.id)
        )
    )


def by_credential_id(db: Session, credential_id_b64: str) -> WebAuthnCredential | None:
    """The credential an assertion names (found by the hash: the id itself is up to 1,023
    bytes, too long for an index on every database)."""
    return db.scalars(
        select(WebAuthnCredential).where(
            WebAuthnCredential.credential_id_hash == sha256_hex(credential_id_b64)
        )
    ).one_or_none()


def get(db: Session, user_id: str, id: str) -> WebAuthnCredential | None:
    """The user's credential with our id `id`; None if unknown or another user's."""
    return db.scalars(
        select(WebAuthnCredential).where(
            WebAuthnCredential.id == id, WebAuthnCredential.user_id == user_id
        )
    ).one_or_none()


def rename(db: Session, user_id: str, id: str, name: str) -> bool:
    result = db.execute(
        update(WebAuthnCredential)
        .where(WebAuthnCredential.id == id, WebAuthnCredential.user_id == user_id)
        .values(name=name)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def remove(db: Session, user_id: str, id: str) -> bool:
    row = get(db, user_id, id)
    if row is None:
        return False
    db.delete(row)
    db.flush()
    return True


def count_of(db: Session, user_id: str) -> int:
    return int(db.scalar(select(func.count()).where(WebAuthnCredential.user_id == user_id)) or 0)


def advance_sign_count(db: Session, id: str, new_count: int) -> bool:
    """Accept the counter of an assertion once (WebAuthn L3 §7.2, the signCount step): True if it is
    greater than the stored one, or both are 0 (an authenticator that does not count, as
    synced passkeys do, always sends 0). False is a regression: a cloned authenticator, or a
    parallel assertion with the same counter that won."""
    stored = WebAuthnCredential.sign_count
    # Counters are never negative, so "both 0" is "stored is 0" when 0 comes in.
    advances = stored == 0 if new_count == 0 else stored < new_count
    result = db.execute(
        update(WebAuthnCredential)
        .where(WebAuthnCredential.id == id, advances)
        .values(sign_count=new_count, last_used_at=now()),
        execution_options={"synchronize_session": False},
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _keep_in_step(db: Session, row: object) -> None:
    """After an UPDATE of a row's challenge that bypassed the session: a row this session holds
    reads it afresh. A read-only copy (store.driver.Columns.instance, as the pages and the
    sign-in path hold) is in no session, and stays as it was read."""
    state = inspect(row, raiseerr=False)  # None for an id_hash and for a copy
    if state is not None and state.session is db:
        db.expire(row, ["challenge", "challenge_expires_at"])


def put_interaction_challenge(db: Session, interaction: Interaction | str, challenge: str) -> None:
    """Store the challenge of a sign-in ceremony, replacing any earlier one (the latest page
    the person opened is the one they answer). `interaction` is the row or its id_hash."""
    id_hash = interaction.id_hash if isinstance(interaction, Interaction) else interaction
    db.execute(
        update(Interaction)
        .where(Interaction.id_hash == id_hash)
        .values(challenge=challenge, challenge_expires_at=now() + CHALLENGE_TTL),
        execution_options={"synchronize_session": False},
    )
    _keep_in_step(db, interaction)


def take_interaction_challenge(db: Session, id_hash: str) -> str | None:
    """The interaction's live challenge, cleared in the same step: None if none was issued,
    it expired, or it was taken already (by this request or a parallel one)."""
    seen = db.scalar(
        select(Interaction.challenge).where(
            Interaction.id_hash == id_hash,
            Interaction.challenge.is_not(None),
            Interaction.challenge_expires_at > now(),
        )
    )
    if seen is None:
        return None
    # UPDATE ... RETURNING returns the new (NULL) value; a conditional UPDATE on the value
    # seen lets only one of two parallel takes clear it.
    result = db.execute(
        update(Interaction)
        .where(Interaction.id_hash == id_hash, Interaction.challenge == seen)
        .values(challenge=None, challenge_expires_at=None),
        execution_options={"synchronize_session": False},
    )
    return seen if result.rowcount == 1 else None  # type: ignore[attr-defined]


def put_session_challenge(db: Session, session: BrowserSession | str, challenge: str) -> None:
    """Store the challenge of a registration from /account; `session` is the row or its
    id_hash."""
    id_hash = session.id_hash if isinstance(session, BrowserSession) else session
    db.execute(
        update(BrowserSession)
        .where(BrowserSession.id_hash == id_hash)
        .values(challenge=challenge, challenge_expires_at=now() + CHALLENGE_TTL),
        execution_options={"synchronize_session": False},
    )
    _keep_in_step(db, session)


def take_session_challenge(db: Session, id_hash: str) -> str | None:
    """The session's live challenge, cleared in the same step (see take_interaction_challenge)."""
    seen = db.scalar(
        select(BrowserSession.challenge).where(
            BrowserSession.id_hash == id_hash,
            BrowserSession.challenge.is_not(None),
            BrowserSession.challenge_expires_at > now(),
        )
    )
    if seen is None:
        return None
    result = db.execute(
        update(BrowserSession)
        .where(BrowserSession.id_hash == id_hash, BrowserSession.challenge == seen)
        .values(challenge=None, challenge_expires_at=None),
        execution_options={"synchronize_session": False},
    )
    return seen if result.rowcount == 1 else None  # type: ignore[attr-defined]
