"""Issue 3, "Revocation (RFC 7009)": POST /revoke over HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import RP, Harness, basic
from tests.refresh_helpers import (
    OFFLINE_SCOPE,
    age_use,
    introspected,
    is_no_store,
    offline_client,
    refresh,
    refreshed,
    revoke,
    userinfo,
)
from tests.token_helpers import ISSUER, error_of


@pytest.fixture
def rp(idp: Harness) -> RP:
    idp.user()
    return offline_client(idp)


@pytest.fixture
def offline(idp: Harness, rp: RP) -> dict[str, Any]:
    return idp.tokens(rp, scope=OFFLINE_SCOPE)


def revoked_ok(idp: Harness, rp: RP, token: str, **data: str) -> None:
    response = revoke(idp, rp, token, **data)
    assert response.status_code == 200, response.text
    assert is_no_store(response)


def test_discovery_lists_the_revocation_endpoint(idp: Harness) -> None:
    """RFC 8414 §2 / RFC 7009 §2: revocation_endpoint is announced, under the issuer."""
    metadata = idp.http.get("/.well-known/openid-configuration").json()
    assert metadata["revocation_endpoint"] == ISSUER + "/revoke"


@pytest.mark.parametrize("which", ["current", "rotated"])
def test_revoking_a_refresh_token_revokes_its_family(
    idp: Harness, rp: RP, offline: dict[str, Any], which: str
) -> None:
    """Issue 3, Revocation ("revoking a refresh token revokes its family"); RFC 7009 §2.1 (the
    AS SHOULD also invalidate the access tokens of the same grant): whether the current token
    or an already rotated one of the family is revoked, the current refresh token fails and
    the family's access tokens are refused by /userinfo."""
    first = offline["refresh_token"]
    second = refreshed(idp, rp, first)
    current = second["refresh_token"]
    revoked_ok(idp, rp, current if which == "current" else first)
    response = refresh(idp, rp, current)
    assert response.status_code == 400
    assert error_of(response) == "invalid_grant"
    for access_token in (offline["access_token"], second["access_token"]):
        assert userinfo(idp, access_token).status_code == 401


def test_revoking_an_access_token(idp: Harness, rp: RP, offline: dict[str, Any]) -> None:
    """Issue 3, Revocation ("revoking an access token makes it inactive (by its jti)"); RFC 7009
    §2.1; issue 3 ("userinfo and introspection refuse revoked access tokens")."""
    access_token = offline["access_token"]
    assert userinfo(idp, access_token).status_code == 200
    revoked_ok(idp, rp, access_token)
    response = userinfo(idp, access_token)
    assert response.status_code == 401
    assert "invalid_token" in response.headers["www-authenticate"]
    assert introspected(idp, rp, access_token) == {"active": False}


def test_wrong_token_type_hint_still_revokes(idp: Harness, rp: RP, offline: dict[str, Any]) -> None:
    """RFC 7009 §2.1: a hint that does not match the token does not stop the server from
    finding and revoking it."""
    revoked_ok(idp, rp, offline["refresh_token"], token_type_hint="access_token")
    assert refresh(idp, rp, offline["refresh_token"]).status_code == 400
    revoked_ok(idp, rp, offline["access_token"], token_type_hint="refresh_token")
    assert userinfo(idp, offline["access_token"]).status_code == 401


def test_only_the_owning_client_may_revoke(idp: Harness, rp: RP, offline: dict[str, Any]) -> None:
    """Issue 3, Revocation ("only the client it was issued to may revoke it"); RFC 7009 §2.1
    (the AS verifies the token was issued to the requesting client) and §2.2 (answer 200
    anyway): another client's request changes nothing."""
    other = offline_client(idp, name="Other RP")
    revoked_ok(idp, other, offline["refresh_token"])
    revoked_ok(idp, other, offline["access_token"])
    assert userinfo(idp, offline["access_token"]).status_code == 200
    assert introspected(idp, rp, offline["access_token"])["active"] is True
    assert refreshed(idp, rp, offline["refresh_token"])["refresh_token"]


@pytest.mark.parametrize("token", ["never-issued-" + "x" * 40, "a.b.c", "eyJhbGciOiJub25lIn0.e30."])
def test_unknown_token_answers_200(idp: Harness, rp: RP, token: str) -> None:
    """Issue 3, Revocation ("an unknown token answers 200"); RFC 7009 §2.2: invalid tokens do
    not cause an error response."""
    revoked_ok(idp, rp, token)


def test_dead_refresh_token_answers_200(idp: Harness, rp: RP, offline: dict[str, Any]) -> None:
    """RFC 7009 §2.2: revoking a token that is already dead (rotated and past the window)
    answers 200 as well."""
    first = offline["refresh_token"]
    refreshed(idp, rp, first)
    age_use(idp, first, 60)
    revoked_ok(idp, rp, first)


def test_missing_token_is_invalid_request(idp: Harness, rp: RP) -> None:
    """RFC 7009 §2.1 (token REQUIRED) and §2.2.1 / RFC 6749 §5.2 invalid_request."""
    response = revoke(idp, rp, None)
    assert response.status_code == 400
    assert error_of(response) == "invalid_request"
    assert is_no_store(response)


@pytest.mark.parametrize("credentials", ["none", "wrong_secret", "unknown_client"])
def test_client_authentication_is_required(
    idp: Harness, rp: RP, offline: dict[str, Any], credentials: str
) -> None:
    """RFC 7009 §2.1 (the AS requires client authentication for confidential clients) and
    §2.2.1 / RFC 6749 §5.2: 401 invalid_client with WWW-Authenticate; nothing is revoked."""
    headers = {
        "none": {},
        "wrong_secret": basic(rp.client_id, "not-the-secret"),
        "unknown_client": basic("no-such-client", "whatever"),
    }[credentials]
    data = {"token": offline["access_token"]}
    if credentials == "none":
        data["client_id"] = rp.client_id
    response = idp.http.post("/revoke", data=data, headers=headers)
    assert response.status_code == 401
    assert error_of(response) == "invalid_client"
    assert response.headers["www-authenticate"]
    assert is_no_store(response)
    assert userinfo(idp, offline["access_token"]).status_code == 200


def test_public_client_revokes_with_client_id(idp: Harness) -> None:
    """RFC 7009 §2.1 / RFC 6749 §2.1: a public client identifies itself with client_id only,
    and may revoke its own tokens."""
    idp.user()
    app = offline_client(idp, public=True)
    body = idp.tokens(app, scope=OFFLINE_SCOPE)
    revoked_ok(idp, app, body["refresh_token"])
    assert refresh(idp, app, body["refresh_token"]).status_code == 400
    assert userinfo(idp, body["access_token"]).status_code == 401


def test_revocation_only_by_post(idp: Harness) -> None:
    """RFC 7009 §2.1: the client requests revocation with an HTTP POST."""
    assert idp.http.get("/revoke", params={"token": "x"}).status_code in (404, 405)


@pytest.mark.parametrize(
    "token",
    ["x" * 4097, "y" * 15_000, "a." + "b" * 8_000 + ".c", "nul\x00inside"],
    ids=["over-param-cap", "near-body-cap", "long-jwt-shape", "nul"],
)
def test_unrecognisable_token_of_any_length_is_200(idp: Harness, rp: RP, token: str) -> None:
    """RFC 7009 §2.2: the server responds with 200 for an invalid token ("invalid tokens do
    not cause an error response"), whatever its length up to the body limit."""
    response = revoke(idp, rp, token)
    assert response.status_code == 200, response.text
