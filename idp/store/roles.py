"""Roles held by users: named permissions a resource server checks in the `roles` claim."""

from __future__ import annotations

import re

from sqlalchemy import ColumnElement, ForeignKey, Select, String, delete, func, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from idp.store.base import Base, now
from idp.store.driver import Sql, fetch_all

# A role name travels in the `roles` claim and in resource servers' configuration: a letter,
# then up to 63 of a-z, 0-9, '_', '.', ':', '-'.
NAME = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")
# Reserved: the IdP's own administrators. Holders must sign in with two factors.
ADMIN = "admin"


class UserRole(Base):
    __tablename__ = "user_roles"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(64), primary_key=True)
    granted_at: Mapped[int]
    # A time-boxed grant ends here (checked at every read, on every worker); None: until revoked.
    expires_at: Mapped[int | None]


def live() -> ColumnElement[bool]:
    """The grant has not expired: a condition for every read of who holds what."""
    return or_(UserRole.expires_at.is_(None), UserRole.expires_at > now())


# Read at every token a user gets: on the driver's cursor (idp.store.driver). The same
# condition as live().
_HELD = Sql(
    "SELECT role FROM user_roles WHERE user_id = ? AND (expires_at IS NULL OR expires_at > ?)"
    " ORDER BY role"
)


def of(db: Session, user_id: str) -> list[str]:
    return [role for (role,) in fetch_all(db, _HELD, (user_id, now()))]


def grants_of(db: Session, user_id: str) -> list[tuple[str, int | None]]:
    """The user's live grants by role name, with when each ends (None: until revoked)."""
    rows = db.execute(
        select(UserRole.role, UserRole.expires_at)
        .where(UserRole.user_id == user_id, live())
        .order_by(UserRole.role)
    )
    return [(role, expires_at) for role, expires_at in rows]


def add(db: Session, user_id: str, role: str, expires_at: int | None = None) -> bool:
    """Grant the role until `expires_at` (None: until revoked); true if that changed anything
    (a new grant, one that had expired, or a grant whose end moves)."""
    row = db.get(UserRole, (user_id, role))
    if row is None:
        db.add(UserRole(user_id=user_id, role=role, granted_at=now(), expires_at=expires_at))
        db.flush()
        return True
    expired = row.expires_at is not None and row.expires_at <= now()
    if not expired and row.expires_at == expires_at:
        return False
    if expired:
        row.granted_at = now()
    row.expires_at = expires_at
    db.flush()
    return True


def remove(db: Session, user_id: str, role: str) -> bool:
    """True if the user held the role."""
    result = db.execute(delete(UserRole).where(UserRole.user_id == user_id, UserRole.role == role))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def holds(db: Session, user_id: str, role: str) -> bool:
    held = db.scalar(
        select(UserRole.role).where(UserRole.user_id == user_id, UserRole.role == role, live())
    )
    return held is not None


def holders(role: str) -> Select[str]:
    """The ids of the users who hold the role, as a subquery."""
    return select(UserRole.user_id).where(UserRole.role == role, live())


def counts(db: Session) -> list[tuple[str, int]]:
    """Every role held by anyone, with how many users hold it, by name."""
    rows = db.execute(
        select(UserRole.role, func.count())
        .where(live())
        .group_by(UserRole.role)
        .order_by(UserRole.role)
    )
    return [(role, int(n)) for role, n in rows]


def grants_of_role(db: Session, role: str) -> list[tuple[str, str, int | None]]:
    """Who holds the role now: (user id, email, when the grant ends or None), by email."""
    from idp.store.users import User

    rows = db.execute(
        select(User.id, User.email, UserRole.expires_at)
        .join(UserRole, UserRole.user_id == User.id)
        .where(UserRole.role == role, live())
        .order_by(User.email)
    )
    return [(user_id, email, until) for user_id, email, until in rows]
