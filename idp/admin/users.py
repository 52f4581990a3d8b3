"""Create users: the email is checked, the password meets the policy and is hashed with argon2id."""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from idp.audit import AuditEvent, record
from idp.authn.passwords import Passwords, check_policy
from idp.store import users
from idp.store.users import User

# Deliberately loose (RFC 5321 allows much); it catches typos, not every invalid address.
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


class InvalidUser(ValueError):
    """The user cannot be created; the message is one line."""


def create_user(
    db: Session,
    passwords: Passwords,
    *,
    email: str,
    password: str,
    min_length: int,
    name: str | None = None,
    is_admin: bool = False,
) -> User:
    email = users.normalize_email(email)
    if not EMAIL.match(email) or len(email) > 320:
        raise InvalidUser(f"{email!r} is not an email address")
    if name is not None and len(name) > 200:
        raise InvalidUser("name must be at most 200 characters")
    try:
        check_policy(password, min_length, email)
    except ValueError as exc:
        raise InvalidUser(str(exc)) from None
    if users.by_email(db, email) is not None:
        raise InvalidUser(f"a user with email {email} already exists")
    user = users.create(db, email, passwords.hash(password), name=name, is_admin=is_admin)
    record(db, AuditEvent.USER_CREATED, user_id=user.id, admin=is_admin)
    return user
