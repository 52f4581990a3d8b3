"""POST /token: RFC 6749 §3.2, §4.1.3, §4.4, §5; RFC 7636 §4.5-4.6; RFC 9068; OIDC Core §3.1.3."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from starlette.testclient import TestClient

from idp.store import clients
from tests.helpers import RP, Harness
from tests.token_helpers import ISSUER, audit_events, error_of, jose_header, sql, statements

SERVICE_SCOPES = ["api.read", "api.write"]


@pytest.fixture
def rp(idp: Harness) -> RP:
    """A confidential web client (client_secret_basic) and its user."""
    idp.user()
    return idp.client()


@pytest.fixture
def service(idp: Harness) -> RP:
    """A confidential service client that uses client_credentials only."""
    return idp.client(grant_types=["client_credentials"], scopes=SERVICE_SCOPES, redirect_uris=[])


def post_token(idp: Harness, data: dict[str, str], rp: RP | None = None) -> Any:
    return idp.http.post("/token", data=data, headers=rp.auth() if rp else {})


def userinfo(idp: Harness, access_token: str) -> Any:
    return idp.http.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})


# --- RFC 6749 §5.2: error responses -------------------------------------------------------------


@pytest.mark.parametrize("grant_type", ["password", "implicit", "urn:example:unknown"])
def test_unregistered_grant_types_are_unsupported(idp: Harness, rp: RP, grant_type: str) -> None:
    """§5.2 unsupported_grant_type: the resource owner password grant (§4.3, removed by RFC 9700
    §2.4) and the implicit flow (not a token-endpoint grant at all) are not accepted."""
    data = {"grant_type": grant_type, "username": "alice@example.com", "password": "x" * 12}
    response = post_token(idp, data, rp)
    assert response.status_code == 400
    assert error_of(response) == "unsupported_grant_type"


def test_missing_grant_type_is_invalid_request(idp: Harness, service: RP) -> None:
    """§5.2 invalid_request: "the request is missing a required parameter"; grant_type is
    REQUIRED (§4.1.3, §4.4.2). A grant type that was never named is not an unsupported one."""
    response = post_token(idp, {"scope": "api.read"}, service)
    assert response.status_code == 400
    assert error_of(response) == "invalid_request"


def test_missing_code_is_invalid_request(idp: Harness, rp: RP) -> None:
    """§5.2 invalid_request: the request is missing a required parameter (`code`, §4.1.3)."""
    response = idp.exchange(rp, code=None)  # type: ignore[arg-type]
    assert response.status_code == 400
    assert error_of(response) == "invalid_request"
    assert response.json()["error_description"]


def test_unknown_code_is_invalid_grant(idp: Harness, rp: RP) -> None:
    """§5.2 invalid_grant: the authorization grant is invalid."""
    response = idp.exchange(rp, "not-a-code-this-server-issued")
    assert response.status_code == 400
    assert error_of(response) == "invalid_grant"


@pytest.mark.parametrize(
    "redirect_uri", ["https://rp.example/other", "https://rp.example/callback/", None]
)
def test_redirect_uri_must_be_identical(idp: Harness, rp: RP, redirect_uri: str | None) -> None:
    """§4.1.3: redirect_uri is REQUIRED when the authorization request had one, and the values
    MUST be identical; otherwise §5.2 invalid_grant."""
    response = idp.exchange(rp, idp.code_for(rp), redirect_uri=redirect_uri)
    assert response.status_code == 400
    assert error_of(response) == "invalid_grant"
    assert "access_token" not in response.json()


def test_code_of_another_client_is_invalid_grant(idp: Harness, rp: RP) -> None:
    """§4.1.3: ensure the code was issued to the authenticated client; §5.2 invalid_grant."""
    other = idp.client(name="Other RP")
    code = idp.code_for(rp)
    other.verifier = rp.verifier
    response = idp.exchange(other, code)
    assert response.status_code == 400
    assert error_of(response) == "invalid_grant"


def test_code_of_disabled_user_is_invalid_grant(idp: Harness, rp: RP) -> None:
    """§5.2 invalid_grant: the grant is no longer valid once its resource owner is disabled."""
    code = idp.code_for(rp)
    sql(idp, "UPDATE users SET disabled = :yes", yes=True)
    response = idp.exchange(rp, code)
    assert response.status_code == 400
    assert error_of(response) == "invalid_grant"


def test_client_without_client_credentials_is_unauthorized(idp: Harness, rp: RP) -> None:
    """§5.2 unauthorized_client: the client is not authorized to use this grant type."""
    response = idp.client_credentials(rp)
    assert response.status_code == 400
    assert error_of(response) == "unauthorized_client"


def test_client_without_authorization_code_is_unauthorized(idp: Harness, service: RP) -> None:
    """§5.2 unauthorized_client, for a service client presenting an authorization code."""
    response = idp.exchange(service, "some-code")
    assert response.status_code == 400
    assert error_of(response) == "unauthorized_client"


def test_scope_beyond_registration_is_invalid_scope(idp: Harness, service: RP) -> None:
    """§5.2 invalid_scope: the requested scope exceeds the scope granted to the client."""
    response = idp.client_credentials(service, scope="api.read api.admin")
    assert response.status_code == 400
    assert error_of(response) == "invalid_scope"


def test_success_is_not_cached(idp: Harness, rp: RP) -> None:
    """§5.1: Cache-Control: no-store and Pragma: no-cache on a response holding tokens."""
    response = idp.exchange(rp, idp.code_for(rp))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    assert response.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    "data",
    [
        {"grant_type": "password"},
        {"grant_type": "authorization_code", "code": "unknown"},
        {"grant_type": "client_credentials", "scope": "nope"},
    ],
    ids=["unsupported_grant_type", "invalid_grant", "invalid_scope"],
)
def test_errors_are_not_cached(idp: Harness, service: RP, data: dict[str, str]) -> None:
    """§5.1/§5.2: error answers carry no-store too (they may echo what the client sent)."""
    response = post_token(idp, data, service)
    assert 400 <= response.status_code < 500
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"


# --- RFC 6749 §3.2 and §3.1: how the request itself must look ------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_other_methods_are_refused(idp: Harness, rp: RP, method: str) -> None:
    """§3.2: the client MUST use the HTTP POST method when making access token requests. Any
    other method is refused in §5.2's JSON form, and the 405 names POST as the one allowed."""
    response = idp.http.request(
        method, "/token", params={"grant_type": "client_credentials"}, headers=rp.auth()
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert error_of(response) == "invalid_request"
    assert response.headers["cache-control"] == "no-store"


def test_query_string_parameters_are_refused(idp: Harness, rp: RP) -> None:
    """§3.2: parameters are sent in the request body (form-encoded); a code or credential in the
    URL would be logged, so any parameter in the query string is refused with invalid_request."""
    code = idp.code_for(rp)
    response = idp.http.post(
        "/token",
        params={"code": code},
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": rp.redirect_uri,
            "code_verifier": rp.verifier,
        },
        headers=rp.auth(),
    )
    assert response.status_code == 400
    assert error_of(response) == "invalid_request"
    assert "access_token" not in response.json()


