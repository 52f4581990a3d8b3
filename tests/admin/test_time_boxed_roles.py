"""Time-boxed role grants: a grant may carry an end (`--for 8h`, the API's `expires_in`, the
pages' "For"); once it has passed, the role stops working at the next request on every
surface of the IdP (admin pages and API, userinfo, introspection), with no restart."""

from __future__ import annotations

import json
import time

import pytest

from idp.admin import approvals
from idp.admin.users import InvalidUser, admin_rights, grant_role
from idp.cli.main import main
from idp.store import roles, users
from tests.admin.api.tokens import admin_app, call, service, service_token, sign_in_with_totp
from tests.admin.pages.admin_helpers import form_of, sign_in_admin
from tests.conftest import TEST_KEK
from tests.helpers import Harness
from tests.mfa_helpers import enrol_totp
from tests.refresh_helpers import introspected, resource_server, userinfo
from tests.token_helpers import sql


def grant(idp: Harness, user_id: str, role: str, until: int | None) -> bool:
    with idp.runtime.sessions.begin() as db:
        user = users.get(db, user_id)
        assert user is not None
        return grant_role(db, user, role, actor="test", expires_at=until).changed


def approve_as_second_admin(idp: Harness, user_id: str) -> None:
    """The admin role asked for the user, approved by another administrator."""
    other = idp.user("second@example.com", is_admin=True)
    with idp.runtime.sessions.begin() as db:
        (change,) = approvals.pending_for_user(db, user_id)
        approvals.approve(db, change.id, actor=f"user:{other}")


def expire(idp: Harness, user_id: str, role: str) -> None:
    """The grant's end has passed (as if its hours went by)."""
    sql(
        idp,
        "UPDATE user_roles SET expires_at = :t WHERE user_id = :u AND role = :r",
        t=int(time.time()) - 1,
        u=user_id,
        r=role,
    )


def held(idp: Harness, user_id: str) -> list[str]:
    with idp.runtime.reads.begin() as db:
        return roles.of(db, user_id)


def test_a_time_boxed_grant_ends_by_itself(idp: Harness) -> None:
    alice = idp.user()
    assert grant(idp, alice, "auditor", int(time.time()) + 3600)
    assert held(idp, alice) == ["auditor"]
    assert grant(idp, alice, "auditor", None)  # moving its end (to never) is a change
    assert grant(idp, alice, "auditor", int(time.time()) + 60)
    expire(idp, alice, "auditor")
    assert held(idp, alice) == []
    with idp.runtime.reads.begin() as db:
        assert roles.counts(db) == []
    assert grant(idp, alice, "auditor", None)  # granting an expired role again is new
    assert held(idp, alice) == ["auditor"]
    with pytest.raises(InvalidUser):
        grant(idp, alice, "auditor", int(time.time()) - 5)


def test_an_expired_admin_grant_stops_everywhere_mid_session(idp: Harness) -> None:
    """The admin's pages, their admin API token, userinfo and introspection all refuse at
    the next request once the grant has run out."""
    root = idp.user("root@example.com")
    assert grant(idp, root, "admin", int(time.time()) + 8 * 3600)
    secret = enrol_totp(idp, root)
    token = sign_in_with_totp(idp, admin_app(idp), "root@example.com", secret, "openid idp:admin")
    api = resource_server(idp)
    assert idp.http.get("/admin").status_code == 200
    assert call(idp, "GET", "/users", token).status_code == 200
    assert userinfo(idp, token).status_code == 200
    assert introspected(idp, api, token)["active"] is True
    with idp.runtime.reads.begin() as db:
        assert [(e, u is not None) for _, e, u in admin_rights(db)] == [("root@example.com", True)]

    expire(idp, root, "admin")

    assert idp.http.get("/admin").status_code == 403
    assert call(idp, "GET", "/users", token).status_code == 403
    assert userinfo(idp, token).status_code == 401
    assert introspected(idp, api, token) == {"active": False}


def test_the_cli_time_boxes_a_grant(
    idp: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    idp.user()
    settings = idp.runtime.settings
    monkeypatch.setenv("IDP_ISSUER", settings.issuer)
    monkeypatch.setenv("IDP_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("IDP_KEY_ENCRYPTION_KEY", TEST_KEK)
    before = int(time.time())
    assert (
        main(["users", "roles", "alice@example.com", "--add", "auditor", "--for", "8h", "--json"])
        == 0
    )
    (grant_,) = json.loads(capsys.readouterr().out)["role_grants"]
    assert grant_["role"] == "auditor"
    assert before + 8 * 3600 <= grant_["expires_at"] <= int(time.time()) + 8 * 3600
    with pytest.raises(SystemExit):
        main(["users", "roles", "alice@example.com", "--add", "auditor", "--for", "soon"])
    assert "duration" in capsys.readouterr().err


def test_the_api_time_boxes_a_grant(idp: Harness) -> None:
    alice = idp.user()
    admin = service_token(idp, service(idp))
    response = call(idp, "PUT", f"/users/{alice}/roles/auditor", admin, json={"expires_in": 3600})
    assert response.json() == {"changed": True}
    (shown,) = call(idp, "GET", f"/users/{alice}", admin).json()["role_grants"]
    assert shown["role"] == "auditor" and shown["expires_at"] > time.time() + 3500
    bad = call(idp, "PUT", f"/users/{alice}/roles/auditor", admin, json={"expires_in": 5})
    assert bad.status_code == 422 and "expires_in" in bad.json()["fields"]


def test_the_pages_show_who_holds_admin_rights_until_when(idp: Harness) -> None:
    sign_in_admin(idp)
    alice = idp.user()
    fields = form_of(idp, f"/admin/users/{alice}")
    fields.update(role="admin")
    fields["for"] = "28800"
    done = idp.http.post(f"/admin/users/{alice}/grant-role", data=fields)
    assert done.status_code == 303, done.text
    assert done.headers["location"].endswith("?notice=approval-requested")
    approve_as_second_admin(idp, alice)
    assert " until " in idp.http.get(f"/admin/users/{alice}").text
    page = idp.http.get("/admin/roles").text
    assert "alice@example.com" in page and "revoked by hand" in page  # the signed-in admin's
    fields = form_of(idp, f"/admin/users/{alice}")
    fields.update(role="auditor")
    fields["for"] = "999"
    assert idp.http.post(f"/admin/users/{alice}/grant-role", data=fields).status_code == 400
