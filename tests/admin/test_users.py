"""Creating users (idp/admin/users.py): the password policy of NIST SP 800-63B-4 §3.1.1.2 as it
applies to a new account, which has no second factor yet."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from idp.admin.users import InvalidUser, grant_role, revoke_role
from idp.store import users
from idp.store.users import User
from tests.helpers import Harness
from tests.token_helpers import audit_events, json_of, sql


def emails(idp: Harness) -> list[str]:
    with idp.runtime.sessions() as db:
        return list(db.scalars(select(User.email)))


def test_a_new_account_needs_a_password_of_fifteen_characters(idp: Harness) -> None:
    """§3.1.1.2: a password that is the account's only factor SHALL be at least 15 characters;
    a new account has no second factor, so 14 are refused (nothing stored) and 15 accepted."""
    with pytest.raises(InvalidUser, match="at least 15"):
        idp.user("short@example.com", password="zq7Kx9pWm3vR2t")  # 14 characters
    assert emails(idp) == []
    idp.user("long@example.com", password="zq7Kx9pWm3vR2tL")  # 15 characters
    assert emails(idp) == ["long@example.com"]


def test_role_changes_are_audited_with_the_actor_and_the_roles_before_and_after(
    idp: Harness,
) -> None:
    """Issue 14: a permission change names who made it and what the user held before and
    after it."""
    user_id = idp.user("carol@example.com")
    with idp.runtime.sessions.begin() as db:
        user = users.get(db, user_id)
        assert user is not None
        grant_role(db, user, "auditor", actor="user:admin-1")
        grant_role(db, user, "reader", actor="user:admin-1")
        revoke_role(db, user, "auditor", actor="cli")
    granted = [json_of(d) for _, uid, d in audit_events(idp, "role.granted") if uid == user_id]
    assert [g["roles"] for g in granted] == [
        {"before": [], "after": ["auditor"]},
        {"before": ["auditor"], "after": ["auditor", "reader"]},
    ]
    [revoked] = [json_of(d) for _, uid, d in audit_events(idp, "role.revoked") if uid == user_id]
    assert revoked["roles"] == {"before": ["auditor", "reader"], "after": ["reader"]}
    actors = sql(idp, "SELECT actor FROM audit_events WHERE event LIKE 'role.%' ORDER BY id")
    assert [a for (a,) in actors][-3:] == ["user:admin-1", "user:admin-1", "cli"]
