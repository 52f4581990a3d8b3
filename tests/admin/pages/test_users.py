"""Issue 13, admin UI users: find, detail (roles, factors, disabled), create, disable/enable,
reset MFA, end sessions, grant and revoke a role; destructive ones through a confirmation."""

from __future__ import annotations

from tests.admin.pages.admin_helpers import actors, form_of, sign_in_admin
from tests.helpers import Harness
from tests.mfa_helpers import enrol_totp
from tests.token_helpers import sql


def _act(idp: Harness, user_id: str, action: str, **extra: str) -> int:
    path = f"/admin/users/{user_id}/{action}"
    fields = {**form_of(idp, path if not extra else f"{path}?role={extra['role']}"), **extra}
    return idp.http.post(path, data=fields).status_code


def test_creating_finding_and_showing_a_user(idp: Harness) -> None:
    """Users: create, search, detail."""
    sign_in_admin(idp)
    fields = {
        **form_of(idp, "/admin/users/new"),
        "email": "carol@example.com",
        "password": "a long enough first password",
    }
    created = idp.http.post("/admin/users/new", data=fields)
    assert created.status_code == 303
    detail = idp.http.get(created.headers["location"])
    assert detail.status_code == 200 and "carol@example.com" in detail.text
    assert "carol@example.com" in idp.http.get("/admin/users?q=carol").text
    assert "carol@example.com" not in idp.http.get("/admin/users?q=nobody-like-her").text
    short = idp.http.post(
        "/admin/users/new", data={**fields, "email": "d@example.com", "password": "x"}
    )
    assert short.status_code == 422


def test_disabling_and_enabling_a_user(idp: Harness) -> None:
    """Disable (confirmation first): sessions end, sign-in refused; enable again."""
    sign_in_admin(idp)
    user_id = idp.user(email="dave@example.com")
    confirm = idp.http.get(f"/admin/users/{user_id}/disable")
    assert confirm.status_code == 200 and "can no longer sign in" in confirm.text
    assert sql(idp, "SELECT disabled FROM users WHERE id = :u", u=user_id) == [(False,)]
    assert _act(idp, user_id, "disable") == 303
    assert sql(idp, "SELECT disabled FROM users WHERE id = :u", u=user_id) == [(True,)]
    fields = form_of(idp, f"/admin/users/{user_id}")
    assert idp.http.post(f"/admin/users/{user_id}/enable", data=fields).status_code == 303
    assert sql(idp, "SELECT disabled FROM users WHERE id = :u", u=user_id) == [(False,)]


def test_resetting_mfa_and_ending_sessions(idp: Harness) -> None:
    """Reset MFA removes every factor; end sessions signs the user out everywhere."""
    admin = sign_in_admin(idp)
    user_id = idp.user(email="erin@example.com")
    enrol_totp(idp, user_id)
    assert _act(idp, user_id, "reset-mfa") == 303
    assert not sql(idp, "SELECT 1 FROM totp_factors WHERE user_id = :u", u=user_id)
    assert actors(idp, "mfa.reset") == [f"user:{admin}"]
    assert _act(idp, user_id, "end-sessions") == 303


def test_granting_and_revoking_a_role(idp: Harness) -> None:
    """Grant a role from the user's page; revoke it through its confirmation."""
    admin = sign_in_admin(idp)
    user_id = idp.user(email="fred@example.com")
    fields = form_of(idp, f"/admin/users/{user_id}")
    r = idp.http.post(f"/admin/users/{user_id}/grant-role", data={**fields, "role": "billing"})
    assert r.status_code == 303
    assert "billing" in idp.http.get(f"/admin/users/{user_id}").text
    assert _act(idp, user_id, "revoke-role", role="billing") == 303
    assert not sql(idp, "SELECT 1 FROM user_roles WHERE user_id = :u", u=user_id)
    assert actors(idp, "role.revoked") == [f"user:{admin}"]
    assert actors(idp, "role.granted")[-1] == f"user:{admin}"
