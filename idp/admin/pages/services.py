"""Thin stand-ins, over existing admin and store functions, for the user services the admin
pages need and idp.admin does not offer yet (search, describe, reset MFA with an actor)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from idp.admin import users as user_admin
from idp.authn import mfa
from idp.authn.mfa import Factors
from idp.settings import Settings
from idp.store import roles, sessions, users
from idp.store.users import User


@dataclass(frozen=True)
class UserFacts:
    user: User
    roles: list[str]
    factors: Factors
    live_sessions: int


def find_users(db: Session, q: str) -> list[User]:
    """The user with this email (the store has no search yet)."""
    found = users.by_email(db, q) if q else None
    return [found] if found else []


def describe_user(db: Session, settings: Settings, user: User) -> UserFacts:
    return UserFacts(
        user,
        roles.of(db, user.id),
        mfa.factors_of(db, user.id),
        sessions.live_count(db, user.id, settings.session_idle_timeout_seconds),
    )


def reset_mfa(db: Session, user_id: str, actor: str) -> Factors:
    del actor  # mfa.reset() records MFA_RESET without one
    return mfa.reset(db, user_id)


def grant_role(db: Session, user: User, role: str, actor: str) -> bool:
    del actor
    return user_admin.grant_role(db, user, role)


def revoke_role(db: Session, user: User, role: str, actor: str) -> bool:
    del actor
    return user_admin.revoke_role(db, user, role)
