"""Roles held by users: named permissions a resource server checks in the `roles` claim."""

from __future__ import annotations

import re

from sqlalchemy import ForeignKey, Select, String, delete, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from idp.store.base import Base, now

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


def of(db: Session, user_id: str) -> list[str]:
    return list(
        db.scalars(select(UserRole.role).where(UserRole.user_id == user_id).order_by(UserRole.role))
    )


def add(db: Session, user_id: str, role: str) -> bool:
    """True if the user did not hold the role before."""
    if db.get(UserRole, (user_id, role)) is not None:
        return False
    db.add(UserRole(user_id=user_id, role=role, granted_at=now()))
    db.flush()
    return True


def remove(db: Session, user_id: str, role: str) -> bool:
    """True if the user held the role."""
    result = db.execute(delete(UserRole).where(UserRole.user_id == user_id, UserRole.role == role))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def holds(db: Session, user_id: str, role: str) -> bool:
    return db.get(UserRole, (user_id, role)) is not None


def holders(role: str) -> Select[str]:
    """The ids of the users who hold the role, as a subquery."""
    return select(UserRole.user_id).where(UserRole.role == role)


def counts(db: Session) -> list[tuple[str, int]]:
    """Every role held by anyone, with how many users hold it, by name."""
    rows = db.execute(
        select(UserRole.role, func.count()).group_by(UserRole.role).order_by(UserRole.role)
    )
    return [(role, int(n)) for role, n in rows]
