"""GET|POST /userinfo: OIDC Core §5.3, with Bearer tokens per RFC 6750."""

from __future__ import annotations

import time

import httpx
import pytest
from joserfc.jwk import RSAKey

from idp.admin.clients import ClientSpec, register
from tests.authorize_helpers import (
    access_token_claims,
    disable_user,
    sign,
    sign_with_idp_key,
)
from tests.helpers import RP, Harness


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_unauthorized(response: httpx.Response, error: str | None = "invalid_token") -> None:
    """RFC 6750 §3: 401 with a Bearer challenge, naming the error when a token was sent."""
    assert response.status_code == 401, (response.status_code, response.text)
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    if error is not None:
        assert f'error="{error}"' in challenge
        assert response.json()["error"] == error


@pytest.fixture
def alice(idp: Harness) -> str:
    return idp.user(name="Alice Liddell")


def access_token(idp: Harness, scope: str) -> str:
    return idp.tokens(idp.client(), scope=scope)["access_token"]  # type: ignore[no-any-return]


# --- the claims ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_bearer_header_returns_claims(idp: Harness, alice: str, method: str) -> None:
    """OIDC Core §5.3.1: GET and POST MUST be supported; the token goes in the Authorization
    header (RFC 6750 §2.1); §5.3.2: sub is always returned."""
    token = access_token(idp, "openid profile email")
    response = idp.http.request(method, "/userinfo", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    claims = response.json()
    assert claims["sub"] == alice
    assert claims["name"] == "Alice Liddell"
    assert claims["email"] == "alice@example.com"
    assert claims["email_verified"] is False


def test_response_is_not_cached(idp: Harness, alice: str) -> None:
    """OIDC Core §5.3.2 / RFC 6750 §5.3: responses carrying claims must not be cached."""
    response = idp.http.get("/userinfo", headers=bearer(access_token(idp, "openid")))
    assert response.status_code == 200
    assert "no-store" in response.headers["cache-control"]


def test_profile_scope_releases_name_only(idp: Harness, alice: str) -> None:
    """OIDC Core §5.4: profile releases the profile claims, not email."""
    claims = idp.http.get("/userinfo", headers=bearer(access_token(idp, "openid profile"))).json()
    assert claims["sub"] == alice
    assert claims["name"] == "Alice Liddell"
    assert "email" not in claims
    assert "email_verified" not in claims


def test_email_scope_releases_email_only(idp: Harness, alice: str) -> None:
    """OIDC Core §5.4: email releases email and email_verified, not the profile claims."""
    claims = idp.http.get("/userinfo", headers=bearer(access_token(idp, "openid email"))).json()
    assert claims["email"] == "alice@example.com"
    assert claims["email_verified"] is False
    assert "name" not in claims


def test_openid_scope_alone_releases_only_sub(idp: Harness, alice: str) -> None:
    """OIDC Core §5.3.2 and §5.4: with openid alone, sub is the only claim."""
    claims = idp.http.get("/userinfo", headers=bearer(access_token(idp, "openid"))).json()
    assert claims == {"sub": alice}


# --- where the token may be ----------------------------------------------------------------------


def test_token_in_query_string_is_refused(idp: Harness, alice: str) -> None:
    """RFC 6750 §2.3 is not offered (RFC 9700 §4.3.2: URLs leak): even a valid token in the
    query is refused with 400."""
    token = access_token(idp, "openid email")
    response = idp.http.get("/userinfo", params={"access_token": token})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "email" not in response.text


def test_token_in_query_string_is_refused_even_with_a_header(idp: Harness, alice: str) -> None:
    """RFC 6750 §2: a client MUST NOT use more than one method to send the token."""
    token = access_token(idp, "openid")
    response = idp.http.get("/userinfo", params={"access_token": token}, headers=bearer(token))
    assert response.status_code == 400


def test_token_in_form_body_is_refused(idp: Harness, alice: str) -> None:
    """RFC 6750 §2.2 is not offered: only the Authorization header carries the token."""
    token = access_token(idp, "openid email")
    response = idp.http.post("/userinfo", data={"access_token": token})
    assert_unauthorized(response, error=None)
    assert "email" not in response.text


def test_missing_token_is_401_with_bare_challenge(idp: Harness) -> None:
    """RFC 6750 §3 and §3.1: no credentials: 401, WWW-Authenticate: Bearer, and no error code."""
    response = idp.http.get("/userinfo")
    assert_unauthorized(response, error=None)
    assert "error=" not in response.headers["www-authenticate"]


def test_other_scheme_is_401(idp: Harness) -> None:
    """RFC 6750 §2.1: the Bearer scheme is required."""
    response = idp.http.get("/userinfo", headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"})
    assert_unauthorized(response, error=None)


# --- which tokens are accepted -------------------------------------------------------------------


def test_garbage_token_is_invalid_token(idp: Harness) -> None:
    """RFC 6750 §3.1 invalid_token: malformed."""
    assert_unauthorized(idp.http.get("/userinfo", headers=bearer("not-a-token")))


def test_expired_token_is_invalid_token(idp: Harness, alice: str) -> None:
    """RFC 6750 §3.1 invalid_token: expired; RFC 9068 §4: exp MUST be checked."""
    past = int(time.time()) - 600
    token = sign_with_idp_key(idp, access_token_claims(idp, sub=alice, iat=past - 300, exp=past))
    assert_unauthorized(idp.http.get("/userinfo", headers=bearer(token)))


def test_self_signed_token_with_same_claims_is_accepted(idp: Harness, alice: str) -> None:
    """RFC 9068 §4: a token passing every check is accepted, so the forged-token tests below
    fail only for what each of them changes. Its client must exist: a deleted client's tokens
    are refused (idp.protocol.epochs)."""
    claims = access_token_claims(idp, sub=alice, client_id=idp.client().client_id)
    token = sign_with_idp_key(idp, claims)
    assert idp.http.get("/userinfo", headers=bearer(token)).json() == {"sub": alice}


def test_id_token_is_not_an_access_token(idp: Harness, alice: str) -> None:
    """RFC 9068 §4: the typ header must be at+jwt, so an ID token cannot be replayed here."""
    id_token = idp.tokens(idp.client(), scope="openid email")["id_token"]
    assert_unauthorized(idp.http.get("/userinfo", headers=bearer(id_token)))


def test_token_with_wrong_typ_is_refused(idp: Harness, alice: str) -> None:
    """RFC 9068 §4: typ JWT (or none) is not an access token even when signed by the IdP."""
    token = sign_with_idp_key(idp, access_token_claims(idp, sub=alice), typ="JWT")
    assert_unauthorized(idp.http.get("/userinfo", headers=bearer(token)))


@pytest.mark.parametrize("kid", ["ours", "theirs"])
def test_token_signed_by_a_foreign_key_is_refused(idp: Harness, alice: str, kid: str) -> None:
    """RFC 9068 §4: the signature MUST verify with the issuer's keys, whatever kid it names."""
    foreign = RSAKey.generate_key(2048, auto_kid=True)
    our_kid, _ = idp.runtime.keys.signing_key()
    token = sign(
        access_token_claims(idp, sub=alice), foreign, our_kid if kid == "ours" else foreign.kid
    )
    assert_unauthorized(idp.http.get("/userinfo", headers=bearer(token)))


@pytest.mark.parametrize(
    ("claim", "value"),
    [("iss", "https://other.example"), ("aud", "https://other.example")],
)
def test_token_for_another_issuer_or_audience_is_refused(
    idp: Harness, alice: str, claim: str, value: str
) -> None:
    """RFC 9068 §4: iss MUST match the issuer and aud MUST name this resource."""
    token = sign_with_idp_key(idp, access_token_claims(idp, sub=alice, **{claim: value}))
    assert_unauthorized(idp.http.get("/userinfo", headers=bearer(token)))


def test_client_credentials_token_is_insufficient_scope(idp: Harness) -> None:
    """RFC 6750 §3.1 insufficient_scope (403): userinfo needs the openid scope (OIDC Core §5.3)."""
    with idp.runtime.sessions.begin() as db:
        registered = register(
            db,
            ClientSpec(name="Service", grant_types=["client_credentials"], scopes=["api.read"]),
            policy=idp.runtime.outbound,
        )
    service = RP(registered.client.client_id, registered.client_secret)
    issued = idp.client_credentials(service)
    assert issued.status_code == 200, issued.text
    response = idp.http.get("/userinfo", headers=bearer(issued.json()["access_token"]))
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert response.json()["error"] == "insufficient_scope"


def test_disabled_user_is_refused(idp: Harness, alice: str) -> None:
    """OIDC Core §5.3.3: a token whose End-User may no longer sign in is invalid_token."""
    token = access_token(idp, "openid email")
    disable_user(idp, alice)
    assert_unauthorized(idp.http.get("/userinfo", headers=bearer(token)))
