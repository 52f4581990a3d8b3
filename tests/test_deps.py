"""The request's transaction commits before the response is sent (FastAPI scope="function"): a
failed commit is a 500, never the success it would have been (idp/deps.py; ARCHITECTURE.md,
"the request owns the transaction").

Commits are made to fail with a `before_commit` listener on one of the runtime's session
factories: `sessions` (read-write units of work) or `reads` (read-only ones, `ReadDb`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from idp.security.cookies import SESSION
from idp.security.headers import DEFAULT_CSP
from tests.helpers import PASSWORD, RP, Harness, form_fields, redeem
from tests.refresh_helpers import token_row
from tests.token_helpers import ISSUER, sql

# Internal detail that must reach only the log, never an answer.
SECRET_DETAIL = "boom: commit refused (internal detail 7f3a)"


def boom(_session: Session) -> None:
    raise RuntimeError(SECRET_DETAIL)


@contextmanager
def failing_commits(factory: sessionmaker[Session]) -> Iterator[None]:
    """Every commit of a unit of work from `factory` fails, until the block ends."""
    event.listen(factory, "before_commit", boom)
    try:
        yield
    finally:
        event.remove(factory, "before_commit", boom)


@pytest.fixture
def raw(idp: Harness) -> Iterator[TestClient]:
    """A client that shows the 500 the server answers instead of raising its exception. The
    worker is stopped, so only the request under test commits."""
    idp.app.state.worker.stop()
    client = TestClient(
        idp.app, base_url=ISSUER, raise_server_exceptions=False, follow_redirects=False
    )
    yield client
    client.close()


@pytest.fixture
def alice(idp: Harness) -> str:
    return idp.user()


@pytest.fixture
def rp(idp: Harness, alice: str) -> RP:
    return idp.client()


def assert_server_error(response: httpx.Response) -> dict[str, Any]:
    """RFC 6749 §5.2's closest: 500 server_error in JSON, not cached, and no detail."""
    assert response.status_code == 500, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["error"] == "server_error"
    assert response.headers["cache-control"] == "no-store"
    assert "boom" not in response.text and "7f3a" not in response.text
    return body


def assert_security_headers(response: httpx.Response) -> None:
    """Issue 9 / the SecurityHeaders middleware: every answer, a 500 included, carries them,
    and its request id (idp.ops.requests), which the log line of the failure also carries."""
    assert response.headers["x-request-id"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == DEFAULT_CSP
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "same-origin"


# --- /token: one write transaction -------------------------------------------------------------


def test_token_whose_commit_fails_is_a_500_and_the_code_stays_usable(
    idp: Harness, rp: RP, raw: TestClient
) -> None:
    """RFC 6749 §4.1.3 and §5.2: a code exchange whose transaction cannot commit answers 500
    server_error with no token, never the 200 it would have been. Nothing was half-written:
    the UPDATE that consumed the code (§4.1.2, used once) rolled back with the rest, so the
    code is still unused and redeems once the database accepts commits again."""
    code = idp.code_for(rp)
    with failing_commits(idp.runtime.sessions):
        failed = redeem(raw, rp, code)
    body = assert_server_error(failed)
    assert "access_token" not in body and "id_token" not in body
    assert_security_headers(failed)
    (row,) = sql(idp, "SELECT used_at, token_jti FROM authorization_codes")
    assert row.used_at is None and row.token_jti is None
    redeemed = redeem(idp.http, rp, code)
    assert redeemed.status_code == 200, redeemed.text
    assert redeemed.json()["access_token"]
    # §4.1.2: and used once, as ever.
    assert redeem(idp.http, rp, code).json()["error"] == "invalid_grant"


def test_refresh_whose_commit_fails_keeps_the_old_token(
    idp: Harness, alice: str, raw: TestClient
) -> None:
    """RFC 6749 §6 and §10.4 (rotation): a refresh whose commit fails answers 500 and rotates
    nothing: the presented refresh token is still the family's current one afterwards, not
    taken for a replay."""
    rp = idp.client(grant_types=["authorization_code", "refresh_token"])
    token = idp.tokens(rp, scope="openid offline_access")["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": token}
    with failing_commits(idp.runtime.sessions):
        assert_server_error(raw.post("/token", data=form, headers=rp.auth()))
    assert token_row(idp, token).used_at is None
    again = idp.http.post("/token", data=form, headers=rp.auth())
    assert again.status_code == 200, again.text
    assert again.json()["refresh_token"] != token


# --- ReadDb: a read-only transaction, committed on exit ------------------------------------------


def test_userinfo_whose_commit_fails_is_a_500(idp: Harness, rp: RP, raw: TestClient) -> None:
    """OIDC Core §5.3 / RFC 6750 §3: /userinfo (ReadDb, whose exit commits) answers 500
    server_error when that commit fails, never the 200 with the claims: the dependency's exit
    runs before the response is sent."""
    access_token = idp.tokens(rp)["access_token"]
    headers = {"Authorization": f"Bearer {access_token}"}
    with failing_commits(idp.runtime.reads):
        failed = raw.get("/userinfo", headers=headers)
    body = assert_server_error(failed)
    assert "sub" not in body and "email" not in body
    assert_security_headers(failed)
    assert raw.get("/userinfo", headers=headers).status_code == 200


def test_page_whose_commit_fails_is_a_500_page_without_detail(
    idp: Harness, raw: TestClient
) -> None:
    """A person's page (/, ReadDb) whose commit fails is the error page with status 500, the
    security headers, and none of the exception's detail."""
    with failing_commits(idp.runtime.reads):
        failed = raw.get("/")
    assert failed.status_code == 500, failed.text
    assert failed.headers["content-type"].startswith("text/html")
    assert "boom" not in failed.text and "7f3a" not in failed.text
    assert_security_headers(failed)


def test_login_whose_commit_fails_sets_no_session(
    idp: Harness, alice: str, raw: TestClient
) -> None:
    """A sign-in whose transaction cannot commit is a 500 and sets no session cookie: a cookie
    for a session that was never stored would be a sign-in that did not happen."""
    page = raw.get("/login")
    fields = form_fields(page.text)
    fields.update(email="alice@example.com", password=PASSWORD)
    with failing_commits(idp.runtime.sessions):
        failed = raw.post("/login", data=fields)
    assert failed.status_code == 500, failed.text
    assert not any(SESSION in c for c in failed.headers.get_list("set-cookie"))
    assert "boom" not in failed.text and "7f3a" not in failed.text
    assert_security_headers(failed)
    assert sql(idp, "SELECT sid FROM sessions") == []
    # The same form, once commits succeed again, signs in: only the commit had failed.
    signed_in = raw.post("/login", data=fields)
    assert signed_in.status_code == 303, signed_in.text
    assert any(SESSION in c for c in signed_in.headers.get_list("set-cookie"))
    assert len(sql(idp, "SELECT sid FROM sessions")) == 1
