"""Small tools for the refresh-token, revocation and introspection tests (issue 3)."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from starlette.testclient import TestClient

from tests.conftest import make_settings, migrated_app
from tests.helpers import RP, Harness
from tests.token_helpers import ISSUER, sql

OFFLINE_SCOPE = "openid profile offline_access"
REFRESH_GRANTS = ["authorization_code", "refresh_token"]


def offline_client(idp: Harness, **kwargs: Any) -> RP:
    """A client that may use the refresh_token grant (RFC 6749 §6)."""
    return idp.client(grant_types=REFRESH_GRANTS, **kwargs)


def resource_server(idp: Harness, name: str = "api", **kwargs: Any) -> RP:
    """A protected resource registered with permission to introspect (RFC 7662 §2.1) the
    tokens for its resources (`resources=`; by default the server-wide audience)."""
    return idp.client(
        name=name,
        grant_types=["client_credentials"],
        scopes=["api"],
        redirect_uris=[],
        can_introspect=True,
        **kwargs,
    )


def hashed(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _form(rp: RP, data: dict[str, str]) -> dict[str, str]:
    form = dict(data)
    if not rp.secret:
        form["client_id"] = rp.client_id
    return {k: v for k, v in form.items() if v is not None}


def refresh(
    idp: Harness, rp: RP, token: str, http: TestClient | None = None, **data: str
) -> httpx.Response:
    """POST /token with grant_type=refresh_token, authenticated as `rp`."""
    form = _form(rp, {"grant_type": "refresh_token", "refresh_token": token, **data})
    return (http or idp.http).post("/token", data=form, headers=rp.auth())


def refreshed(idp: Harness, rp: RP, token: str, **data: str) -> dict[str, Any]:
    response = refresh(idp, rp, token, None, **data)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def revoke(idp: Harness, rp: RP, token: str | None, **data: str) -> httpx.Response:
    """POST /revoke (RFC 7009 §2.1), authenticated as `rp`."""
    form = _form(rp, {"token": token, **data})  # type: ignore[dict-item]
    return idp.http.post("/revoke", data=form, headers=rp.auth())


def introspect(idp: Harness, rp: RP, token: str | None, **data: str) -> httpx.Response:
    """POST /introspect (RFC 7662 §2.1), authenticated as `rp`."""
    form = _form(rp, {"token": token, **data})  # type: ignore[dict-item]
    return idp.http.post("/introspect", data=form, headers=rp.auth())


def introspected(idp: Harness, rp: RP, token: str) -> dict[str, Any]:
    response = introspect(idp, rp, token)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()  # type: ignore[no-any-return]


def userinfo(idp: Harness, access_token: str) -> httpx.Response:
    return idp.http.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})


def is_no_store(response: httpx.Response) -> bool:
    return "no-store" in response.headers.get("cache-control", "")


# --- the database, read directly -----------------------------------------------------------------


def token_row(idp: Harness, value: str) -> Any:
    """The refresh_tokens row of a raw refresh token, or None."""
    rows = sql(idp, "SELECT * FROM refresh_tokens WHERE token_hash = :h", h=hashed(value))
    return rows[0] if rows else None


def family_row(idp: Harness, family_id: str) -> Any:
    return sql(idp, "SELECT * FROM token_families WHERE id = :f", f=family_id)[0]


def family_tokens(idp: Harness, family_id: str) -> list[Any]:
    return sql(idp, "SELECT * FROM refresh_tokens WHERE family_id = :f", f=family_id)


def age_use(idp: Harness, value: str, seconds: int) -> None:
    """Move the moment `value` was rotated `seconds` into the past (past the grace window)."""
    sql(
        idp,
        "UPDATE refresh_tokens SET used_at = used_at - :s WHERE token_hash = :h",
        s=seconds,
        h=hashed(value),
    )


# --- other apps on the same database, and hand-made tokens ---------------------------------------


@contextmanager
def harness(database_url: str, tmp_path: Path, **overrides: object) -> Iterator[Harness]:
    """An IdP built with other settings (e.g. refresh_token_reuse_grace_seconds=0)."""
    app = migrated_app(make_settings(database_url, tmp_path, **overrides))
    try:
        with TestClient(app, base_url=ISSUER, follow_redirects=False) as http:
            yield Harness(app, http)
    finally:
        app.state.runtime.engine.dispose()


def signed_access_token(idp: Harness, client_id: str, sub: str, exp_offset: int) -> str:
    """An RFC 9068 access token signed with the IdP's own key, expiring `exp_offset` s from now."""
    kid, key = idp.runtime.keys.signing_key()
    iat = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": sub,
        "aud": idp.runtime.settings.audience,
        "iat": iat - 7200,
        "exp": iat + exp_offset,
        "jti": secrets.token_urlsafe(16),
        "client_id": client_id,
        "scope": "openid",
    }
    return jwt.encode({"alg": "RS256", "kid": kid, "typ": "at+jwt"}, claims, key)
