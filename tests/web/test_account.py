"""/account: the signed-in person's account page, and signing out everywhere (OIDC
Back-Channel Logout 1.0 §2.5: every session that ends is told to its relying parties)."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.helpers import PASSWORD, Harness, form_fields
from tests.refresh_helpers import OFFLINE_SCOPE, offline_client, refresh
from tests.token_helpers import ISSUER, audit_events, error_of, sql


def test_account_needs_a_sign_in_and_comes_back(idp: Harness) -> None:
    """A visitor without a session signs in first (an interaction of the IdP's own), then
    lands on /account again."""
    idp.user(name="Alice")
    first = idp.http.get("/account")
    assert first.status_code == 302 and first.headers["location"].startswith("/login?interaction=")
    page = idp.http.get(first.headers["location"])
    fields = form_fields(page.text)
    fields.update(email="alice@example.com", password=PASSWORD)
    signed_in = idp.http.post("/login", data=fields)
    resumed = idp.http.get(signed_in.headers["location"])
    assert resumed.headers["location"] == "/account"
    account = idp.http.get("/account")
    assert account.status_code == 200
    assert "alice@example.com" in account.text and "Alice" in account.text
    assert "Password" in account.text  # how this session signed in (amr pwd)
    assert "signed in on 1 browser." in account.text


def test_sign_out_everywhere_ends_every_session_and_grant(idp: Harness) -> None:
    """Every session of the user ends, in this browser and in another one, and every
    refresh-token family is revoked (offline ones included)."""
    user_id = idp.user()
    rp = offline_client(idp)
    tokens = idp.tokens(rp, scope=OFFLINE_SCOPE)
    # A second browser (outside `with`: the app's lifespan already runs for the first one).
    laptop = TestClient(idp.app, base_url=ISSUER, follow_redirects=False)
    Harness(idp.app, laptop).login()
    page = idp.http.get("/account")
    assert "signed in on 2 browsers." in page.text
    csrf = form_fields(page.text)["csrf_token"]
    done = idp.http.post("/account/sign-out-everywhere", data={"csrf_token": csrf})
    assert done.status_code == 303 and done.headers["location"].startswith("/?notice=")
    assert "signed out everywhere" in idp.http.get(done.headers["location"]).text
    assert laptop.get("/account").status_code == 302  # the other browser is signed out too
    assert idp.http.get("/account").status_code == 302
    assert sql(idp, "SELECT * FROM sessions WHERE user_id = :u", u=user_id) == []
    assert error_of(refresh(idp, rp, tokens["refresh_token"])) == "invalid_grant"
    assert audit_events(idp, "sessions.revoked")


def test_sign_out_everywhere_needs_the_form_token(idp: Harness) -> None:
    user_id = idp.user()
    idp.login()
    refused = idp.http.post("/account/sign-out-everywhere", data={"csrf_token": "forged"})
    assert refused.status_code == 403
    assert len(sql(idp, "SELECT * FROM sessions WHERE user_id = :u", u=user_id)) == 1
