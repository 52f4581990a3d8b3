"""Create users and change their roles: the email is checked, the password meets the policy and
is hashed with argon2id, and every role change is audited."""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy.orm import Session

from idp.audit.events import AuditEvent, record
from idp.authn.passwords import Passwords, check_policy, min_password_length
from idp.settings import Settings
from idp.store import roles, users
from idp.store.roles import ADMIN as ADMIN_ROLE
from idp.store.users import User

# Deliberately loose (RFC 5321 allows much); it catches typos, not every invalid address.
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
# A role name travels in the `roles` claim and in resource servers' configuration: keep it plain.
ROLE = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")


class InvalidUser(ValueError):
    """The user cannot be created; the message is one line."""


def create_user(
    db: Session,
    passwords: Passwords,
    settings: Settings,
    *,
    email: str,
    password: str,
    name: str | None = None,
    is_admin: bool = False,
    roles_granted: Sequence[str] = (),
) -> User:
    email = users.normalize_email(email)
    if not EMAIL.match(email) or len(email) > 320:
        raise InvalidUser(f"{email!r} is not an email address")
    if name is not None and len(name) > 200:
        raise InvalidUser("name must be at most 200 characters")
    try:
        # A new account has no second factor yet, so its password is its only factor.
        check_policy(password, min_password_length(settings, has_second_factor=False), email)
    except ValueError as exc:
        raise InvalidUser(str(exc)) from None
    for role in roles_granted:
        check_role(role)
    if users.by_email(db, email) is not None:
        raise InvalidUser(f"a user with email {email} already exists")
    user = users.create(db, email, passwords.hash(password), name=name)
    record(db, AuditEvent.USER_CREATED, user_id=user.id, admin=is_admin)
    for role in dict.fromkeys([*([ADMIN_ROLE] if is_admin else []), *roles_granted]):
        grant_role(db, user, role)
    return user


def check_role(role: str) -> None:
    if not ROLE.match(role):
        raise InvalidUser(
            f"role {role!r} must be a letter then up to 63 of a-z, 0-9, '_', '.', ':', '-'"
        )


def grant_role(db: Session, user: User, role: str) -> bool:
    """Give the user a role (true if it is new); their next access token carries it."""
    check_role(role)
    if not roles.add(db, user.id, role):
        return False
    record(db, AuditEvent.ROLE_GRANTED, user_id=user.id, role=role)
    return True


def revoke_role(db: Session, user: User, role: str) -> bool:
    """Take a role away (true if the user held it). Access tokens already issued keep it until
    they expire; the next one, refreshed or new, does not."""
    if not roles.remove(db, user.id, role):
        return False
    record(db, AuditEvent.ROLE_REVOKED, user_id=user.id, role=role)
    return True
