"""/admin/api/users, /roles, /keys and /audit: every change made through the admin services,
with the caller as the audit trail's actor."""

from __future__ import annotations

from typing import Any

import pytest

from tests.admin.api.tokens import call, service, service_token
from tests.helpers import PASSWORD, Harness
from tests.mfa_helpers import enrol_totp
from tests.refresh_helpers import OFFLINE_SCOPE, introspected, refresh, resource_server, userinfo
from tests.token_helpers import error_of, sql


@pytest.fixture
def admin(idp: Harness) -> str:
    return service_token(idp, service(idp))


def new_user(idp: Harness, admin: str, **body: Any) -> dict[str, Any]:
    response = call(
        idp, "POST", "/users", admin,
        json={"email": "bob@example.com", "password": PASSWORD, **body},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_create_a_user_who_can_sign_in(idp: Harness, admin: str) -> None:
    out = new_user(idp, admin, name="Bob", roles=["auditor"])
    assert (out["email"], out["name"], out["roles"]) == ("bob@example.com", "Bob", ["auditor"])
    assert "password_hash" not in out and PASSWORD not in str(out)
    assert idp.login("bob@example.com").status_code == 303


@pytest.mark.parametrize(
    "body,field",
    [
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": "x@example.com", "password": "short"}, "password"),
        ({"email": "x@example.com", "password": PASSWORD, "roles": ["ok", "Bad Role"]}, "roles[1]"),
        ({"email": "x@example.com"}, "password"),
    ],
)  # fmt: skip
def test_bad_users_are_422_by_field(
    idp: Harness, admin: str, body: dict[str, Any], field: str
) -> None:
    response = call(idp, "POST", "/users", admin, json=body)
    assert response.status_code == 422 and field in response.json()["fields"], response.text
    assert sql(idp, "SELECT count(*) FROM users")[0][0] == 0


def test_a_duplicate_email_is_refused(idp: Harness, admin: str) -> None:
    new_user(idp, admin)
    response = call(
        idp, "POST", "/users", admin, json={"email": "BOB@example.com", "password": PASSWORD}
    )
    assert response.status_code == 422 and "email" in response.json()["fields"]


def test_list_and_search_users_by_role(idp: Harness, admin: str) -> None:
    for name in ("carol", "alice", "dave"):
        idp.user(f"{name}@example.com")
    idp.user("root@example.com", is_admin=True)
    page = call(idp, "GET", "/users", admin, params={"limit": 2}).json()
    assert [u["email"] for u in page["items"]] == ["alice@example.com", "carol@example.com"]
    rest = call(idp, "GET", "/users", admin, params={"cursor": page["next_cursor"]}).json()
    assert [u["email"] for u in rest["items"]] == ["dave@example.com", "root@example.com"]
    assert rest["next_cursor"] is None
    admins = call(idp, "GET", "/users", admin, params={"role": "admin"}).json()["items"]
    assert [u["email"] for u in admins] == ["root@example.com"]
    assert call(idp, "GET", "/roles", admin).json() == [{"role": "admin", "users": 1}]


def test_disabling_a_user_kills_sessions_and_tokens_at_once(idp: Harness, admin: str) -> None:
    """Sessions end; refresh and access tokens die at userinfo, introspection and refresh."""
    alice = idp.user("alice@example.com")
    rp = idp.client(grant_types=["authorization_code", "refresh_token"])
    api = resource_server(idp)
    tokens = idp.tokens(rp, scope=OFFLINE_SCOPE)
    response = call(idp, "POST", f"/users/{alice}/disable", admin, json={"reason": "left"})
    assert response.status_code == 200, response.text
    assert response.json()["sessions"] == 1 and response.json()["refresh_token_families"] == 1
    assert userinfo(idp, tokens["access_token"]).status_code == 401
    assert introspected(idp, api, tokens["access_token"]) == {"active": False}
    assert error_of(refresh(idp, rp, tokens["refresh_token"])) == "invalid_grant"
    shown = call(idp, "GET", f"/users/{alice}", admin).json()
    assert shown["disabled"] is True and shown["sessions"] == 0
    assert call(idp, "POST", f"/users/{alice}/enable", admin).json() == {"changed": True}
    (actor,) = sql(idp, "SELECT actor FROM audit_events WHERE event = 'user.disabled'")
    assert actor[0].startswith("client:")


def test_end_sessions_and_reset_mfa(idp: Harness, admin: str) -> None:
    alice = idp.user("alice@example.com")
    enrol_totp(idp, alice)
    idp.login()
    assert call(idp, "GET", f"/users/{alice}", admin).json()["mfa"]["authenticator_app"] is True
    ended = call(idp, "POST", f"/users/{alice}/sessions/revoke", admin)
    assert ended.status_code == 200
    reset = call(idp, "POST", f"/users/{alice}/mfa/reset", admin)
    assert reset.json() == {"authenticator_app": True, "passkeys": 0, "recovery_codes": 0}
    assert call(idp, "GET", f"/users/{alice}", admin).json()["mfa"]["authenticator_app"] is False
    assert call(idp, "POST", "/users/nobody/mfa/reset", admin).status_code == 404


def test_grant_and_revoke_a_role(idp: Harness, admin: str) -> None:
    alice = idp.user("alice@example.com")
    assert call(idp, "PUT", f"/users/{alice}/roles/auditor", admin).json() == {"changed": True}
    assert call(idp, "PUT", f"/users/{alice}/roles/auditor", admin).json() == {"changed": False}
    assert call(idp, "GET", f"/users/{alice}", admin).json()["roles"] == ["auditor"]
    bad = call(idp, "PUT", f"/users/{alice}/roles/Not%20Valid", admin)
    assert bad.status_code == 422 and "role" in bad.json()["fields"]
    assert call(idp, "DELETE", f"/users/{alice}/roles/auditor", admin).json() == {"changed": True}
    events = call(idp, "GET", "/audit", admin, params={"subject": alice}).json()["items"]
    assert [e["event"] for e in events][:2] == ["role.revoked", "role.granted"]
    assert all(e["actor"] and e["actor"].startswith("client:") for e in events[:2])


def test_keys_rotate_and_revoke(idp: Harness, admin: str) -> None:
    keys = call(idp, "GET", "/keys", admin).json()
    active = [k for k in keys if k["state"] == "active" and k["alg"] == "RS256"]
    assert len(active) == 1 and "d" not in active[0]["public_jwk"]
    staged = call(idp, "POST", "/keys", admin, json={"alg": "RS256"})
    assert staged.status_code == 201 and staged.json()["state"] == "staged"
    revoked = call(idp, "POST", f"/keys/{active[0]['kid']}/revoke", admin)
    assert revoked.status_code == 200
    assert revoked.json()["replacement"]["kid"] == staged.json()["kid"]
    assert call(idp, "POST", f"/keys/{active[0]['kid']}/revoke", admin).status_code == 404
    bad = call(idp, "POST", "/keys", admin, json={"alg": "HS256"})
    assert bad.status_code == 422 and "alg" in bad.json()["fields"]


def test_audit_search_and_pagination(idp: Harness, admin: str) -> None:
    for i in range(3):
        idp.user(f"user{i}@example.com")
    page = call(idp, "GET", "/audit", admin, params={"event": "user.created", "limit": 2}).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = call(
        idp, "GET", "/audit", admin, params={"event": "user.created", "cursor": page["next_cursor"]}
    ).json()
    ids = [e["id"] for e in page["items"] + rest["items"]]
    assert len(ids) == 3 == len(set(ids))
    assert call(idp, "GET", "/audit", admin, params={"since": 0, "until": 1}).json()["items"] == []
    bad = call(idp, "GET", "/audit", admin, params={"event": "nope"})
    assert bad.status_code == 422 and "event" in bad.json()["fields"]
