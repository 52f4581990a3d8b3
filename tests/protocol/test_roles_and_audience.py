"""Issue 5, the protected API's needs: the user's roles in access tokens (RFC 9068 §2.2.3.1)
and a per-client audience (RFC 9068 §3), so a resource server can check both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from idp.admin.users import InvalidUser, grant_role, revoke_role
from idp.store import roles, users
from tests.conftest import make_settings, migrated_app
from tests.helpers import PASSWORD, RP, Harness, form_fields
from tests.refresh_helpers import (
    OFFLINE_SCOPE,
    introspected,
    offline_client,
    refreshed,
    resource_server,
    userinfo,
)
from tests.token_helpers import ISSUER, audit_events, sql

API = "https://api.example/notes"


def change_roles(
    idp: Harness, user_id: str, add: tuple[str, ...] = (), drop: tuple[str, ...] = ()
) -> None:
    with idp.runtime.sessions.begin() as db:
        user = users.get(db, user_id)
        assert user is not None
        for role in add:
            grant_role(db, user, role, actor="test")
        for role in drop:
            revoke_role(db, user, role, actor="test")


def role_of(detail: str | dict[str, Any]) -> Any:
    """The audit detail's role (raw SQL gives JSON as text on SQLite)."""
    return (json.loads(detail) if isinstance(detail, str) else detail)["role"]


def access_claims(idp: Harness, tokens: dict[str, Any]) -> dict[str, Any]:
    return dict(idp.decode(tokens["access_token"]).claims)


# --- roles ------------------------------------------------------------------------------------


ROLES_SCOPES = ["openid", "profile", "email", "offline_access", "roles"]


def roles_client(idp: Harness, **kwargs: Any) -> RP:
    """A client registered for the `roles` scope."""
    return idp.client(scopes=ROLES_SCOPES, **kwargs)


def test_access_token_carries_the_users_roles(idp: Harness) -> None:
    """RFC 9068 §2.2.3.1 (`roles`, as in SCIM, RFC 7643 §4.1.2): under the `roles` scope the
    access token lists every role the user holds, sorted; the ID token does not (roles are for
    resource servers)."""
    user_id = idp.user(roles_granted=["notes.editor", "auditor"])
    tokens = idp.tokens(roles_client(idp), scope="openid roles")
    assert access_claims(idp, tokens)["roles"] == ["auditor", "notes.editor"]
    assert "roles" not in idp.decode(tokens["id_token"]).claims
    with idp.runtime.sessions.begin() as db:
        assert roles.of(db, user_id) == ["auditor", "notes.editor"]


def test_no_roles_means_no_roles_claim(idp: Harness) -> None:
    """RFC 9068 §2.2.3.1: the claim is optional; a user without roles gets none (not [])."""
    idp.user()
    assert "roles" not in access_claims(idp, idp.tokens(roles_client(idp), scope="openid roles"))


def test_roles_only_when_asked_for(idp: Harness) -> None:
    """Least privilege: without the `roles` scope no client learns the user's roles, whatever
    it is registered for."""
    idp.user(roles_granted=["payroll.admin", "auditor"])
    assert "roles" not in access_claims(idp, idp.tokens(roles_client(idp), scope="openid"))


def test_a_client_sees_only_the_roles_it_may(idp: Harness) -> None:
    """`roles_visible`: an app for auditors never learns that a user is an admin (of payroll;
    this IdP's own admins sign in with two factors, which is beside the point here)."""
    idp.user(roles_granted=["payroll.admin", "auditor", "notes.editor"])
    rp = roles_client(idp, roles_visible=["auditor", "reports.viewer"])
    assert access_claims(idp, idp.tokens(rp, scope="openid roles"))["roles"] == ["auditor"]


def test_no_visible_role_held_means_no_claim(idp: Harness) -> None:
    idp.user(roles_granted=["payroll.admin"])
    rp = roles_client(idp, roles_visible=["auditor"])
    assert "roles" not in access_claims(idp, idp.tokens(rp, scope="openid roles"))


def test_the_consent_page_names_the_roles_scope(idp: Harness) -> None:
    idp.user()
    rp = roles_client(idp)
    response = idp.follow_local(idp.authorize(rp, scope="openid roles"))
    page = idp.http.get(response.headers["location"])
    fields = form_fields(page.text)
    fields.update(email="alice@example.com", password=PASSWORD)
    consent = idp.follow_local(idp.http.post("/login", data=fields))
    assert consent.status_code == 200, consent.text
    assert "See the roles you hold" in consent.text


def test_client_credentials_tokens_have_no_user_roles(idp: Harness) -> None:
    """RFC 6749 §4.4: the client acts for itself; no user's roles can reach its token."""
    idp.user(roles_granted=["admin"])
    service = resource_server(idp)
    response = idp.client_credentials(service, scope="api")
    assert response.status_code == 200, response.text
    assert "roles" not in access_claims(idp, response.json())


def test_role_changes_reach_the_next_refreshed_token(idp: Harness) -> None:
    """A granted role appears, and a revoked one disappears, at the next refresh (RFC 6749 §6),
    without a new sign-in: roles are read each time a token is issued."""
    user_id = idp.user(roles_granted=["reader"])
    rp = offline_client(idp, scopes=ROLES_SCOPES)
    tokens = idp.tokens(rp, scope=OFFLINE_SCOPE + " roles")
    assert access_claims(idp, tokens)["roles"] == ["reader"]

    change_roles(idp, user_id, add=("writer",))
    second = refreshed(idp, rp, tokens["refresh_token"])
    assert access_claims(idp, second)["roles"] == ["reader", "writer"]

    change_roles(idp, user_id, drop=("reader", "writer"))
    third = refreshed(idp, rp, second["refresh_token"])
    assert "roles" not in access_claims(idp, third)


