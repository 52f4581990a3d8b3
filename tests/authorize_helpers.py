"""What the /authorize, consent and userinfo tests share: reading answers, and moving time."""

from __future__ import annotations

import time
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import update

from idp.store.sessions import BrowserSession
from idp.store.users import User
from tests.conftest import ISSUER
from tests.helpers import PASSWORD, RP, Harness, form_fields, query_of


def assert_error_page(response: httpx.Response) -> None:
    """RFC 6749 §4.1.2.1: an error shown at the IdP, never a redirect to an unverified URI."""
    assert response.status_code == 400, (response.status_code, response.headers)
    assert response.headers["content-type"].startswith("text/html")
    assert "location" not in response.headers


def redirect_to_rp(response: httpx.Response, rp: RP, status: int = 302) -> dict[str, str]:
    """The query of a redirect to the client's redirect_uri; `iss` and `state` always ride along."""
    assert response.status_code == status, (response.status_code, response.text)
    location = response.headers["location"]
    assert location.split("?")[0] == rp.redirect_uri, location
    params = query_of(location)
    assert params.get("iss") == ISSUER, params  # RFC 9207 §2
    assert params.get("state") == rp.state, params
    return params


def redirect_error(response: httpx.Response, rp: RP, status: int = 302) -> str:
    params = redirect_to_rp(response, rp, status)
    assert "code" not in params, params
    return params["error"]


def is_login_redirect(response: httpx.Response) -> bool:
    return response.status_code in (302, 303) and response.headers.get("location", "").startswith(
        "/login?"
    )


def is_consent_page(response: httpx.Response) -> bool:
    return response.status_code == 200 and 'action="/consent"' in response.text


def follow_local(idp: Harness, response: httpx.Response) -> httpx.Response:
    return idp.follow_local(response)


def sign_in_from(
    idp: Harness, response: httpx.Response, email: str = "alice@example.com"
) -> httpx.Response:
    """From /authorize's redirect to /login: fill in the form, and return /authorize's answer."""
    assert is_login_redirect(response), (response.status_code, response.headers)
    page = idp.http.get(response.headers["location"])
    fields = form_fields(page.text)
    fields.update(email=email, password=PASSWORD)
    signed_in = idp.http.post("/login", data=fields)
    assert signed_in.status_code == 303, signed_in.text
    return follow_local(idp, idp.http.get(signed_in.headers["location"]))


def consent_page_for(idp: Harness, rp: RP, **overrides: Any) -> httpx.Response:
    """Sign in (unless already signed in) and stop at the consent page."""
    response = follow_local(idp, idp.authorize(rp, **overrides))
    if is_login_redirect(response):
        response = sign_in_from(idp, response)
    assert is_consent_page(response), (response.status_code, response.text[:500])
    return response


def submit_consent(idp: Harness, page: httpx.Response, decision: str) -> httpx.Response:
    fields = form_fields(page.text)
    fields["decision"] = decision
    return idp.http.post("/consent", data=fields)


def signed_in_with_consent(idp: Harness, rp: RP, **overrides: Any) -> None:
    """Alice has a session and has allowed `rp` the requested scopes."""
    page = consent_page_for(idp, rp, **overrides)
    assert "code" in redirect_to_rp(submit_consent(idp, page, "allow"), rp, status=303)


def age_sessions(idp: Harness, seconds: int) -> None:
    """Pretend every browser session signed in `seconds` earlier than it did."""
    with idp.runtime.sessions.begin() as db:
        db.execute(
            update(BrowserSession).values(
                auth_time=BrowserSession.auth_time - seconds,
                created_at=BrowserSession.created_at - seconds,
            )
        )


def disable_user(idp: Harness, user_id: str) -> None:
    with idp.runtime.sessions.begin() as db:
        db.execute(update(User).where(User.id == user_id).values(disabled=True))


def access_token_claims(idp: Harness, **overrides: Any) -> dict[str, Any]:
    """RFC 9068 §2.2 claims as this IdP writes them, for a token the test signs itself."""
    iat = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": idp.runtime.settings.audience,
        "sub": "someone",
        "client_id": "some-client",
        "scope": "openid",
        "iat": iat,
        "exp": iat + 300,
        "jti": f"test-{iat}-{time.perf_counter_ns()}",
    }
    claims.update(overrides)
    return claims


def sign(
    claims: dict[str, Any], key: RSAKey, kid: str | None, typ: str = "at+jwt", alg: str = "RS256"
) -> str:
    header: dict[str, Any] = {"alg": alg, "typ": typ}
    if kid is not None:
        header["kid"] = kid
    return jwt.encode(header, claims, key, algorithms=[alg])


def sign_with_idp_key(idp: Harness, claims: dict[str, Any], typ: str = "at+jwt") -> str:
    kid, key = idp.runtime.keys.signing_key()
    assert isinstance(key, RSAKey)
    return sign(claims, key, kid, typ)
