"""The admin API as a resource server of this IdP: RFC 9068 §4 validation of its access
tokens on every request, RFC 6750 §3 errors, and who may hold the admin scopes."""

from __future__ import annotations

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from idp.admin import revocation
from idp.admin.users import grant_role, revoke_role
from idp.store import users
from tests.admin.api.tokens import (
    admin_app,
    admin_person,
    call,
    minted,
    service,
    service_token,
    sign_in_with_totp,
)
from tests.helpers import Harness

ISSUER = "https://testserver"


def challenge(response: object) -> str:
    return str(response.headers["www-authenticate"])  # type: ignore[attr-defined]


def test_no_token_is_401_invalid_token_with_a_challenge(idp: Harness) -> None:
    """RFC 6750 §3: a request without a token gets 401 and a Bearer challenge."""
    response = call(idp, "GET", "/clients", None)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert challenge(response).startswith("Bearer ")
    assert response.headers["cache-control"] == "no-store"


def test_a_service_token_with_the_admin_scope_works(idp: Harness) -> None:
    """RFC 9068 §2.2: a client_credentials token for the admin API's audience."""
    token = service_token(idp, service(idp))
    claims = idp.decode(token).claims
    assert claims["aud"] == ISSUER + "/admin/api" and claims["scope"] == "idp:admin"
    assert call(idp, "GET", "/clients", token).status_code == 200


