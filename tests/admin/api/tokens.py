"""Credentials for the admin API in tests: an admin service's client_credentials token, an
administrator's token from a sign-in with password and TOTP, and tokens minted directly with
the server's keys, to test what the API refuses whatever the token endpoint would issue."""

from __future__ import annotations

from typing import Any

import httpx

from idp.protocol.tokens import token_service
from tests.helpers import PASSWORD, RP, Harness, form_fields, query_of
from tests.mfa_helpers import answer_factor, enrol_totp, totp_code

API = "/admin/api"


def service(idp: Harness, scope: str = "idp:admin") -> RP:
    """An admin service: a client_credentials client registered with the admin scope(s)."""
    return idp.client(
        name="Admin automation",
        grant_types=["client_credentials"],
        scopes=scope.split(),
        redirect_uris=[],
    )


def service_token(idp: Harness, rp: RP, scope: str | None = None) -> str:
    response = idp.client_credentials(rp, **({"scope": scope} if scope else {}))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def call(idp: Harness, method: str, path: str, token: str | None, **kwargs: Any) -> httpx.Response:
    headers = bearer(token) if token is not None else {}
    return idp.http.request(method, API + path, headers=headers, **kwargs)


def admin_app(idp: Harness) -> RP:
    """A web app through which a person may ask for the admin scopes."""
    return idp.client(name="Admin console", scopes=["openid", "idp:admin", "idp:admin.read"])


def sign_in_with_totp(idp: Harness, rp: RP, email: str, secret: str | None, scope: str) -> str:
    """The authorization code flow, with the password and (if `secret`) a TOTP code, consent
    allowed; returns the access token."""
    return str(sign_in_tokens(idp, rp, email, secret, scope)["access_token"])


def sign_in_tokens(
    idp: Harness, rp: RP, email: str, secret: str | None, scope: str
) -> dict[str, Any]:
    """As sign_in_with_totp(), returning the whole token response."""
    response = idp.follow_local(idp.authorize(rp, scope=scope))
    page = idp.http.get(response.headers["location"])
    fields = form_fields(page.text)
    fields.update(email=email, password=PASSWORD)
    response = idp.http.post("/login", data=fields)
    if secret is not None:
        response = answer_factor(idp, response, totp_code(secret))
    response = idp.follow_to_code(response, rp, email=email)
    code = query_of(response.headers["location"])["code"]
    tokens = idp.exchange(rp, code)
    assert tokens.status_code == 200, tokens.text
    return tokens.json()  # type: ignore[no-any-return]


def admin_person(idp: Harness, email: str = "root@example.com") -> tuple[str, str]:
    """An administrator with an authenticator app: (user id, TOTP secret)."""
    user_id = idp.user(email, is_admin=True)
    return user_id, enrol_totp(idp, user_id)


def minted(idp: Harness, **claims: Any) -> str:
    """An access token signed with the server's own key, for cases the token endpoint would
    never issue (an expired one, an admin scope without two factors)."""
    args: dict[str, Any] = {
        "subject": "nobody",
        "client_id": "nobody",
        "scope": "idp:admin",
        "ttl": 300,
    }
    args.update(claims)
    return token_service(idp.runtime).access_token(**args).token