@pytest.mark.parametrize("name", ["code", "grant_type", "redirect_uri", "code_verifier"])
def test_repeated_parameters_are_refused(idp: Harness, rp: RP, name: str) -> None:
    """§3.2 (by way of §3.1): request and response parameters MUST NOT be included more than
    once; the request is invalid_request."""
    code = idp.code_for(rp)
    fields = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": rp.redirect_uri,
        "code_verifier": rp.verifier,
    }
    pairs = [*fields.items(), (name, fields[name])]
    body = urlencode(pairs)
    response = idp.http.post(
        "/token",
        content=body,
        headers={**rp.auth(), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert error_of(response) == "invalid_request"
    assert "access_token" not in response.json()


def test_oversized_body_is_refused(idp: Harness, service: RP) -> None:
    """§3.2 with a size limit: a body over max_body_bytes is refused as invalid_request JSON."""
    limit = idp.runtime.settings.max_body_bytes
    under = {f"x{i}": "a" * 1000 for i in range(limit // 1000 - 2)}
    assert idp.client_credentials(service, **under).status_code == 200
    over = {f"x{i}": "a" * 1000 for i in range(limit // 1000 + 2)}
    response = idp.client_credentials(service, **over)
    assert response.status_code == 400
    assert error_of(response) == "invalid_request"


def test_oversized_streamed_body_is_refused(idp: Harness, service: RP) -> None:
    """As above, for a chunked body that declares no Content-Length."""
    limit = idp.runtime.settings.max_body_bytes

    def post_chunks(kib: int) -> Any:
        def chunks() -> Any:
            yield b"grant_type=client_credentials&pad="
            for _ in range(kib):
                yield b"a" * 1024

        return idp.http.post(
            "/token",
            content=chunks(),
            headers={**service.auth(), "Content-Type": "application/x-www-form-urlencoded"},
        )

    assert post_chunks(2).status_code == 200
    response = post_chunks(limit // 1024 + 2)
    assert response.status_code == 400
    assert error_of(response) == "invalid_request"


def test_oversized_parameter_is_refused(idp: Harness, service: RP) -> None:
    """§3.2 with a size limit: one parameter over max_param_bytes (4096) is invalid_request."""
    limit = idp.runtime.settings.max_param_bytes
    assert idp.client_credentials(service, pad="a" * limit).status_code == 200
    response = idp.client_credentials(service, pad="a" * (limit + 1))
    assert response.status_code == 400
    assert error_of(response) == "invalid_request"


def test_json_body_is_refused(idp: Harness, service: RP) -> None:
    """§3.2: parameters use the application/x-www-form-urlencoded format; JSON is refused."""
    response = idp.http.post(
        "/token", json={"grant_type": "client_credentials"}, headers=service.auth()
    )
    assert response.status_code == 400
    assert error_of(response) == "invalid_request"


# --- RFC 6749 §4.1.3 and RFC 7636 §4.5/§4.6: the authorization code grant ------------------------


def test_code_redemption_returns_tokens(idp: Harness, rp: RP) -> None:
    """§4.1.4 / §5.1 and OIDC Core §3.1.3.3: access_token, token_type Bearer, expires_in, scope
    and an id_token; no refresh token when offline_access was not asked for."""
    response = idp.exchange(rp, idp.code_for(rp))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert body["scope"].split() == ["openid", "profile", "email"]
    assert body["access_token"].count(".") == 2
    assert body["id_token"].count(".") == 2
    assert "refresh_token" not in body


def test_wrong_code_verifier_is_invalid_grant(idp: Harness, rp: RP) -> None:
    """RFC 7636 §4.6: if the values are not equal, an error indicating invalid_grant MUST be
    returned."""
    response = idp.exchange(rp, idp.code_for(rp), code_verifier="y" * 43)
    assert response.status_code == 400
    assert error_of(response) == "invalid_grant"


def test_missing_code_verifier_is_invalid_request(idp: Harness, rp: RP) -> None:
    """RFC 7636 §4.5: the client MUST send code_verifier when the authorization request had a
    code_challenge; without it the request lacks a required parameter (invalid_request)."""
    response = idp.exchange(rp, idp.code_for(rp), code_verifier=None)
    assert response.status_code == 400
    assert error_of(response) == "invalid_request"
    assert "access_token" not in response.json()


@pytest.fixture
def legacy(idp: Harness) -> RP:
    """A confidential client registered without PKCE (require_pkce=False)."""
    idp.user()
    return idp.client(require_pkce=False)


def test_verifier_without_challenge_is_refused(idp: Harness, legacy: RP) -> None:
    """RFC 9700 §4.8.2: if there was no code_challenge in the authorization request, a token
    request containing a code_verifier MUST be rejected (PKCE downgrade)."""
    code = idp.code_for(legacy, code_challenge=None, code_challenge_method=None)
    response = idp.exchange(legacy, code)  # sends legacy.verifier
    assert response.status_code == 400
    assert error_of(response) in ("invalid_request", "invalid_grant")
    assert "access_token" not in response.json()


def test_client_without_pkce_redeems_without_verifier(idp: Harness, legacy: RP) -> None:
    """RFC 6749 §4.1.3: a client that opted out of PKCE redeems with code and redirect_uri."""
    code = idp.code_for(legacy, code_challenge=None, code_challenge_method=None)
    response = idp.exchange(legacy, code, code_verifier=None)
    assert response.status_code == 200, response.text
    assert "access_token" in response.json()


# --- RFC 6749 §4.1.2: codes are short-lived, single use, and stored as hashes --------------------


def test_code_is_single_use_and_replay_revokes_tokens(idp: Harness, rp: RP) -> None:
    """§4.1.2: the client MUST NOT use a code more than once; if it is used more than once the
    server MUST deny the request and SHOULD revoke all tokens previously issued from it."""
    code = idp.code_for(rp)
    first = idp.exchange(rp, code)
    assert first.status_code == 200, first.text
    access_token = first.json()["access_token"]
    assert userinfo(idp, access_token).status_code == 200

    second = idp.exchange(rp, code)
    assert second.status_code == 400
    assert error_of(second) == "invalid_grant"
    assert "access_token" not in second.json()

    after = userinfo(idp, access_token)
    assert after.status_code == 401
    assert after.json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in after.headers["www-authenticate"]
    assert [row.client_id for row in audit_events(idp, "code.reused")] == [rp.client_id]


def test_expired_code_is_invalid_grant(idp: Harness, rp: RP) -> None:
    """§4.1.2: a code MUST expire shortly after issue (this server: 60 s at most)."""
    code = idp.code_for(rp)
    (lifetime,) = sql(idp, "SELECT expires_at - created_at FROM authorization_codes")
    assert 0 < lifetime[0] <= 60
    past = int(time.time()) - 1
    sql(idp, "UPDATE authorization_codes SET expires_at = :t, created_at = :t - 60", t=past)
    response = idp.exchange(rp, code)
    assert response.status_code == 400
    assert error_of(response) == "invalid_grant"


def test_codes_are_stored_only_as_hashes(idp: Harness, rp: RP) -> None:
    """§10.5 (codes are bearer credentials): the table holds sha256(code), never the code."""
    code = idp.code_for(rp)
    rows = sql(idp, "SELECT * FROM authorization_codes")
    assert len(rows) == 1
    assert all(code not in str(value) for value in rows[0])
    assert rows[0].code_hash == hashlib.sha256(code.encode()).hexdigest()


def test_racing_redemptions_yield_one_token(idp: Harness, rp: RP) -> None:
    """§4.1.2: single use holds under concurrency: of N simultaneous redemptions of one code,
    exactly one succeeds and the others are invalid_grant."""
    code = idp.code_for(rp)
    racers = 4
    barrier = threading.Barrier(racers)
    results: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()

    def redeem() -> None:
        # A client of its own per thread, not entered: entering would run the app's lifespan,
        # whose exit disposes of the shared engine.
        client = TestClient(idp.app, base_url=ISSUER)
        barrier.wait()
        try:
            response = client.post(
                "/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": rp.redirect_uri,
                    "code_verifier": rp.verifier,
                },
                headers=rp.auth(),
            )
        finally:
            client.close()
        with lock:
            results.append((response.status_code, response.json()))

    threads = [threading.Thread(target=redeem) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == racers
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [400] * (racers - 1), results
    assert all(body["error"] == "invalid_grant" for status, body in results if status == 400)


def test_code_dies_with_the_session(idp: Harness, rp: RP) -> None:
    """OIDC Core §3.1.2 / RFC 6749 §10.5: a code is bound to the sign-in that produced it; once
    that session has ended (logout, timeout), the code is invalid_grant."""
    code = idp.code_for(rp)
    sql(idp, "DELETE FROM sessions")
    response = idp.exchange(rp, code)
    assert response.status_code == 400
    assert error_of(response) == "invalid_grant"


# --- RFC 9068: JWT access tokens -----------------------------------------------------------------


def published_kids(idp: Harness) -> list[str]:
    return [key["kid"] for key in idp.http.get("/jwks.json").json()["keys"]]


def test_access_token_from_code_is_rfc9068_jwt(idp: Harness, rp: RP) -> None:
    """RFC 9068 §2.1: typ at+jwt, signed (RS256) with a published kid; §2.2: iss, exp, aud, sub
    (the user), client_id, iat, jti, scope."""
    user_id = sql(idp, "SELECT id FROM users")[0][0]
    token = idp.tokens(rp)["access_token"]
    header = jose_header(token)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "RS256"
    assert header["kid"] in published_kids(idp)
    claims = idp.decode(token).claims
    assert claims["iss"] == ISSUER
    assert claims["aud"] == ISSUER
    assert claims["sub"] == user_id
    assert claims["client_id"] == rp.client_id
    assert claims["scope"] == "openid profile email"
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    assert abs(claims["iat"] - time.time()) < 10
    assert claims["exp"] - claims["iat"] == 300


def test_access_token_from_client_credentials(idp: Harness, service: RP) -> None:
    """RFC 9068 §2.2: with no resource owner, sub is the client's own identifier."""
    response = idp.client_credentials(service)
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert jose_header(token)["typ"] == "at+jwt"
    claims = idp.decode(token).claims
    assert claims["sub"] == service.client_id
    assert claims["client_id"] == service.client_id
    assert claims["iss"] == ISSUER and claims["aud"] == ISSUER
    assert claims["scope"].split() == SERVICE_SCOPES
    assert claims["exp"] - claims["iat"] == 300
    assert response.json()["expires_in"] == 300


def test_access_tokens_have_unique_jti(idp: Harness, service: RP) -> None:
    """RFC 9068 §2.2 (jti, RFC 7519 §4.1.7): each token has its own identifier."""
    jtis = {
        idp.decode(idp.client_credentials(service).json()["access_token"]).claims["jti"]
        for _ in range(3)
    }
    assert len(jtis) == 3


def test_client_access_token_ttl(idp: Harness) -> None:
    """RFC 9068 §2.2 exp, with a per-client lifetime: access_token_ttl=60 gives exp - iat = 60."""
    short = idp.client(
        grant_types=["client_credentials"],
        scopes=SERVICE_SCOPES,
        redirect_uris=[],
        access_token_ttl=60,
    )
    response = idp.client_credentials(short)
    assert response.status_code == 200, response.text
    claims = idp.decode(response.json()["access_token"]).claims
    assert claims["exp"] - claims["iat"] == 60
    assert response.json()["expires_in"] == 60


# --- OIDC Core §2 and §3.1.3.6: the ID token -----------------------------------------------------


def test_id_token_claims(idp: Harness, rp: RP) -> None:
    """OIDC Core §2: iss, sub, aud (the client_id), azp, exp, iat, auth_time, nonce, acr, amr;
    §3.1.3.6: at_hash = base64url(left half of SHA-256(access_token)); Front-Channel Logout §3:
    sid. Signed RS256 with a published kid."""
    tokens = idp.tokens(rp)
    user_id = sql(idp, "SELECT id FROM users")[0][0]
    session = sql(idp, "SELECT sid, auth_time FROM sessions")[0]
    header = jose_header(tokens["id_token"])
    assert header["alg"] == "RS256"
    assert header["kid"] in published_kids(idp)
    claims = idp.decode(tokens["id_token"]).claims
    now = time.time()
    assert claims["iss"] == ISSUER
    assert claims["sub"] == user_id
    assert claims["aud"] == rp.client_id
    assert claims["azp"] == rp.client_id
    assert abs(claims["iat"] - now) < 10
    assert claims["exp"] > now
    assert claims["auth_time"] == session.auth_time <= claims["iat"]
    assert claims["nonce"] == rp.nonce
    assert claims["sid"] == session.sid
    assert claims["amr"] == ["pwd"]
    assert isinstance(claims["acr"], str) and claims["acr"]
    digest = hashlib.sha256(tokens["access_token"].encode("ascii")).digest()
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


# --- RFC 6749 §4.4: client credentials -----------------------------------------------------------


def test_client_credentials_issues_no_refresh_token(idp: Harness, service: RP) -> None:
    """§4.4.3: a refresh token SHOULD NOT be included."""
    response = idp.client_credentials(service)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "refresh_token" not in body
    assert "id_token" not in body
    assert body["token_type"] == "Bearer"


def test_client_credentials_narrows_scope(idp: Harness, service: RP) -> None:
    """§3.3 and §4.4.2: the client may ask for a subset of its scopes and gets that subset."""
    response = idp.client_credentials(service, scope="api.write")
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "api.write"
    assert idp.decode(response.json()["access_token"]).claims["scope"] == "api.write"


def test_client_credentials_unregistered_scope(idp: Harness, service: RP) -> None:
    """§3.3 / §5.2 invalid_scope: a scope the client was not registered for is refused."""
    response = idp.client_credentials(service, scope="api.admin")
    assert response.status_code == 400
    assert error_of(response) == "invalid_scope"


def test_a_changed_registration_holds_from_the_next_request(idp: Harness, service: RP) -> None:
    """§3.3 and §2.3.1: the token endpoint answers from the client's registration as stored
    now. The copy of the client it keeps between requests (idp.store.driver.Recent) is made
    again when the row changes, here by another writer than this process's own paths: a
    narrowed scope is refused, and a changed token lifetime applies, at the very next request."""
    first = idp.client_credentials(service, scope="api.write")
    assert first.status_code == 200, first.text
    sql(
        idp,
        "UPDATE clients SET scopes = :s, access_token_ttl = 120 WHERE client_id = :c",
        s='["api.read"]',
        c=service.client_id,
    )
    assert error_of(idp.client_credentials(service, scope="api.write")) == "invalid_scope"
    narrowed = idp.client_credentials(service, scope="api.read")
    assert narrowed.status_code == 200, narrowed.text
    assert narrowed.json()["expires_in"] == 120


@pytest.mark.parametrize("scope", ["openid", "profile", "api.read openid"])
def test_client_credentials_refuses_user_scopes(idp: Harness, scope: str) -> None:
    """§4.4 / §5.2 invalid_scope: with no end-user there is no identity to give out, so OpenID
    scopes are refused even to a client registered for them."""
    both = idp.client(
        grant_types=["authorization_code", "client_credentials"],
        scopes=["openid", "profile", "api.read"],
    )
    response = idp.client_credentials(both, scope=scope)
    assert response.status_code == 400
    assert error_of(response) == "invalid_scope"


def test_client_credentials_default_scope(idp: Harness) -> None:
    """§3.3: without a scope parameter the server uses a pre-defined default: all of the
    client's registered service scopes (and none of its user scopes)."""
    both = idp.client(
        grant_types=["authorization_code", "client_credentials"],
        scopes=["openid", "profile", "api.read", "api.write"],
    )
    response = idp.client_credentials(both)
    assert response.status_code == 200, response.text
    assert response.json()["scope"].split() == ["api.read", "api.write"]


# --- the hot path --------------------------------------------------------------------------------


def test_client_credentials_hot_path(
    idp: Harness, service: RP, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 6749 §4.4 at scale: a client_credentials request costs at most one database statement
    (reading the client) and no password hashing (client secrets are SHA-256-checked)."""

    def no_argon2(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("argon2 on the client_credentials path")

    passwords = idp.runtime.passwords
    monkeypatch.setattr(passwords, "verify", no_argon2)
    monkeypatch.setattr(passwords, "hash", no_argon2)
    assert idp.client_credentials(service).status_code == 200  # warm-up: key ring loaded
    with statements(idp.runtime.engine) as probe:
        sql(idp, "SELECT 1")
    assert len(probe) == 1  # the listener sees statements
    # The client read runs on the driver's cursor, below SQLAlchemy's events: count it apart.
    reads: list[str] = []
    real_read = clients.get_record

    def counted_read(db: Any, client_id: str) -> Any:
        reads.append(client_id)
        return real_read(db, client_id)

    real_awaited = clients.get_record_awaited

    async def counted_awaited(reads_on_the_loop: Any, client_id: str) -> Any:
        reads.append(client_id)  # PostgreSQL: awaited on the event loop (idp.db.loop_reads)
        return await real_awaited(reads_on_the_loop, client_id)

    monkeypatch.setattr(clients, "get_record", counted_read)
    monkeypatch.setattr(clients, "get_record_awaited", counted_awaited)
    with statements(idp.runtime.engine) as seen:
        response = idp.client_credentials(service)
    assert response.status_code == 200, response.text
    assert reads == [service.client_id]
    assert seen == [], seen  # nothing else: no write, no second read


@pytest.mark.parametrize("name", ["a\\b", 'q"', "é", "\x01", "x" * 65])
@pytest.mark.parametrize("problem", ["repeated", "too-long", "nul"])
def test_unusual_parameter_name_in_an_error_is_not_a_crash(
    idp: Harness, name: str, problem: str
) -> None:
    """RFC 6749 §5.2: error_description is printable ASCII without '"' or '\\'. A refused
    parameter whose name is anything else is not named in it: invalid_request, not a 500."""
    value = {"repeated": "v", "too-long": "v" * 5000, "nul": "\x00"}[problem]
    pairs = [("grant_type", "client_credentials"), (name, value)]
    if problem == "repeated":
        pairs.append((name, value))
    response = idp.http.post(
        "/token",
        content=urlencode(pairs).encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400, response.text
    assert error_of(response) == "invalid_request"