def test_role_changes_are_audited_once(idp: Harness) -> None:
    """Zero Trust audit trail: every permission change is recorded with the user and role; a
    grant of a role already held, or a revoke of one not held, changes nothing and records
    nothing."""
    user_id = idp.user()
    change_roles(idp, user_id, add=("auditor", "auditor"))
    change_roles(idp, user_id, drop=("auditor", "auditor", "never-held"))
    granted = audit_events(idp, "role.granted")
    revoked = audit_events(idp, "role.revoked")
    assert [(e.user_id, role_of(e.detail)) for e in granted] == [(user_id, "auditor")]
    assert [(e.user_id, role_of(e.detail)) for e in revoked] == [(user_id, "auditor")]


@pytest.mark.parametrize(
    "role", ["", "Admin", "1st", "with space", "a" * 65, "naïve", "x/y", 'q"uote']
)
def test_bad_role_names_are_refused_and_nothing_is_written(idp: Harness, role: str) -> None:
    """A role travels in a JSON claim and in resource servers' configuration: lower-case ASCII,
    starting with a letter, at most 64 characters. A refused role writes nothing."""
    user_id = idp.user()
    with pytest.raises(InvalidUser, match="role"):
        change_roles(idp, user_id, add=(role,))
    assert sql(idp, "SELECT count(*) FROM user_roles")[0][0] == 0
    assert audit_events(idp, "role.granted") == []


def test_a_refused_role_at_creation_creates_no_user(idp: Harness) -> None:
    """Nothing half-written: a user created with a bad role does not exist afterwards."""
    with pytest.raises(InvalidUser, match="role"):
        idp.user(roles_granted=["ok", "Not OK"])
    assert sql(idp, "SELECT count(*) FROM users")[0][0] == 0


def test_introspection_reports_roles(idp: Harness) -> None:
    """RFC 7662 §2.2 allows further claims: a resource server that introspects sees the same
    roles as one that validates the JWT itself."""
    idp.user(roles_granted=["auditor"])
    rp = roles_client(idp)
    tokens = idp.tokens(rp, scope="openid roles")
    answer = introspected(idp, resource_server(idp), tokens["access_token"])
    assert answer["active"] is True and answer["roles"] == ["auditor"]


# --- audience -----------------------------------------------------------------------------------


def test_default_audience_is_the_issuer(idp: Harness) -> None:
    """RFC 9068 §3: without a registered resource the default audience applies."""
    idp.user()
    assert access_claims(idp, idp.tokens(idp.client()))["aud"] == ISSUER


def test_registered_audience_plus_userinfo_for_openid(idp: Harness) -> None:
    """RFC 9068 §3: a client registered for an API gets tokens whose `aud` names that API; with
    scope openid the token must also open userinfo (OIDC Core §5.3), so `aud` adds this server.
    Introspection (RFC 7662 §2.2) reports that audience."""
    idp.user()
    rp = idp.client(audiences=[API])
    tokens = idp.tokens(rp)
    assert access_claims(idp, tokens)["aud"] == [API, ISSUER]
    assert userinfo(idp, tokens["access_token"]).status_code == 200
    answer = introspected(idp, resource_server(idp), tokens["access_token"])
    assert answer["active"] is True and answer["aud"] == [API, ISSUER]


def test_service_token_for_an_api_is_not_accepted_by_userinfo(idp: Harness) -> None:
    """RFC 9068 §4 (the resource server checks `aud`): a client_credentials token for the API
    names only the API, so this server's own userinfo endpoint refuses it, while introspection
    reports it active with its audience."""
    service = idp.client(
        name="svc",
        grant_types=["client_credentials"],
        scopes=["notes.read"],
        redirect_uris=[],
        audiences=[API],
    )
    response = idp.client_credentials(service, scope="notes.read")
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert access_claims(idp, {"access_token": token})["aud"] == API
    refused = userinfo(idp, token)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    answer = introspected(idp, resource_server(idp, resources=[API]), token)
    assert answer["active"] is True and answer["aud"] == API


def test_revocation_works_for_a_token_of_another_audience(idp: Harness) -> None:
    """RFC 7009 §2.1: the client may revoke its own access token whatever its audience, and
    introspection then reports it inactive."""
    service: RP = idp.client(
        name="svc",
        grant_types=["client_credentials"],
        scopes=["notes.read"],
        redirect_uris=[],
        audiences=[API],
    )
    token = idp.client_credentials(service, scope="notes.read").json()["access_token"]
    revoked = idp.http.post("/revoke", data={"token": token}, headers=service.auth())
    assert revoked.status_code == 200
    assert introspected(idp, resource_server(idp), token) == {"active": False}


def test_userinfo_takes_only_its_own_audience(tmp_path: Path, database_url: str) -> None:
    """Userinfo's audience is the issuer, whatever IDP_ACCESS_TOKEN_AUDIENCE names: a user's
    token for the default API opens userinfo only with scope openid (its aud then names both),
    and a service's token for that API never does."""
    app = migrated_app(make_settings(database_url, tmp_path, access_token_audience=API))
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as http:
        idp = Harness(app, http)
        idp.user()
        tokens = idp.tokens(idp.client())
        assert access_claims(idp, tokens)["aud"] == [API, ISSUER]
        assert userinfo(idp, tokens["access_token"]).status_code == 200
        service = idp.client(
            grant_types=["client_credentials"], scopes=["notes.read"], redirect_uris=[]
        )
        token = idp.client_credentials(service, scope="notes.read").json()["access_token"]
        assert access_claims(idp, {"access_token": token})["aud"] == API
        assert userinfo(idp, token).status_code == 401
    app.state.runtime.engine.dispose()
