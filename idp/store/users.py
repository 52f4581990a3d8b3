"""People who sign in."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, String, bindparam, false, func, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from idp.store.base import Base, now
from idp.store.driver import Columns, Sql, fetch_one


class User(Base):
    __tablename__ = "users"

    # The `sub` claim: opaque, stable, never reassigned (OIDC Core §2).
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    email_verified: Mapped[bool] = mapped_column(default=False)
    # Set when the password no longer meets the policy (a short one allowed only with MFA, after
    # the factors were reset): the next sign-in with it asks for a new one.
    password_change_required: Mapped[bool] = mapped_column(default=False, server_default=false())
    disabled: Mapped[bool] = mapped_column(default=False)
    # Access tokens issued for this user before this time are no longer accepted (disabled,
    # sessions revoked by an administrator): one comparison on every worker.
    tokens_revoked_before: Mapped[int | None]
    created_at: Mapped[int]
    updated_at: Mapped[int]


def normalize_email(email: str) -> str:
    return email.strip().lower()


def create(db: Session, email: str, password_hash: str, name: str | None = None) -> User:
    ts = now()
    user = User(
        id=str(uuid.uuid4()),
        email=normalize_email(email),
        name=name,
        password_hash=password_hash,
        created_at=ts,
        updated_at=ts,
    )
    db.add(user)
    db.flush()
    return user


def get(db: Session, user_id: str) -> User | None:
    return db.get(User, user_id)


_USERS = Columns(User)
_READ = Sql(_USERS.select + " WHERE id = ?")


def read(db: Session, user_id: str) -> User | None:
    """The user as a transient copy, for a token grant that only reads who it is for (on the
    driver's cursor: a quarter of `get`'s cost). Never change it: it is in no Session."""
    row = fetch_one(db, _READ, (user_id,))
    return _USERS.instance(row) if row is not None else None


_BY_EMAIL = select(User).where(User.email == bindparam("email"))  # built once: every sign-in


def by_email(db: Session, email: str) -> User | None:
    return db.scalars(_BY_EMAIL, {"email": normalize_email(email)}).one_or_none()


_READ_BY_EMAIL = Sql(_USERS.select + " WHERE email = ?")


def read_by_email(db: Session, email: str) -> User | None:
    """As by_email(), as a read-only copy on the driver's cursor: the sign-in's lookup."""
    row = fetch_one(db, _READ_BY_EMAIL, (normalize_email(email),))
    return _USERS.instance(row) if row is not None else None


def set_password_hash(db: Session, user: User, password_hash: str) -> None:
    user.password_hash = password_hash
    user.updated_at = now()


def any_user(db: Session) -> bool:
    return db.scalar(select(User.id).limit(1)) is not None


def search(
    db: Session, q: str | None, user_ids: Select[str] | None, after: str | None, limit: int
) -> list[User]:
    """Users by email, whose email or name contains `q` (any case), among `user_ids` (a
    subquery) if given, after the previous page's last email; `limit` rows at most."""
    stmt = select(User)
    if q:
        needle = q.lower()
        stmt = stmt.where(
            or_(
                User.email.contains(needle, autoescape=True),  # emails are stored lower case
                func.lower(User.name).contains(needle, autoescape=True),
            )
        )
    if user_ids is not None:
        stmt = stmt.where(User.id.in_(user_ids))
    if after is not None:
        stmt = stmt.where(User.email > after)
    return list(db.scalars(stmt.order_by(User.email).limit(limit)))


def count(db: Session) -> tuple[int, int]:
    """How many users there are, and how many of them are disabled."""
    total, disabled = db.execute(
        select(func.count(), func.count().filter(User.disabled.is_(True))).select_from(User)
    ).one()
    return int(total), int(disabled)
