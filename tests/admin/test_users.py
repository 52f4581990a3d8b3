"""Creating users (idp/admin/users.py): the password policy of NIST SP 800-63B-4 §3.1.1.2 as it
applies to a new account, which has no second factor yet."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from idp.admin.users import InvalidUser
from idp.store.users import User
from tests.helpers import Harness


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
