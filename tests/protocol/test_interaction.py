"""Issue 9: the stored sign-in interaction. What /authorize validated is kept on the server; the
browser carries only an id, bound to that browser by a `__Host-` cookie of its own, valid for 15
minutes, and its outcome is taken once."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from idp.protocol.authorization import Browser
from idp.protocol.interaction import start_own
from idp.worker import prune
from tests.authorize_helpers import is_login_redirect, redirect_to_rp
from tests.conftest import ISSUER, make_settings, migrated_app
from tests.helpers import PASSWORD, RP, Harness, form_fields


def interaction_of(response: object) -> str:
    location = response.headers["location"]  # type: ignore[attr-defined]
    return parse_qs(urlsplit(location).query)["interaction"][0]


def sign_in(idp: Harness, http: TestClient, location: str) -> object:
    fields = form_fields(http.get(location).text)
    fields.update(email="alice@example.com", password=PASSWORD)
    return http.post("/login", data=fields)


def another_browser(idp: Harness) -> TestClient:
    return TestClient(idp.app, base_url=ISSUER, follow_redirects=False)


def sql(idp: Harness, statement: str) -> list[object]:
    with idp.runtime.engine.begin() as conn:
        result = conn.execute(text(statement))
        return list(result) if result.returns_rows else []


def test_the_id_opens_nothing_in_another_browser(idp: Harness) -> None:
    """An interaction id copied into another browser (a phished link) shows an error page there,
    and signing in there does not advance it."""
    idp.user()
    rp = idp.client()
    response = idp.authorize(rp)
    assert is_login_redirect(response)
    location = response.headers["location"]
    other = another_browser(idp)
    page = other.get(location)
    assert page.status_code == 400
    assert "expired" in page.text
    resumed = other.get("/authorize/resume?interaction=" + interaction_of(response))
    assert resumed.status_code == 400 and "location" not in resumed.headers
    # The browser that started it still can.
    done = idp.follow_to_code(response, rp)
    assert "code" in redirect_to_rp(done, rp, status=303)


def test_the_interaction_cookie_is_host_prefixed_and_httponly(idp: Harness) -> None:
    """RFC 6265bis §4.1.3.2: the binding cookie is `__Host-` (Secure, Path=/, no Domain),
    HttpOnly and SameSite=Lax, and it is not the CSRF cookie."""
    rp = idp.client()
    response = idp.authorize(rp)
    lines = [c for c in response.headers.get_list("set-cookie") if "idp_interaction" in c]
    assert len(lines) == 1
    line = lines[0].lower()
    assert line.startswith("__host-idp_interaction=")
    assert "secure" in line and "httponly" in line and "samesite=lax" in line and "path=/" in line
    assert "domain=" not in line


def test_an_expired_interaction_is_an_error_page(idp: Harness) -> None:
    """The interaction lives 15 minutes: after that the login page and the resume show an
    error page (never a redirect), and the person starts again from the application."""
    idp.user()
    rp = idp.client()
    response = idp.authorize(rp)
    fields = form_fields(idp.http.get(response.headers["location"]).text)
    fields.update(email="alice@example.com", password=PASSWORD)
    sql(idp, "UPDATE interactions SET expires_at = expires_at - 901")
    assert idp.http.get(response.headers["location"]).status_code == 400
    signed_in = idp.http.post("/login", data=fields)
    assert signed_in.status_code == 400 and "location" not in signed_in.headers
    resumed = idp.http.get("/authorize/resume?interaction=" + interaction_of(response))
    assert resumed.status_code == 400 and "location" not in resumed.headers


def test_the_outcome_is_taken_once(idp: Harness) -> None:
    """RFC 6749 §4.1.2 (one code per authorization): once an interaction has given its code,
    resuming it again gives nothing."""
    idp.user()
    rp = idp.client(trusted=True)
    response = idp.authorize(rp)
    interaction = interaction_of(response)
    first = idp.follow_local(sign_in(idp, idp.http, response.headers["location"]))  # type: ignore[arg-type]
    assert "code" in redirect_to_rp(first, rp)
    again = idp.http.get("/authorize/resume?interaction=" + interaction)
    assert again.status_code == 400 and "location" not in again.headers


def test_a_denied_interaction_cannot_be_resumed(idp: Harness) -> None:
    """RFC 6749 §4.1.2.1 access_denied ends the interaction too."""
    idp.user()
    rp = idp.client()
    response = idp.authorize(rp)
    interaction = interaction_of(response)
    page = idp.follow_local(sign_in(idp, idp.http, response.headers["location"]))  # type: ignore[arg-type]
    fields = form_fields(page.text)
    fields["decision"] = "deny"
    denied = idp.http.post("/consent", data=fields)
    assert redirect_to_rp(denied, rp, status=303)["error"] == "access_denied"
    again = idp.http.get("/authorize/resume?interaction=" + interaction)
    assert again.status_code == 400


def test_the_database_holds_only_the_hash_of_the_id(idp: Harness) -> None:
    """Issue 9 / habit 7: the id is a bearer secret; the table keeps its SHA-256 only."""
    rp = idp.client()
    interaction = interaction_of(idp.authorize(rp))
    rows = sql(idp, "SELECT id_hash, browser_hash FROM interactions")
    assert len(rows) == 1
    assert interaction not in str(rows)


def test_anonymous_creation_is_capped_per_client_address(database_url: str, tmp_path: Path) -> None:
    """Issue 9: every anonymous /authorize writes an interaction, so one address may start at
    most IDP_INTERACTIONS_PER_IP_PER_MINUTE of them a minute; the next gets a 429 page."""
    app = migrated_app(make_settings(database_url, tmp_path, interactions_per_ip_per_minute=3))
    try:
        h = Harness(app, TestClient(app, base_url=ISSUER, follow_redirects=False))
        rp: RP = h.client()
        for _ in range(3):
            assert is_login_redirect(h.authorize(rp))
        refused = h.authorize(rp)
        assert refused.status_code == 429
        assert "location" not in refused.headers
        assert sql(h, "SELECT count(*) FROM interactions")[0][0] == 3  # type: ignore[index]
    finally:
        app.state.runtime.engine.dispose()


def test_expired_interactions_are_pruned(idp: Harness) -> None:
    """Housekeeping: `idp prune` (and each server, periodically) deletes expired interactions."""
    rp = idp.client()
    idp.authorize(rp)
    idp.authorize(rp)
    sql(idp, "UPDATE interactions SET expires_at = 1")
    counts = prune(idp.runtime.sessions)
    assert counts["interactions"] == 2
    assert sql(idp, "SELECT count(*) FROM interactions")[0][0] == 0  # type: ignore[index]


def test_an_interaction_of_the_idps_own_uses_the_same_steps(idp: Harness) -> None:
    """Issue 9: an interaction may have no client (account pages, admin step-up): the login page
    names no application, and after sign-in the browser goes back to the page that started it;
    consent does not apply to it."""
    idp.user()
    binding = "b" * 43
    idp.http.cookies.set("__Host-idp_interaction", binding, domain="testserver.local")
    with idp.runtime.sessions.begin() as db:
        step = start_own(db, Browser(None, binding, "testclient"), "/account?tab=security")
    page = idp.http.get("/login?interaction=" + step.interaction_id)
    assert page.status_code == 200, page.text
    assert "to continue to" not in page.text
    consent = idp.http.get("/consent?interaction=" + step.interaction_id)
    assert consent.status_code == 400
    fields = form_fields(page.text)
    fields.update(email="alice@example.com", password=PASSWORD)
    signed_in = idp.http.post("/login", data=fields)
    assert signed_in.status_code == 303
    back = idp.http.get(signed_in.headers["location"])
    assert back.status_code == 302
    assert back.headers["location"] == "/account?tab=security"
    again = idp.http.get(signed_in.headers["location"])
    assert again.status_code == 400  # once


def test_an_interaction_of_the_idps_own_returns_only_to_this_server() -> None:
    """OWASP Unvalidated Redirects: the way back is a path on this server, never a URL."""
    for target in ("https://evil.example/", "//evil.example", "/\\evil.example", "account"):
        with pytest.raises(ValueError, match="path on this server"):
            start_own(None, Browser(None, "b" * 43, None), target)  # type: ignore[arg-type]
