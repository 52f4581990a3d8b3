"""Second factors a user holds: a TOTP seed (sealed under the KEK) and recovery codes.

The TOTP replay guard (RFC 6238 §5.2) is one conditional UPDATE: a time step is accepted only
if it is newer than the last accepted one, so two parallel sign-ins cannot both use one code.
Recovery codes carry 120 random bits, so a SHA-256 stores them (NIST SP 800-63B-4 §3.1.2); one
DELETE ... RETURNING consumes a code, so it works once however many try it at once.
"""

from __future__ import annotations

from sqlalchemy import (
    ForeignKey,
    LargeBinary,
    String,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from idp.store.base import Base, now
from idp.store.driver import Sql, fetch_one
from idp.store.roles import ADMIN


class TotpFactor(Base):
    __tablename__ = "totp_factors"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    # AES-GCM under the KEK, bound to the user id (AAD): a seed copied to another row opens not.
    sealed_seed: Mapped[bytes] = mapped_column(LargeBinary)
    # None until the user proved with one code that the authenticator holds the seed.
    confirmed_at: Mapped[int | None]
    # The newest time step accepted; -1 before any.
    last_step: Mapped[int] = mapped_column(default=-1)
    created_at: Mapped[int]


class RecoveryCode(Base):
    __tablename__ = "recovery_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[int]


# Every sign-in asks this, some pages twice: on the driver's cursor (idp.store.driver), in one
# round trip. The role condition is roles.live()'s.
_SUMMARY = Sql(
    "SELECT EXISTS (SELECT 1 FROM totp_factors WHERE user_id = ? AND confirmed_at IS NOT NULL),"
    " (SELECT count(*) FROM webauthn_credentials WHERE user_id = ?),"
    " (SELECT count(*) FROM recovery_codes WHERE user_id = ?),"
    " EXISTS (SELECT 1 FROM user_roles WHERE user_id = ? AND role = ?"
    " AND (expires_at IS NULL OR expires_at > ?))"
)


def summary(db: Session, user_id: str) -> tuple[bool, int, int, bool]:
    """In one round trip: a confirmed TOTP factor, how many WebAuthn credentials and unused
    recovery codes, and whether the user holds the admin role (every sign-in asks this)."""
    row = fetch_one(db, _SUMMARY, (user_id, user_id, user_id, user_id, ADMIN, now()))
    assert row is not None  # a SELECT without FROM has one row
    return bool(row[0]), int(row[1]), int(row[2]), bool(row[3])


def totp_of(db: Session, user_id: str) -> TotpFactor | None:
    return db.get(TotpFactor, user_id)


def put_totp(db: Session, user_id: str, sealed_seed: bytes) -> TotpFactor:
    """A new, unconfirmed seed for the user, replacing any unconfirmed one (never a confirmed
    one: that needs removing first)."""
    db.execute(
        delete(TotpFactor).where(TotpFactor.user_id == user_id, TotpFactor.confirmed_at.is_(None))
    )
    row = TotpFactor(user_id=user_id, sealed_seed=sealed_seed, created_at=now())
    db.add(row)
    db.flush()
    return row


def accept_step(db: Session, user_id: str, step: int, confirm: bool = False) -> bool:
    """Accept time step `step` once: True only if no step as new was accepted before (and, with
    `confirm`, the factor becomes confirmed in the same statement)."""
    values: dict[str, object] = {"last_step": step}
    where = [TotpFactor.user_id == user_id, TotpFactor.last_step < step]
    if confirm:
        values["confirmed_at"] = now()
        where.append(TotpFactor.confirmed_at.is_(None))
    else:
        where.append(TotpFactor.confirmed_at.is_not(None))
    result = db.execute(
        update(TotpFactor).where(*where).values(**values),
        execution_options={"synchronize_session": False},
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def delete_totp(db: Session, user_id: str) -> bool:
    result = db.execute(delete(TotpFactor).where(TotpFactor.user_id == user_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def reseal_totp(db: Session, user_id: str, sealed_seed: bytes) -> None:
    db.execute(
        update(TotpFactor).where(TotpFactor.user_id == user_id).values(sealed_seed=sealed_seed)
    )


def all_totp(db: Session) -> list[TotpFactor]:
    return list(db.scalars(select(TotpFactor)))


def replace_recovery_codes(db: Session, user_id: str, code_hashes: list[str]) -> None:
    """A new set of codes; the old set is void."""
    db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    ts = now()
    db.add_all(RecoveryCode(code_hash=h, user_id=user_id, created_at=ts) for h in code_hashes)
    db.flush()


def consume_recovery_code(db: Session, user_id: str, code_hash: str) -> bool:
    """Use one code: True for exactly one of any number of parallel tries."""
    used = db.execute(
        delete(RecoveryCode)
        .where(RecoveryCode.user_id == user_id, RecoveryCode.code_hash == code_hash)
        .returning(RecoveryCode.code_hash)
    ).first()
    return used is not None


def recovery_codes_left(db: Session, user_id: str) -> int:
    return int(db.scalar(select(func.count()).where(RecoveryCode.user_id == user_id)) or 0)


def delete_recovery_codes(db: Session, user_id: str) -> int:
    result = db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    return int(result.rowcount)  # type: ignore[attr-defined]


def has_second_factor(db: Session, user_id: str) -> bool:
    """Whether the user holds a second factor: a confirmed TOTP seed or any WebAuthn
    credential (recovery codes only stand in for one, so they do not count)."""
    # Imported here: the WebAuthn table has its own module, and this keeps factors.py's
    # imports as they were for the functions above.
    from idp.store.webauthn import WebAuthnCredential

    totp = select(TotpFactor.user_id).where(
        TotpFactor.user_id == user_id, TotpFactor.confirmed_at.is_not(None)
    )
    key = select(WebAuthnCredential.id).where(WebAuthnCredential.user_id == user_id)
    return bool(db.scalar(select(totp.exists())) or db.scalar(select(key.exists())))
