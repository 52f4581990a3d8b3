"""The admin API's four eyes: granting the admin role or adding an admin scope answers 202
with a pending change; /approvals lists, shows, approves and rejects, and only a different
administrator, as a person, approves."""

from __future__ import annotations

import time

import pytest

from idp.store import approvals as store
from tests.admin.api.tokens import (
    admin_app,
    call,
    minted,
    service,
    service_token,
    sign_in_with_totp,
)
from tests.helpers import RP, Harness
from tests.mfa_helpers import enrol_totp
from tests.token_helpers import sql


def person(idp: Harness, email: str) -> tuple[str, str]:
    """An administrator's own admin API token (two factors, idp:admin): (user id, token)."""
    user_id = idp.user(email, is_admin=True)
    app = admin_app(idp)
    return user_id, minted(idp, subject=user_id, client_id=app.client_id, acr="aal2")


def ask_admin_for(idp: Harness, token: str, user_id: str, **body: object) -> dict[str, object]:
    response = call(idp, "PUT", f"/users/{user_id}/roles/admin", token, json=body or None)
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


def test_an_admin_grant_answers_202_with_the_pending_change(idp: Harness) -> None:
    root, token = person(idp, "root@example.com")
    alice = idp.user()
    change = ask_admin_for(idp, token, alice)
    assert change["status"] == "pending" and change["kind"] == "role_grant"
    assert change["requested_by"] == f"user:{root}"
    assert change["expires_at"] == change["requested_at"] + 24 * 3600  # type: ignore[operator]
    shown = call(idp, "GET", f"/users/{alice}", token).json()
    assert shown["roles"] == []
    listed = call(idp, "GET", "/approvals", token).json()
    assert [c["id"] for c in listed["items"]] == [change["id"]]
    assert call(idp, "GET", f"/approvals/{change['id']}", token).json()["user_id"] == alice


def test_a_different_admin_approves_and_the_user_becomes_an_admin(idp: Harness) -> None:
    _, token = person(idp, "root@example.com")
    _, bob = person(idp, "bob@example.com")
    alice = idp.user()
    secret = enrol_totp(idp, alice)
    change = ask_admin_for(idp, token, alice)
    approved = call(idp, "POST", f"/approvals/{change['id']}/approve", bob)
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    assert call(idp, "GET", f"/users/{alice}", token).json()["roles"] == ["admin"]
    own = sign_in_with_totp(idp, admin_app(idp), "alice@example.com", secret, "openid idp:admin")
    assert call(idp, "GET", "/clients", own).status_code == 200


@pytest.mark.parametrize("who", ["requester", "target"])
def test_self_approval_is_forbidden(idp: Harness, who: str) -> None:
    _, root = person(idp, "root@example.com")
    alice, alices = person(idp, "alice@example.com")
    # alice is an admin for another hour; root asks for a lasting grant for her
    sql(
        idp,
        "UPDATE user_roles SET expires_at = :t WHERE user_id = :u",
        t=int(time.time()) + 3600,
        u=alice,
    )
    change = ask_admin_for(idp, root, alice)
    approver = root if who == "requester" else alices
    refused = call(idp, "POST", f"/approvals/{change['id']}/approve", approver)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert call(idp, "GET", f"/approvals/{change['id']}", root).json()["status"] == "pending"


def test_an_admin_service_may_ask_but_not_approve(idp: Harness) -> None:
    person(idp, "root@example.com")
    token = service_token(idp, service(idp))
    change = ask_admin_for(idp, token, idp.user())
    assert str(change["requested_by"]).startswith("client:")
    refused = call(idp, "POST", f"/approvals/{change['id']}/approve", token)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert call(idp, "POST", f"/approvals/{change['id']}/reject", token).status_code == 403


def test_a_reader_cannot_decide(idp: Harness) -> None:
    _, root = person(idp, "root@example.com")
    change = ask_admin_for(idp, root, idp.user())
    reader = service_token(idp, service(idp, "idp:admin.read"))
    response = call(idp, "POST", f"/approvals/{change['id']}/approve", reader)
    assert response.status_code == 403 and response.json()["error"] == "insufficient_scope"


def test_an_expired_change_is_a_conflict(idp: Harness) -> None:
    _, root = person(idp, "root@example.com")
    _, bob = person(idp, "bob@example.com")
    alice = idp.user()
    change = ask_admin_for(idp, root, alice)
    then = int(time.time()) - 24 * 3600 - 5
    sql(
        idp, "UPDATE pending_changes SET requested_at = :t, expires_at = :e", t=then, e=then + 86400
    )
    refused = call(idp, "POST", f"/approvals/{change['id']}/approve", bob)
    assert refused.status_code == 409 and refused.json()["error"] == "conflict"
    assert call(idp, "GET", f"/users/{alice}", bob).json()["roles"] == []
    assert call(idp, "GET", "/approvals", bob).json()["items"] == []


