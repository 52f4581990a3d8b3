"""The admin pages' four eyes: the role-grant and client forms say the admin role and the admin
scopes wait for approval; the Approvals page lists who asked what until when, and a different
administrator, freshly signed in, approves or rejects with a POST form."""

from __future__ import annotations

from idp.admin import approvals
from idp.admin.users import grant_role
from idp.store import roles, users
from tests.admin.pages.admin_helpers import age_sign_in, form_of, sign_in_admin
from tests.helpers import Harness
from tests.token_helpers import sql


def ask_admin(idp: Harness, user_id: str, actor: str) -> str:
    """The admin role asked for the user by `actor`; the pending change's id."""
    with idp.runtime.sessions.begin() as db:
        user = users.get(db, user_id)
        assert user is not None
        pending = grant_role(db, user, "admin", actor=actor).pending
        assert pending is not None
        return pending.id


def holds_admin(idp: Harness, user_id: str) -> bool:
    with idp.runtime.reads.begin() as db:
        return roles.holds(db, user_id, roles.ADMIN)


def test_the_grant_form_says_the_admin_role_waits_and_it_does(idp: Harness) -> None:
    sign_in_admin(idp)
    alice = idp.user()
    fields = form_of(idp, f"/admin/users/{alice}")
    fields.update(role="admin")
    done = idp.http.post(f"/admin/users/{alice}/grant-role", data=fields)
    assert done.status_code == 303
    page = idp.http.get(done.headers["location"]).text
    assert "waits for approval" in page and 'href="/admin/approvals"' in page
    assert not holds_admin(idp, alice)


def test_the_approvals_page_lists_and_a_different_admin_approves(idp: Harness) -> None:
    root = idp.user("root@example.com", is_admin=True)
    sign_in_admin(idp)
    alice = idp.user()
    change_id = ask_admin(idp, alice, f"user:{root}")
    dashboard = " ".join(idp.http.get("/admin").text.split())
    assert "<dt>Pending approvals</dt><dd>1</dd>" in dashboard
    page = idp.http.get("/admin/approvals")
    assert page.status_code == 200
    assert (
        f"user:{root}" in page.text and change_id in page.text and "grant role admin" in page.text
    )
    fields = form_of(idp, "/admin/approvals")
    done = idp.http.post(f"/admin/approvals/{change_id}/approve", data=fields)
    assert done.status_code == 303 and done.headers["location"].endswith("notice=approved")
    assert holds_admin(idp, alice)
    assert "No change waits for approval" in idp.http.get("/admin/approvals").text


def test_the_requester_cannot_approve_on_the_pages(idp: Harness) -> None:
    admin = sign_in_admin(idp)
    alice = idp.user()
    change_id = ask_admin(idp, alice, f"user:{admin}")
    page = idp.http.get("/admin/approvals").text
    assert "Needs a different administrator" in page
    fields = form_of(idp, "/admin/approvals")
    refused = idp.http.post(f"/admin/approvals/{change_id}/approve", data=fields)
    assert refused.status_code == 403
    assert not holds_admin(idp, alice)


def test_a_reject_on_the_pages(idp: Harness) -> None:
    root = idp.user("root@example.com", is_admin=True)
    sign_in_admin(idp)
    alice = idp.user()
    change_id = ask_admin(idp, alice, f"user:{root}")
    fields = form_of(idp, "/admin/approvals")
    done = idp.http.post(f"/admin/approvals/{change_id}/reject", data=fields)
    assert done.status_code == 303 and done.headers["location"].endswith("notice=rejected")
    with idp.runtime.reads.begin() as db:
        assert approvals.get_change(db, change_id).status == "rejected"
    assert not holds_admin(idp, alice)


def test_approving_needs_a_fresh_sign_in_and_the_csrf_token(idp: Harness) -> None:
    root = idp.user("root@example.com", is_admin=True)
    sign_in_admin(idp)
    alice = idp.user()
    change_id = ask_admin(idp, alice, f"user:{root}")
    fields = form_of(idp, "/admin/approvals")
    forged = idp.http.post(f"/admin/approvals/{change_id}/approve", data={"csrf_token": "x"})
    assert forged.status_code == 403
    age_sign_in(idp, 3600)
    stale = idp.http.post(f"/admin/approvals/{change_id}/approve", data=fields)
    assert stale.status_code == 403 and "sign in again" in stale.text.lower()
    assert not holds_admin(idp, alice)


def test_an_expired_change_is_refused_on_the_pages(idp: Harness) -> None:
    root = idp.user("root@example.com", is_admin=True)
    sign_in_admin(idp)
    alice = idp.user()
    change_id = ask_admin(idp, alice, f"user:{root}")
    fields = form_of(idp, "/admin/approvals")
    sql(idp, "UPDATE pending_changes SET expires_at = 1")
    refused = idp.http.post(f"/admin/approvals/{change_id}/approve", data=fields)
    assert refused.status_code == 409 and "expired" in refused.text
    assert not holds_admin(idp, alice)


def test_the_client_form_says_admin_scopes_wait(idp: Harness) -> None:
    sign_in_admin(idp)
    form = idp.http.get("/admin/clients/new").text
    assert "waits for approval" in form
    fields = {
        **form_of(idp, "/admin/clients/new"),
        "client_name": "Ops",
        "grant_types": "client_credentials",
        "scope": "ops idp:admin",
        "token_endpoint_auth_method": "client_secret_basic",
    }
    page = idp.http.post("/admin/clients/new", data=fields)
    assert page.status_code == 200 and "wait for approval" in page.text
    with idp.runtime.reads.begin() as db:
        (change,) = approvals.list_pending(db).items
        assert change.scopes == ["idp:admin"]
    assert 'href="/admin/approvals"' in page.text
