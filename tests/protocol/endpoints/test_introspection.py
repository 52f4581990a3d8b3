"""Issue 3, "Introspection (RFC 7662)": POST /introspect over HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from idp.admin.clients import InvalidRegistration
from tests.authorize_helpers import disable_user
from tests.helpers import RP, Harness, basic
from tests.refresh_helpers import (
    OFFLINE_SCOPE,
    age_use,
    hashed,
    introspect,
    introspected,
    is_no_store,
    offline_client,
    refreshed,
    resource_server,
    revoke,
    signed_access_token,
    userinfo,
)
from tests.token_helpers import ISSUER, error_of, sql

INACTIVE = {"active": False}


@pytest.fixture
def rp(idp: Harness) -> RP:
    idp.user()
    return offline_client(idp)


@pytest.fixture
def offline(idp: Harness, rp: RP) -> dict[str, Any]:
    return idp.tokens(rp, scope=OFFLINE_SCOPE)


def subject(idp: Harness, tokens: dict[str, Any]) -> str:
    return str(idp.decode(tokens["id_token"]).claims["sub"])


def test_discovery_lists_the_introspection_endpoint(idp: Harness) -> None:
    """RFC 8414 §2 / RFC 7662 §2: introspection_endpoint is announced, under the issuer."""
    metadata = idp.http.get("/.well-known/openid-configuration").json()
    assert metadata["introspection_endpoint"] == ISSUER + "/introspect"


# --- who may ask -------------------------------------------------------------------------------


@pytest.mark.parametrize("credentials", ["none", "wrong_secret", "unknown_client"])
def test_client_authentication_is_required(
    idp: Harness, rp: RP, offline: dict[str, Any], credentials: str
) -> None:
    """Issue 3, Introspection ("requires client authentication"); RFC 7662 §2.1 (the endpoint
    MUST require some form of authorization) and §2.3: 401 invalid_client, WWW-Authenticate,
    no-store, and nothing about the token."""
    headers = {
        "none": {},
        "wrong_secret": basic(rp.client_id, "not-the-secret"),
        "unknown_client": basic("no-such-client", "whatever"),
    }[credentials]
    data = {"token": offline["access_token"]}
    if credentials == "none":
        data["client_id"] = rp.client_id
    response = idp.http.post("/introspect", data=data, headers=headers)
    assert response.status_code == 401
    assert error_of(response) == "invalid_client"
    assert response.headers["www-authenticate"]
    assert is_no_store(response)
    assert "active" not in response.json()


def test_public_client_id_alone_is_not_authentication(idp: Harness) -> None:
    """Issue 3, Introspection ("requires client authentication"); RFC 7662 §2.1 ("to prevent
    token scanning attacks, the endpoint MUST also require some form of authorization") and
    RFC 6749 §2.1 (a public client cannot authenticate): a request carrying only a public
    client's client_id is not authenticated and learns nothing."""
    idp.user()
    app = offline_client(idp, public=True)
    body = idp.tokens(app, scope=OFFLINE_SCOPE)
    response = introspect(idp, app, body["access_token"])
    assert response.status_code == 401
    assert "active" not in response.json()


def test_owner_sees_its_access_token(idp: Harness, rp: RP, offline: dict[str, Any]) -> None:
    """Issue 3, Introspection ("the client the token was issued to"); RFC 7662 §2.2: active
    true with scope, client_id, token_type, exp, iat, sub and iss; no-store."""
    response = introspect(idp, rp, offline["access_token"])
    assert response.status_code == 200
    assert is_no_store(response)
    body = response.json()
    assert body["active"] is True
    assert set(body["scope"].split()) == set(OFFLINE_SCOPE.split())
    assert body["client_id"] == rp.client_id
    assert body["token_type"] == "Bearer"
    assert body["sub"] == subject(idp, offline)
    assert body["iss"] == ISSUER
    assert isinstance(body["exp"], int) and isinstance(body["iat"], int)
    assert body["iat"] < body["exp"]


def test_owner_sees_its_refresh_token(idp: Harness, rp: RP, offline: dict[str, Any]) -> None:
    """Issue 3, Introspection; RFC 7662 §2.2 for a refresh token: active true with scope,
    client_id, sub, exp, iat and iss."""
    body = introspected(idp, rp, offline["refresh_token"])
    assert body["active"] is True
    assert set(body["scope"].split()) == set(OFFLINE_SCOPE.split())
    assert body["client_id"] == rp.client_id
    assert body["sub"] == subject(idp, offline)
    assert body["iss"] == ISSUER
    assert isinstance(body["exp"], int) and isinstance(body["iat"], int)
    assert body["iat"] < body["exp"]


def test_resource_server_may_introspect_others_tokens(
    idp: Harness, rp: RP, offline: dict[str, Any]
) -> None:
    """Issue 3, Introspection ("or a client registered as a resource server with permission to
    introspect"); RFC 7662 §2.1: the protected resource sees access tokens issued to other
    clients for its audience. A refresh token is its client's alone (issue 14)."""
    api = resource_server(idp)
    access = introspected(idp, api, offline["access_token"])
    assert access["active"] is True
    assert access["client_id"] == rp.client_id
    assert access["sub"] == subject(idp, offline)
    assert introspected(idp, api, offline["refresh_token"]) == INACTIVE
    assert introspected(idp, rp, offline["refresh_token"])["active"] is True


def test_a_resource_server_sees_only_tokens_for_its_resources(idp: Harness) -> None:
    """RFC 7662 §4: a resource server registered for its resources (`resources`) learns
    nothing of tokens for another API, so checking `active` and `scope` is enough."""
    notes, billing = "https://notes.example", "https://billing.example"
    for_notes = idp.client(
        grant_types=["client_credentials"], scopes=["x"], redirect_uris=[],
        audiences=[notes],
    )  # fmt: skip
    token = idp.client_credentials(for_notes).json()["access_token"]
    assert introspected(idp, resource_server(idp, resources=[notes]), token)["active"] is True
    assert introspected(idp, resource_server(idp, resources=[billing]), token) == INACTIVE
    # without resources: the server-wide default audience (the issuer here), not this API
    assert introspected(idp, resource_server(idp), token) == INACTIVE


def test_resources_need_introspection(idp: Harness) -> None:
    with pytest.raises(InvalidRegistration) as refused:
        idp.client(resources=["https://notes.example"])
    assert "resources" in refused.value.fields


def test_other_client_learns_nothing(idp: Harness, offline: dict[str, Any]) -> None:
    """Issue 3, Introspection ("someone else's tokens answer {"active": false}"); RFC 7662 §2.2:
    a client that neither owns the token nor may introspect gets exactly {"active": false}."""
    other = offline_client(idp, name="Other RP")
    service = idp.client(
        name="Service", grant_types=["client_credentials"], scopes=["api"], redirect_uris=[]
    )
    for caller in (other, service):
        for token in (offline["access_token"], offline["refresh_token"]):
            response = introspect(idp, caller, token)
            assert response.status_code == 200
            assert response.json() == INACTIVE
            assert is_no_store(response)


def test_missing_token_is_invalid_request(idp: Harness, rp: RP) -> None:
    """RFC 7662 §2.1 (token REQUIRED) and §2.3 / RFC 6749 §5.2 invalid_request; no-store."""
    response = introspect(idp, rp, None)
    assert response.status_code == 400
    assert error_of(response) == "invalid_request"
    assert is_no_store(response)


# --- tokens that are not active -----------------------------------------------------------------


def test_revoked_access_token_is_inactive(idp: Harness, rp: RP, offline: dict[str, Any]) -> None:
    """Issue 3, Introspection ("revoked ... tokens answer {"active": false}"; "userinfo and
    introspection refuse revoked access tokens"), for the owner and for a resource server."""
    api = resource_server(idp)
    assert revoke(idp, rp, offline["access_token"]).status_code == 200
    assert introspected(idp, rp, offline["access_token"]) == INACTIVE
    assert introspected(idp, api, offline["access_token"]) == INACTIVE
    assert userinfo(idp, offline["access_token"]).status_code == 401


def test_revoked_refresh_token_is_inactive(idp: Harness, rp: RP, offline: dict[str, Any]) -> None:
    """Issue 3, Introspection (revoked tokens), RFC 7009 + RFC 7662: once its family is revoked,
    the refresh token and the family's access token are inactive."""
    assert revoke(idp, rp, offline["refresh_token"]).status_code == 200
    assert introspected(idp, rp, offline["refresh_token"]) == INACTIVE
    assert introspected(idp, rp, offline["access_token"]) == INACTIVE


def test_tokens_of_a_disabled_user_are_inactive(
    idp: Harness, rp: RP, offline: dict[str, Any]
) -> None:
    """RFC 7662 §2.2 ("active" means the token may be used): once the user is disabled, their
    access and refresh tokens are inactive, as userinfo and the refresh grant already refuse
    them; a service's client_credentials token (no user) is unaffected."""
    service = resource_server(idp)
    service_token = idp.client_credentials(service, scope="api").json()["access_token"]
    assert introspected(idp, rp, offline["access_token"])["active"] is True
    disable_user(idp, subject(idp, offline))
    assert introspected(idp, rp, offline["access_token"]) == INACTIVE
    assert introspected(idp, rp, offline["refresh_token"]) == INACTIVE
    assert introspected(idp, service, service_token)["active"] is True


def test_expired_access_token_is_inactive(idp: Harness, rp: RP, offline: dict[str, Any]) -> None:
    """Issue 3, Introspection ("expired ... tokens answer {"active": false}"); RFC 7662 §2.2.
    Control: the same hand-made token, not yet expired, is active, so only exp decides."""
    sub = subject(idp, offline)
    live = signed_access_token(idp, rp.client_id, sub, exp_offset=600)
    assert introspected(idp, rp, live)["active"] is True
    expired = signed_access_token(idp, rp.client_id, sub, exp_offset=-3600)
    assert introspected(idp, rp, expired) == INACTIVE


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        "x" * 43,
        "é" * 10,
    ],
)
def test_malformed_token_is_inactive(idp: Harness, rp: RP, token: str) -> None:
    """Issue 3, Introspection ("malformed ... tokens answer {"active": false}"); RFC 7662 §2.2
    (no error for a token that is not valid), no-store."""
    response = introspect(idp, rp, token)
    assert response.status_code == 200
    assert response.json() == INACTIVE
    assert is_no_store(response)


