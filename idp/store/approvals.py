"""Pending changes: a sensitive admin change (the admin role for a user, an admin API scope for
a client) held until a second administrator approves it, for at most a day."""

from __future__ import annotations

from sqlalchemy import ForeignKey, String, exists, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from idp.store.base import Base, now
from idp.store.roles import ADMIN, UserRole, live
from idp.store.users import User

# A request waits this long for a second administrator, then cannot be approved.
LIFETIME = 86400

ROLE_GRANT = "role_grant"
CLIENT_SCOPES = "client_scopes"

PENDING = "pending"
APPROVED = "approved"
REJECTED = "rejected"


class PendingChange(Base):
    __tablename__ = "pending_changes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # ROLE_GRANT or CLIENT_SCOPES
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    client_id: Mapped[str | None] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str | None] = mapped_column(String(64))
    # The scopes a CLIENT_SCOPES change adds to the client's registration.
    scopes: Mapped[list[str] | None]
    # The end of a time-boxed ROLE_GRANT (None: until revoked); past it, no approval.
    grant_until: Mapped[int | None]
    requested_by: Mapped[str] = mapped_column(String(128))
    requested_at: Mapped[int]
    expires_at: Mapped[int] = mapped_column(index=True)
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decided_at: Mapped[int | None]


def add(db: Session, change: PendingChange) -> PendingChange:
    db.add(change)
    db.flush()
    return change


def get(db: Session, change_id: str) -> PendingChange | None:
    return db.get(PendingChange, change_id) if len(change_id) <= 36 else None


def same_pending(db: Session, change: PendingChange) -> PendingChange | None:
    """A live pending request for exactly this change (a form sent twice asks once)."""
    return db.scalar(
        select(PendingChange).where(
            PendingChange.status == PENDING,
            PendingChange.expires_at > now(),
            PendingChange.kind == change.kind,
            PendingChange.user_id.is_(None)
            if change.user_id is None
            else PendingChange.user_id == change.user_id,
            PendingChange.client_id.is_(None)
            if change.client_id is None
            else PendingChange.client_id == change.client_id,
            PendingChange.role.is_(None)
            if change.role is None
            else PendingChange.role == change.role,
            PendingChange.grant_until.is_(None)
            if change.grant_until is None
            else PendingChange.grant_until == change.grant_until,
        )
    )


def decide(db: Session, change_id: str, status: str, actor: str) -> PendingChange | None:
    """Mark a live pending change approved or rejected, once (one conditional UPDATE: two
    administrators deciding at once cannot both win); None if it was not live and pending."""
    return db.scalars(
        update(PendingChange)
        .where(
            PendingChange.id == change_id,
            PendingChange.status == PENDING,
            PendingChange.expires_at > now(),
        )
        .values(status=status, decided_by=actor[:128], decided_at=now())
        .returning(PendingChange),
        execution_options={"synchronize_session": "fetch"},
    ).one_or_none()


def pending(db: Session, after: tuple[int, str] | None, limit: int) -> list[PendingChange]:
    """Live pending changes, oldest request first, after the key (requested_at, id)."""
    query = select(PendingChange).where(
        PendingChange.status == PENDING, PendingChange.expires_at > now()
    )
    if after is not None:
        at, change_id = after
        query = query.where(
            (PendingChange.requested_at > at)
            | ((PendingChange.requested_at == at) & (PendingChange.id > change_id))
        )
    return list(
        db.scalars(query.order_by(PendingChange.requested_at, PendingChange.id).limit(limit))
    )


def pending_count(db: Session) -> int:
    return int(
        db.scalar(
            select(func.count())
            .select_from(PendingChange)
            .where(PendingChange.status == PENDING, PendingChange.expires_at > now())
        )
        or 0
    )


def pending_for_user(db: Session, user_id: str) -> list[PendingChange]:
    return list(
        db.scalars(
            select(PendingChange)
            .where(
                PendingChange.user_id == user_id,
                PendingChange.status == PENDING,
                PendingChange.expires_at > now(),
            )
            .order_by(PendingChange.requested_at, PendingChange.id)
        )
    )


def any_active_admin(db: Session) -> bool:
    """Whether an enabled user holds a live admin grant (else the first grant bootstraps)."""
    return bool(
        db.scalar(
            select(
                exists().where(
                    UserRole.role == ADMIN,
                    live(),
                    UserRole.user_id == User.id,
                    User.disabled.is_(False),
                )
            )
        )
    )