def test_reject_and_unknown_and_decided_changes(idp: Harness) -> None:
    _, root = person(idp, "root@example.com")
    _, bob = person(idp, "bob@example.com")
    alice = idp.user()
    change = ask_admin_for(idp, root, alice)
    rejected = call(idp, "POST", f"/approvals/{change['id']}/reject", bob)
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    again = call(idp, "POST", f"/approvals/{change['id']}/approve", bob)
    assert again.status_code == 409
    missing = call(idp, "POST", "/approvals/nope/approve", bob)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert call(idp, "GET", f"/users/{alice}", bob).json()["roles"] == []


def test_a_time_boxed_grant_keeps_its_end_through_the_approval(idp: Harness) -> None:
    _, root = person(idp, "root@example.com")
    _, bob = person(idp, "bob@example.com")
    alice = idp.user()
    change = ask_admin_for(idp, root, alice, expires_in=8 * 3600)
    until = change["grant_until"]
    assert isinstance(until, int) and until > time.time() + 7 * 3600
    assert call(idp, "POST", f"/approvals/{change['id']}/approve", bob).status_code == 200
    grants = call(idp, "GET", f"/users/{alice}", root).json()["role_grants"]
    assert grants == [{"role": "admin", "expires_at": until}]


def test_the_list_is_paged_by_key(idp: Harness) -> None:
    _, root = person(idp, "root@example.com")
    asked = [ask_admin_for(idp, root, idp.user(f"u{i}@example.com"))["id"] for i in range(3)]
    first = call(idp, "GET", "/approvals", root, params={"limit": 2}).json()
    second = call(
        idp, "GET", "/approvals", root, params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert second["next_cursor"] is None
    assert sorted(c["id"] for c in first["items"] + second["items"]) == sorted(asked)
    bad = call(idp, "GET", "/approvals", root, params={"cursor": "junk"})
    assert bad.status_code == 422 and "cursor" in bad.json()["fields"]


def test_an_admin_scope_in_a_registration_waits_then_gives_an_admin_token(idp: Harness) -> None:
    """202: the client is registered without the admin scope, its secret in this answer; once
    approved, its client_credentials token carries idp:admin and opens the admin API."""
    _, root = person(idp, "root@example.com")
    _, bob = person(idp, "bob@example.com")
    body = {
        "client_name": "Provisioning",
        "grant_types": ["client_credentials"],
        "scope": "reports idp:admin",
    }
    response = call(idp, "POST", "/clients", root, json=body)
    assert response.status_code == 202, response.text
    made, change = response.json()["client"], response.json()["pending_change"]
    assert made["scope"] == "reports" and made["client_secret"]
    assert change["kind"] == "client_scopes" and change["scopes"] == ["idp:admin"]
    rp = RP(made["client_id"], made["client_secret"])
    assert idp.client_credentials(rp, scope="idp:admin").status_code == 400
    assert call(idp, "POST", f"/approvals/{change['id']}/approve", bob).status_code == 200
    token = service_token(idp, rp, "idp:admin")
    assert call(idp, "GET", "/users", token).status_code == 200


def test_an_update_applies_its_other_changes_and_holds_the_admin_scope(idp: Harness) -> None:
    _, root = person(idp, "root@example.com")
    rp = idp.client(
        name="Reports", grant_types=["client_credentials"], scopes=["reports"], redirect_uris=[]
    )
    changes = {"client_name": "Reports v2", "scope": "reports idp:admin.read"}
    response = call(idp, "PATCH", f"/clients/{rp.client_id}", root, json=changes)
    assert response.status_code == 202, response.text
    assert response.json()["client"]["client_name"] == "Reports v2"
    assert response.json()["client"]["scope"] == "reports"
    assert response.json()["pending_change"]["scopes"] == ["idp:admin.read"]
    # Taking an admin scope away needs nobody's approval.
    admin_rp = idp.client(
        name="Ops", grant_types=["client_credentials"], scopes=["idp:admin"], redirect_uris=[]
    )
    dropped = call(idp, "PATCH", f"/clients/{admin_rp.client_id}", root, json={"scope": "ops"})
    assert dropped.status_code == 200 and dropped.json()["scope"] == "ops"


def test_the_openapi_document_lists_the_approvals(idp: Harness) -> None:
    document = idp.http.get("/admin/api/openapi.json").json()
    assert "/approvals/{change_id}/approve" in document["paths"]
    grant = document["paths"]["/users/{user_id}/roles/{role}"]["put"]["responses"]
    assert "202" in grant
    assert store.LIFETIME == 86400