def test_used_refresh_token_is_inactive(idp: Harness, rp: RP, offline: dict[str, Any]) -> None:
    """Issue 3, Introspection; RFC 9700 §4.14.2: a rotated refresh token (past the retry window)
    is inactive, while its successor is active."""
    first = offline["refresh_token"]
    second = refreshed(idp, rp, first)["refresh_token"]
    age_use(idp, first, 60)
    assert introspected(idp, rp, first) == INACTIVE
    assert introspected(idp, rp, second)["active"] is True


def test_idle_expired_refresh_token_is_inactive(
    idp: Harness, rp: RP, offline: dict[str, Any]
) -> None:
    """Issue 3, Introspection (expired tokens) for a refresh token past its idle lifetime."""
    sql(
        idp,
        "UPDATE refresh_tokens SET expires_at = expires_at - :d WHERE token_hash = :h",
        d=400 * 86400,
        h=hashed(offline["refresh_token"]),
    )
    assert introspected(idp, rp, offline["refresh_token"]) == INACTIVE


@pytest.mark.parametrize(
    "token",
    ["x" * 4097, "y" * 15_000, "a." + "b" * 8_000 + ".c", "nul\x00inside", "\x01\x7f\ufeff\"'"],
    ids=["over-param-cap", "near-body-cap", "long-jwt-shape", "nul", "controls"],
)
def test_unrecognisable_token_of_any_length_is_inactive(
    idp: Harness, rp: RP, token: str
) -> None:
    """RFC 7662 §2.2: for a token the server cannot recognise the answer is {"active": false},
    not an error, however long it is (the body limit, IDP_MAX_BODY_BYTES, still holds: the
    per-parameter cap does not apply to the token, which is only hashed or verified)."""
    response = introspect(idp, rp, token)
    assert response.status_code == 200, response.text
    assert response.json() == INACTIVE


def test_token_over_the_body_limit_is_still_refused(idp: Harness, rp: RP) -> None:
    """The body cap bounds every request: RFC 6749 §5.2 invalid_request, before any lookup."""
    response = introspect(idp, rp, "z" * (idp.runtime.settings.max_body_bytes + 1))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
