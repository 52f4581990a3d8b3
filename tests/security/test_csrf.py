"""CSRF protection of the HTML forms (OWASP CSRF Prevention Cheat Sheet; issue 9): a token bound
to the browser session, rotated at login and logout, and an Origin check that refuses `null`."""

from __future__ import annotations

import httpx
import pytest
from starlette.testclient import TestClient

from tests.conftest import ISSUER
from tests.helpers import PASSWORD, Harness, form_fields
from tests.token_helpers import audit_events, json_of

CSRF_COOKIE = "__Host-idp_csrf"


def browser(idp: Harness) -> TestClient:
    return TestClient(idp.app, base_url=ISSUER, follow_redirects=False)


def signed_in(idp: Harness, http: TestClient, email: str) -> None:
    fields = form_fields(http.get("/login").text)
    fields.update(email=email, password=PASSWORD)
    assert http.post("/login", data=fields).status_code == 303


def logout_form(http: TestClient) -> dict[str, str]:
    """The confirmation form of a logout that does not prove it comes from the session."""
    page = http.get("/logout")
    assert page.status_code == 200 and 'name="confirm"' in page.text, page.text
    fields = form_fields(page.text)
    fields["confirm"] = "yes"
    return fields


def refused(response: httpx.Response) -> bool:
    return response.status_code == 403 and "location" not in response.headers


def test_a_token_from_another_session_is_refused(idp: Harness) -> None:
    """A token is bound to the session it was made in: one browser's token, planted in another
    browser's form (with that browser's own cookies), is refused."""
    idp.user("alice@example.com")
    idp.user("bob@example.com")
    alice, bob = browser(idp), browser(idp)
    signed_in(idp, alice, "alice@example.com")
    signed_in(idp, bob, "bob@example.com")
    alices = logout_form(alice)
    bobs = logout_form(bob)
    bobs["csrf_token"] = alices["csrf_token"]
    assert refused(bob.post("/logout", data=bobs))
    # Bob's own token works: the refusal was about whose token it was.
    assert bob.post("/logout", data=logout_form(bob)).status_code == 200


def test_tokens_rotate_at_login(idp: Harness) -> None:
    """Signing in sets a new CSRF anchor: a token from a page shown before the sign-in does not
    verify after it (a token an attacker planted before login is worthless)."""
    idp.user()
    before = form_fields(idp.http.get("/login").text)["csrf_token"]
    before_cookie = idp.http.cookies.get(CSRF_COOKIE)
    fields = form_fields(idp.http.get("/login").text)
    fields.update(email="alice@example.com", password=PASSWORD)
    login = idp.http.post("/login", data=fields)
    assert login.status_code == 303
    assert any(c.startswith(CSRF_COOKIE + "=") for c in login.headers.get_list("set-cookie"))
    assert idp.http.cookies.get(CSRF_COOKIE) != before_cookie
    stale = logout_form(idp.http)
    stale["csrf_token"] = before
    assert refused(idp.http.post("/logout", data=stale))


def test_tokens_rotate_at_logout(idp: Harness) -> None:
    """Signing out sets a new CSRF anchor too: a form from the ended session does not work in
    the next one."""
    idp.user()
    signed_in(idp, idp.http, "alice@example.com")
    old = logout_form(idp.http)
    out = idp.http.post("/logout", data=old)
    assert out.status_code == 200
    assert any(c.startswith(CSRF_COOKIE + "=") for c in out.headers.get_list("set-cookie"))
    signed_in(idp, idp.http, "alice@example.com")
    assert refused(idp.http.post("/logout", data=old))


@pytest.mark.parametrize("origin", ["null", "https://evil.example"])
def test_origin_null_or_foreign_is_refused(idp: Harness, origin: str) -> None:
    """A state-changing POST whose Origin is another site, or `null` (sandboxed documents,
    privacy-stripped requests), is refused; pages carry Referrer-Policy same-origin, so a
    browser sends the real origin on our own forms."""
    idp.user()
    fields = form_fields(idp.http.get("/login").text)
    fields.update(email="alice@example.com", password=PASSWORD)
    assert refused(idp.http.post("/login", data=fields, headers={"Origin": origin}))
    ok = idp.http.post("/login", data=fields, headers={"Origin": ISSUER})
    assert ok.status_code == 303


def test_refusals_are_audited(idp: Harness) -> None:
    """The audit trail records refused forms (csrf.rejected), with the path."""
    idp.user()
    fields = form_fields(idp.http.get("/login").text)
    fields.update(email="alice@example.com", password=PASSWORD, csrf_token="x" * 43)
    assert refused(idp.http.post("/login", data=fields))
    [(_, _, detail)] = audit_events(idp, "csrf.rejected")
    assert json_of(detail)["count"] == 1