def test_the_admin_api_token_does_not_open_userinfo(idp: Harness) -> None:
    """Audiences do not widen: an admin service's token is for the admin API alone."""
    token = service_token(idp, service(idp))
    assert (
        idp.http.get("/userinfo", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    )


def test_a_token_without_an_admin_scope_is_403_insufficient_scope(idp: Harness) -> None:
    """RFC 6750 §3.1 insufficient_scope: a valid token of this IdP, for the API, without the
    scope (minted: the token endpoint gives the admin audience only with an admin scope)."""
    token = minted(idp, scope="openid", audiences=[ISSUER + "/admin/api"])
    response = call(idp, "GET", "/clients", token)
    assert response.status_code == 403 and response.json()["error"] == "insufficient_scope"
    rp = service(idp, "idp:admin.read")
    response = call(
        idp,
        "GET",
        "/clients",
        minted(idp, subject=rp.client_id, client_id=rp.client_id, scope="other"),
    )
    assert response.status_code == 401  # no admin scope, so not for the admin API's audience


def test_the_read_only_scope_cannot_write(idp: Harness) -> None:
    """idp:admin.read reads; a write needs idp:admin (403 insufficient_scope), and nothing is
    written."""
    token = service_token(idp, service(idp, "idp:admin.read"))
    assert call(idp, "GET", "/clients", token).status_code == 200
    response = call(
        idp,
        "POST",
        "/clients",
        token,
        json={
            "client_name": "X",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_basic",
        },
    )
    assert response.status_code == 403 and response.json()["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in challenge(response)
    listed = call(idp, "GET", "/clients", token).json()["items"]
    assert [c["client_name"] for c in listed] == ["Admin automation"]


def test_an_expired_token_is_refused(idp: Harness) -> None:
    rp = service(idp)
    token = minted(idp, subject=rp.client_id, client_id=rp.client_id, ttl=-60)
    response = call(idp, "GET", "/clients", token)
    assert response.status_code == 401 and response.json()["error"] == "invalid_token"


def test_an_id_token_is_never_an_admin_credential(idp: Harness) -> None:
    """RFC 9068 §4: typ must be at+jwt; an ID token (typ JWT, aud the client) is refused."""
    idp.user("alice@example.com")
    rp = idp.client()
    id_token = str(idp.exchange(rp, idp.code_for(rp)).json()["id_token"])
    response = call(idp, "GET", "/clients", id_token)
    assert response.status_code == 401 and response.json()["error"] == "invalid_token"


def test_a_token_for_another_audience_is_refused(idp: Harness) -> None:
    api_client = idp.client(
        grant_types=["client_credentials"], scopes=["reports"], redirect_uris=[],
        audiences=["https://api.example"],
    )  # fmt: skip
    token = service_token(idp, api_client)
    assert call(idp, "GET", "/clients", token).status_code == 401
    # and a token for userinfo's audience (the issuer), even with the scope in it
    assert call(idp, "GET", "/clients", minted(idp, audiences=[ISSUER])).status_code == 401


def test_a_forged_token_is_refused(idp: Harness) -> None:
    """Signed by a key that is not this server's, with the kid of one that is."""
    rp = service(idp)
    real = idp.decode(service_token(idp, rp))
    forger = RSAKey.generate_key(2048)
    forged = jwt.encode(dict(real.header), dict(real.claims), forger)
    response = call(idp, "GET", "/clients", forged)
    assert response.status_code == 401 and response.json()["error"] == "invalid_token"


def test_a_disabled_service_or_one_without_the_scope_any_more_is_refused(idp: Harness) -> None:
    """Checked on every request: a disabled client's token dies at once, and so does the
    token of a client whose registration no longer has the admin scope."""
    rp, other = service(idp), service(idp)
    token, other_token = service_token(idp, rp), service_token(idp, other)
    with idp.runtime.sessions.begin() as db:
        revocation.disable_client(db, rp.client_id, "test", "test")
    assert call(idp, "GET", "/clients", token).status_code == 401
    from idp.admin.clients import update_client

    with idp.runtime.sessions.begin() as db:
        update_client(
            db, other.client_id, {"scope": "reports"}, "test", policy=idp.runtime.outbound
        )
    assert call(idp, "GET", "/clients", other_token).status_code == 403


def test_an_admin_signed_in_with_totp_gets_a_working_token(idp: Harness) -> None:
    """People hold the admin scopes as an admin (role) whose sign-in used two factors, with
    the scope consented; the token carries acr aal2."""
    _, secret = admin_person(idp)
    token = sign_in_with_totp(idp, admin_app(idp), "root@example.com", secret, "openid idp:admin")
    claims = idp.decode(token).claims
    assert claims["acr"] == "aal2" and "idp:admin" in claims["scope"].split()
    assert ISSUER + "/admin/api" in claims["aud"]
    assert call(idp, "GET", "/users", token).status_code == 200


def test_a_non_admin_never_gets_the_admin_scope(idp: Harness) -> None:
    """RFC 6749 §3.3: the server issues less than asked; the token has no admin scope, so it
    is not for the admin API at all."""
    idp.user("alice@example.com")
    token = sign_in_with_totp(idp, admin_app(idp), "alice@example.com", None, "openid idp:admin")
    assert "idp:admin" not in idp.decode(token).claims["scope"].split()
    assert call(idp, "GET", "/clients", token).status_code == 401


def test_an_admin_token_without_two_factors_is_refused(idp: Harness) -> None:
    """An admin role granted after a password-only sign-in does not make that sign-in's
    token an admin credential."""
    user_id = idp.user("alice@example.com")
    with idp.runtime.sessions.begin() as db:
        user = users.get(db, user_id)
        assert user is not None
        grant_role(db, user, "admin", actor="test")
    token = minted(
        idp, subject=user_id, client_id=admin_app(idp).client_id, acr="aal1", audiences=None
    )
    response = call(idp, "GET", "/clients", token)
    assert response.status_code == 403 and response.json()["error"] == "insufficient_scope"


def test_a_disabled_admin_or_one_whose_role_was_revoked_is_refused(idp: Harness) -> None:
    user_id, secret = admin_person(idp)
    token = sign_in_with_totp(idp, admin_app(idp), "root@example.com", secret, "openid idp:admin")
    assert call(idp, "GET", "/clients", token).status_code == 200
    with idp.runtime.sessions.begin() as db:
        user = users.get(db, user_id)
        assert user is not None
        revoke_role(db, user, "admin", actor="test")
    assert call(idp, "GET", "/clients", token).status_code == 403
    with idp.runtime.sessions.begin() as db:
        user = users.get(db, user_id)
        assert user is not None
        grant_role(db, user, "admin", actor="test")
        revocation.disable_user(db, user_id, "test", "test")
    response = call(idp, "GET", "/clients", token)
    assert response.status_code == 401 and response.json()["error"] == "invalid_token"


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/clients"), ("POST", "/clients"), ("GET", "/clients/x"), ("PATCH", "/clients/x"),
        ("POST", "/clients/x/disable"), ("POST", "/clients/x/enable"), ("DELETE", "/clients/x"),
        ("POST", "/clients/x/secret"), ("GET", "/users"), ("POST", "/users"), ("GET", "/users/x"),
        ("POST", "/users/x/disable"), ("POST", "/users/x/enable"),
        ("POST", "/users/x/sessions/revoke"), ("POST", "/users/x/mfa/reset"),
        ("PUT", "/users/x/roles/r"), ("DELETE", "/users/x/roles/r"), ("GET", "/roles"),
        ("GET", "/keys"), ("POST", "/keys"), ("POST", "/keys/x/revoke"), ("GET", "/audit"),
    ],
)  # fmt: skip
def test_every_route_needs_a_token(idp: Harness, method: str, path: str) -> None:
    """Not a single route answers without a valid admin token, whatever the body."""
    response = call(idp, method, path, None, json={})
    assert response.status_code == 401, (method, path, response.text)
    idp.user("alice@example.com")
    plain = sign_in_with_totp(idp, admin_app(idp), "alice@example.com", None, "openid")
    assert call(idp, method, path, plain, json={}).status_code == 401


def test_the_openapi_document_lists_every_route_with_schemas(idp: Harness) -> None:
    """OpenAPI 3.1 at /admin/api/openapi.json, no token needed (it holds no data)."""
    doc = idp.http.get("/admin/api/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert doc["servers"] == [{"url": ISSUER + "/admin/api"}]
    paths = doc["paths"]
    assert {"/clients", "/clients/{client_id}", "/clients/{client_id}/secret", "/users",
            "/users/{user_id}/roles/{role}", "/keys", "/keys/{kid}/revoke", "/audit",
            "/roles"} <= set(paths)  # fmt: skip
    create = paths["/clients"]["post"]
    assert "ClientRegistration" in str(create["requestBody"])
    assert "ClientCreated" in str(create["responses"]["201"])
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert operation.get("summary"), (method, path)
            assert "200" in operation["responses"] or "201" in operation["responses"]
