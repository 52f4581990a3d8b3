"""Create users and change their roles: the email is checked, the password meets the policy and
is hashed with argon2id, and every role change is audited."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from idp.admin import approvals
from idp.admin.listing import DEFAULT_LIMIT, Page, check_limit, decode_cursor, page_of
from idp.audit.events import AuditEvent, record
from idp.authn import mfa
from idp.authn.passwords import Passwords, check_policy, min_password_length
from idp.settings import Settings
from idp.store import roles, sessions, users
from idp.store.approvals import ROLE_GRANT, PendingChange
from idp.store.base import now
from idp.store.roles import ADMIN as ADMIN_ROLE
from idp.store.users import User

# Deliberately loose (RFC 5321 allows much); it catches typos, not every invalid address.
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
ROLE = roles.NAME


class InvalidUser(ValueError):
    """The user cannot be created; the message is one line, and `field` names the field."""

    def __init__(self, message: str, field: str = "email") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class NewUser:
    """A user checked and with the password hashed, not yet written."""

    email: str
    password_hash: str
    name: str | None
    roles: tuple[str, ...]


def prepare_user(
    passwords: Passwords,
    settings: Settings,
    *,
    email: str,
    password: str,
    name: str | None = None,
    roles_granted: Sequence[str] = (),
) -> NewUser:
    """Check a new user and hash the password, with no transaction needed: argon2 takes a
    while, and a write transaction would hold the SQLite write lock for it."""
    email = users.normalize_email(email)
    if not EMAIL.match(email) or len(email) > 320:
        raise InvalidUser(f"{email!r} is not an email address")
    if name is not None and len(name) > 200:
        raise InvalidUser("name must be at most 200 characters", "name")
    try:
        # A new account has no second factor yet, so its password is its only factor.
        check_policy(password, min_password_length(settings, has_second_factor=False), email)
    except ValueError as exc:
        raise InvalidUser(str(exc), "password") from None
    for i, role in enumerate(roles_granted):
        check_role(role, f"roles[{i}]")
    return NewUser(email, passwords.hash(password), name, tuple(dict.fromkeys(roles_granted)))


def add_user(db: Session, new: NewUser, *, actor: str | None = None) -> User:
    """Write a prepared user and grant its roles, in the caller's transaction."""
    if users.by_email(db, new.email) is not None:
        raise InvalidUser(f"a user with email {new.email} already exists")
    user = users.create(db, new.email, new.password_hash, name=new.name)
    record(db, AuditEvent.USER_CREATED, user_id=user.id, actor=actor, admin=ADMIN_ROLE in new.roles)
    for role in new.roles:
        grant_role(db, user, role, actor=actor)
    return user


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
    actor: str | None = None,
) -> User:
    """prepare_user() and add_user() in one, for callers that hold no lock worth sparing."""
    new = prepare_user(
        passwords,
        settings,
        email=email,
        password=password,
        name=name,
        roles_granted=[*([ADMIN_ROLE] if is_admin else []), *roles_granted],
    )
    return add_user(db, new, actor=actor)


def check_role(role: str, field: str = "role") -> None:
    if not ROLE.match(role):
        raise InvalidUser(
            f"role {role!r} must be a letter then up to 63 of a-z, 0-9, '_', '.', ':', '-'", field
        )


@dataclass(frozen=True)
class Granted:
    """What grant_role() did: `changed`, the grant applies now and changed anything; or
    `pending`, the admin role waits for a second administrator (idp.admin.approvals)."""

    changed: bool
    pending: PendingChange | None = None


def grant_role(
    db: Session, user: User, role: str, *, actor: str | None, expires_at: int | None = None
) -> Granted:
    """Give the user a role, until `expires_at` if given (a time-boxed grant: it stops
    working at the next request after, on every worker). Their next access token carries it.
    The admin role goes through the approval gate: it waits for a second administrator,
    unless it bootstraps the first one."""
    check_role(role)
    if expires_at is not None and expires_at <= now():
        raise InvalidUser("a time-boxed grant must end in the future", "expires_at")
    if role == ADMIN_ROLE and roles.grants_of(db, user.id).count((role, expires_at)):
        return Granted(False)  # held already, to the same end: nothing to approve
    wanted = approvals.Wanted(ROLE_GRANT, user_id=user.id, role=role, grant_until=expires_at)
    pending = approvals.gate(db, wanted, actor=actor)
    if pending is not None:
        return Granted(False, pending)
    before = roles.of(db, user.id)
    if not roles.add(db, user.id, role, expires_at):
        return Granted(False)
    record(
        db,
        AuditEvent.ROLE_GRANTED,
        user_id=user.id,
        actor=actor,
        role=role,
        until=expires_at,
        roles={"before": before, "after": roles.of(db, user.id)},
    )
    return Granted(True)


def revoke_role(db: Session, user: User, role: str, *, actor: str | None) -> bool:
    """Take a role away (true if the user held it). Access tokens already issued keep it until
    they expire; the next one, refreshed or new, does not. The admin role is checked on every
    admin request, so taking it away ends admin access at once."""
    before = roles.of(db, user.id)
    if not roles.remove(db, user.id, role):
        return False
    after = roles.of(db, user.id)
    record(
        db,
        AuditEvent.ROLE_REVOKED,
        user_id=user.id,
        actor=actor,
        role=role,
        roles={"before": before, "after": after},
    )
    return True


def reset_mfa(db: Session, user_id: str, *, actor: str | None) -> mfa.Factors:
    """Remove every second factor of the user (a lost phone); returns what was there. An
    admin, or anyone whose policy asks for two factors, sets up a new one at the next sign-in."""
    if users.get(db, user_id) is None:
        raise LookupError(user_id)
    return mfa.reset(db, user_id, actor)


def search_users(
    db: Session,
    *,
    q: str | None = None,
    role: str | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Page[User]:
    """Users by email, matching `q` (in the email or the name) and holding `role` if given.
    Raises InvalidCursor for a cursor not of this list, ValueError for a bad limit."""
    after = decode_cursor(cursor, (str,))
    holders = roles.holders(role) if role else None
    rows = users.search(db, q, holders, str(after[0]) if after else None, check_limit(limit) + 1)
    return page_of(rows, limit, lambda u: (u.email,))


def describe_user(db: Session, user: User, settings: Settings) -> dict[str, object]:
    """A user as JSON for administrators: never the password hash or a factor's secret."""
    factors = mfa.factors_of(db, user.id)
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "email_verified": user.email_verified,
        "disabled": user.disabled,
        "password_change_required": user.password_change_required,
        "roles": roles.of(db, user.id),
        "role_grants": [
            {"role": role, "expires_at": until} for role, until in roles.grants_of(db, user.id)
        ],
        "mfa": {
            "authenticator_app": factors.totp,
            "passkeys": factors.passkeys,
            "recovery_codes": factors.recovery_codes,
        },
        "sessions": sessions.live_count(db, user.id, settings.session_idle_timeout_seconds),
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    }


def admin_rights(db: Session) -> list[tuple[str, str, int | None]]:
    """Who holds the admin role, until when: (user id, email, end or None)."""
    return roles.grants_of_role(db, ADMIN_ROLE)


def role_holders(db: Session) -> list[tuple[str, int]]:
    """Every role anyone holds, and how many users hold it."""
    return roles.counts(db)
