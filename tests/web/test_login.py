"""/login: NIST SP 800-63B, the OWASP Session Management Cheat Sheet, and the issue's
"Accounts and sessions" (a password form that works without JavaScript, a fresh session id at
every sign-in, no open redirect, the same answer for every failure)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from starlette.testclient import TestClient

from idp.store.base import now
from tests.conftest import ISSUER, make_settings, migrated_app
from tests.helpers import PASSWORD, RP, Harness, form_fields
from tests.token_helpers import audited_count

SESSION_COOKIE = "__Host-idp_session"
BAD_CREDENTIALS = "Incorrect email or password."
DEV_ISSUER = "http://localhost:8000"


# --- helpers ------------------------------------------------------------------------------------


def sql(app: FastAPI, statement: str, **params: Any) -> list[Any]:
    """Run one statement on the app's database, committed; returns the rows (if any)."""
    with app.state.runtime.engine.begin() as conn:
        result = conn.execute(text(statement), params)
        return list(result) if result.returns_rows else []


def audit_events(app: FastAPI, event: str) -> int:
    """How many times the event happened (tallied failures by their minutes' counts)."""
    return audited_count(Harness(app, None), event)  # type: ignore[arg-type]


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """name -> the whole Set-Cookie header line, for every cookie the response sets."""
    lines = response.headers.get_list("set-cookie")
    return {line.split("=", 1)[0].strip(): line for line in lines}


def cookie_attributes(line: str) -> tuple[str, dict[str, str]]:
    """(value, {lower-case attribute: value}) of one Set-Cookie line."""
    first, *attrs = [part.strip() for part in line.split(";")]
    value = first.split("=", 1)[1]
    parsed = {}
    for attr in attrs:
        key, _, val = attr.partition("=")
        parsed[key.strip().lower()] = val.strip()
    return value, parsed


def return_to_for(rp: RP) -> str:
    return "/authorize?" + urlencode(rp.authorize_params())


def login_form(http: TestClient, return_to: str = "/") -> dict[str, str]:
    page = http.get("/login", params={"return_to": return_to})
    assert page.status_code == 200, page.text
    return form_fields(page.text)


def session_counts(app: FastAPI, rp: RP, cookie_name: str, cookie: str) -> bool:
    """True when this session cookie signs the browser in: /authorize does not send it to /login.

    A fresh client (empty cookie jar) carries only this cookie, so nothing else can help."""
    browser = TestClient(app, base_url=ISSUER, follow_redirects=False)
    r = browser.get(
        "/authorize",
        params=rp.authorize_params(),
        headers={"Cookie": f"{cookie_name}={cookie}"},
    )
    if r.status_code in (302, 303):
        return not r.headers["location"].startswith("/login")
    assert r.status_code == 200, r.text
    return True


@pytest.fixture
def dev_app(database_url: str, tmp_path: Path) -> Iterator[FastAPI]:
    """The same IdP with a development issuer, http://localhost:8000."""
    application = migrated_app(make_settings(database_url, tmp_path, issuer=DEV_ISSUER))
    yield application
    application.state.runtime.engine.dispose()


# --- the page -----------------------------------------------------------------------------------


def test_login_page_is_an_accessible_form_without_javascript(idp: Harness) -> None:
    """Issue, Accounts and sessions: a plain HTML form, labelled fields, password-manager hints
    (WCAG 1.3.1 and 1.3.5; NIST SP 800-63B §5.1.1.2 says verifiers SHOULD permit paste and
    password managers), and it works with JavaScript disabled."""
    page = idp.http.get("/login")
    assert page.status_code == 200
    html = page.text
    assert re.search(r'<label for="email"', html)
    assert re.search(r'<label for="password"', html)
    email = re.search(r'<input[^>]*id="email"[^>]*>', html)
    password = re.search(r'<input[^>]*id="password"[^>]*>', html)
    assert email and 'autocomplete="username"' in email.group(0)
    assert password and 'autocomplete="current-password"' in password.group(0)
    assert 'type="password"' in password.group(0)
    csrf_input = re.search(r'<input[^>]*name="csrf_token"[^>]*>', html)
    assert csrf_input and 'type="hidden"' in csrf_input.group(0)
    assert form_fields(html)["csrf_token"]
    # No inline script: only the passkey helper, from /static, and the form does not need it
    # (the passkey button is hidden until that script shows it).
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", html, re.S | re.I)
    assert scripts == [""] and '<script src="/static/webauthn.js" defer>' in html
    assert re.search(r'<form[^>]*action="/login/passkey"[^>]*data-webauthn-only hidden>', html)
    assert re.search(r'<form[^>]*method="post"[^>]*action="/login"', html)


def test_login_page_is_never_cached(idp: Harness) -> None:
    """OWASP Session Management: pages with credentials or tokens carry Cache-Control: no-store."""
    page = idp.http.get("/login")
    assert "no-store" in page.headers["cache-control"]


# --- success and the session cookie -------------------------------------------------------------


def test_login_without_an_interaction_goes_home_with_303(idp: Harness) -> None:
    """Issue, Accounts and sessions: signing in to the IdP itself lands on its home page;
    RFC 9110 §15.4.4: a POST that redirects answers 303 so the browser then GETs."""
    idp.user()
    r = idp.login()
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/"


def test_every_redirecting_login_post_is_303(idp: Harness) -> None:
    """RFC 9110 §15.4.4: every POST to /login that redirects answers 303, never 302 or 307."""
    idp.user()
    rp = idp.client()
    assert idp.login().status_code == 303
    page = idp.http.get(idp.authorize(rp, prompt="login").headers["location"])
    fields = form_fields(page.text)
    fields.update(email="alice@example.com", password=PASSWORD)
    assert idp.http.post("/login", data=fields).status_code == 303


def test_session_cookie_is_host_prefixed_secure_httponly_lax(idp: Harness) -> None:
    """OWASP Session Management (Cookies) and RFC 6265bis §4.1.3.2: the session cookie is
    `__Host-` (Secure, Path=/, no Domain), HttpOnly and SameSite=Lax when the issuer is https."""
    idp.user()
    r = idp.login()
    assert r.status_code == 303
    cookies = set_cookies(r)
    assert SESSION_COOKIE in cookies, cookies
    value, attrs = cookie_attributes(cookies[SESSION_COOKIE])
    assert len(value) >= 43  # 256 random bits, base64url
    assert "secure" in attrs
    assert "httponly" in attrs
    assert attrs.get("samesite", "").lower() == "lax"
    assert attrs.get("path") == "/"
    assert "domain" not in attrs
    assert "idp_session" not in cookies  # no unprefixed twin


def test_development_issuer_cookie_is_plain_and_not_secure(dev_app: FastAPI) -> None:
    """Issue, Accounts and sessions: on a http://localhost issuer (development) browsers refuse
    Secure cookies over http, so the cookie is `idp_session` without Secure (still HttpOnly)."""
    with TestClient(dev_app, base_url=DEV_ISSUER, follow_redirects=False) as http:
        idp = Harness(dev_app, http)
        idp.user()
        r = idp.login()
        assert r.status_code == 303, r.text
        cookies = set_cookies(r)
        assert "idp_session" in cookies, cookies
        assert SESSION_COOKIE not in cookies
        _, attrs = cookie_attributes(cookies["idp_session"])
        assert "secure" not in attrs
        assert "httponly" in attrs
        assert attrs.get("samesite", "").lower() == "lax"
        assert attrs.get("path") == "/"


def test_new_session_id_at_every_login(idp: Harness) -> None:
    """OWASP Session Management (Renew the Session ID After Any Privilege Level Change): each
    sign-in issues a new session id, and the one the browser had before stops working."""
    idp.user()
    rp = idp.client()
    first = idp.login()
    second = idp.login()
    assert first.status_code == second.status_code == 303
    first_id, _ = cookie_attributes(set_cookies(first)[SESSION_COOKIE])
    second_id, _ = cookie_attributes(set_cookies(second)[SESSION_COOKIE])
    assert first_id != second_id
    assert session_counts(idp.app, rp, SESSION_COOKIE, second_id)
    assert not session_counts(idp.app, rp, SESSION_COOKIE, first_id)


def test_sessions_table_holds_only_hashes_of_cookies(idp: Harness) -> None:
    """Issue, Accounts and sessions (secrets are stored hashed): the sessions table keeps the
    SHA-256 of the cookie value, never the value itself; a leaked table signs nobody in."""
    idp.user()
    r = idp.login()
    cookie, _ = cookie_attributes(set_cookies(r)[SESSION_COOKIE])
    rows = [tuple(str(v) for v in row) for row in sql(idp.app, "SELECT * FROM sessions")]
    assert len(rows) == 1
    assert hashlib.sha256(cookie.encode()).hexdigest() in rows[0]
    assert not any(cookie in value for value in rows[0])


# --- failures -----------------------------------------------------------------------------------


def test_wrong_password_and_unknown_email_get_the_same_answer(idp: Harness) -> None:
    """NIST SP 800-63B §5.2.2 and OWASP Authentication (Authentication and Error Messages): the
    answer never tells whether the account exists; each failure is audited as login.failed."""
    idp.user()
    wrong_password = idp.login(password="not the right passphrase")
    unknown_email = idp.login(email="nobody@example.com")
    assert wrong_password.status_code == unknown_email.status_code
    assert wrong_password.status_code not in (302, 303)
    for r in (wrong_password, unknown_email):
        assert BAD_CREDENTIALS in r.text
        assert SESSION_COOKIE not in set_cookies(r)
    alert = re.compile(r'role="alert"[^>]*>\s*<p>([^<]*)<')
    errors = [alert.findall(r.text) for r in (wrong_password, unknown_email)]
    assert errors[0] == errors[1] == [BAD_CREDENTIALS]
    assert audit_events(idp.app, "login.failed") == 2
    assert audit_events(idp.app, "login.succeeded") == 0


def test_disabled_user_cannot_sign_in(idp: Harness) -> None:
    """Issue, Accounts and sessions: a disabled account cannot sign in, even with the right
    password, and the answer is the same as for a wrong password (NIST SP 800-63B §5.2.2)."""
    idp.user()
    wrong_password = idp.login(password="not the right passphrase")
    sql(idp.app, "UPDATE users SET disabled = :yes", yes=True)
    disabled = idp.login()
    assert disabled.status_code == wrong_password.status_code
    assert BAD_CREDENTIALS in disabled.text
    assert SESSION_COOKIE not in set_cookies(disabled)
    assert audit_events(idp.app, "login.failed") == 2


def test_disabled_user_session_no_longer_counts(idp: Harness) -> None:
    """Issue, Accounts and sessions: disabling an account ends what its sessions can do."""
    idp.user()
    rp = idp.client()
    cookie, _ = cookie_attributes(set_cookies(idp.login())[SESSION_COOKIE])
    assert session_counts(idp.app, rp, SESSION_COOKIE, cookie)
    sql(idp.app, "UPDATE users SET disabled = :yes", yes=True)
    assert not session_counts(idp.app, rp, SESSION_COOKIE, cookie)


# --- CSRF ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "x" * 43], ids=["missing", "empty", "wrong"])
def test_login_without_the_csrf_token_is_403(idp: Harness, token: str | None) -> None:
    """OWASP CSRF Prevention (Synchronizer/Double Submit token): a login POST without the form's
    token is refused with 403, signs nobody in, and is audited as csrf.rejected."""
    idp.user()
    fields = login_form(idp.http)
    fields.update(email="alice@example.com", password=PASSWORD)
    if token is None:
        del fields["csrf_token"]
    else:
        fields["csrf_token"] = token
    r = idp.http.post("/login", data=fields)
    assert r.status_code == 403, r.text
    assert SESSION_COOKIE not in set_cookies(r)
    assert audit_events(idp.app, "csrf.rejected") == 1
    assert audit_events(idp.app, "login.succeeded") == 0


def test_login_without_the_csrf_cookie_is_403(idp: Harness) -> None:
    """OWASP CSRF Prevention: the submitted token must match the browser's own token cookie;
    a token copied into another browser (no cookie) is refused."""
    idp.user()
    fields = login_form(idp.http)
    fields.update(email="alice@example.com", password=PASSWORD)
    stranger = TestClient(idp.app, base_url=ISSUER, follow_redirects=False)
    r = stranger.post("/login", data=fields)
    assert r.status_code == 403
    assert SESSION_COOKIE not in set_cookies(r)


def test_login_from_a_foreign_origin_is_403(idp: Harness) -> None:
    """OWASP CSRF Prevention (Verifying Origin With Standard Headers): a POST whose Origin is
    another site is refused with 403 even with a valid token; this issuer's Origin is accepted."""
    idp.user()
    fields = login_form(idp.http)
    fields.update(email="alice@example.com", password=PASSWORD)
    foreign = idp.http.post("/login", data=fields, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert SESSION_COOKIE not in set_cookies(foreign)
    same_site = idp.http.post("/login", data=fields, headers={"Origin": ISSUER})
    assert same_site.status_code == 303


# --- where the browser goes after signing in -----------------------------------------------------

OPEN_REDIRECTS = [
    "https://evil.example/",
    "//evil.example",
    "//evil.example/authorize?x=1",
    "/\\evil.example",
    "https:evil.example",
    "/authorize/../x",
    "javascript:alert(1)",
]


@pytest.mark.parametrize("return_to", OPEN_REDIRECTS)
def test_return_to_is_never_an_open_redirect(idp: Harness, return_to: str) -> None:
    """OWASP Unvalidated Redirects and Forwards / RFC 9700 §4.11: after sign-in the browser goes
    only back to its interaction or to the home page. There is no return_to parameter any more
    (issue 9: only the interaction id travels); a forged one is ignored."""
    idp.user()
    # Through the form as a browser would see it...
    via_page = idp.login(return_to=return_to)
    assert via_page.status_code == 303
    assert via_page.headers["location"] == "/"
    # ...and forged straight into the POST body.
    fields = login_form(idp.http)
    fields.update(email="alice@example.com", password=PASSWORD, return_to=return_to)
    forged = idp.http.post("/login", data=fields)
    assert forged.status_code == 303
    assert forged.headers["location"] == "/"


def test_login_goes_back_to_its_interaction(idp: Harness) -> None:
    """Issue 9: the login form carries the interaction id and nothing else of the request; after
    sign-in the browser resumes that interaction (303, RFC 9110 §15.4.4)."""
    idp.user()
    rp = idp.client()
    to_login = idp.authorize(rp)
    interaction = parse_qs(urlsplit(to_login.headers["location"]).query)["interaction"][0]
    fields = form_fields(idp.http.get(to_login.headers["location"]).text)
    assert fields["interaction"] == interaction
    fields.update(email="alice@example.com", password=PASSWORD)
    r = idp.http.post("/login", data=fields)
    assert r.status_code == 303
    assert r.headers["location"] == "/authorize/resume?" + urlencode({"interaction": interaction})


# --- rehash -------------------------------------------------------------------------------------


def test_password_is_rehashed_at_login_when_parameters_change(
    idp: Harness, database_url: str, tmp_path: Path
) -> None:
    """NIST SP 800-63B §5.1.1.2 and OWASP Password Storage (Upgrading the work factor): when the
    argon2id cost changes, the stored hash is upgraded at the next successful sign-in."""
    user_id = idp.user()
    (old_hash,) = sql(idp.app, "SELECT password_hash FROM users WHERE id = :i", i=user_id)[0]
    assert "t=1" in old_hash
    stronger = migrated_app(make_settings(database_url, tmp_path, password_hash_time_cost=2))
    try:
        with TestClient(stronger, base_url=ISSUER, follow_redirects=False) as http:
            r = Harness(stronger, http).login()
            assert r.status_code == 303, r.text
    finally:
        stronger.state.runtime.engine.dispose()
    (new_hash,) = sql(idp.app, "SELECT password_hash FROM users WHERE id = :i", i=user_id)[0]
    assert new_hash != old_hash
    assert new_hash.startswith("$argon2id$")
    assert "t=2" in new_hash
    # The new hash still opens with the same password, on the original app too.
    assert idp.login().status_code == 303


def test_failed_login_does_not_rehash(idp: Harness, database_url: str, tmp_path: Path) -> None:
    """OWASP Password Storage: the hash is upgraded only with the right password in hand."""
    user_id = idp.user()
    (old_hash,) = sql(idp.app, "SELECT password_hash FROM users WHERE id = :i", i=user_id)[0]
    stronger = migrated_app(make_settings(database_url, tmp_path, password_hash_time_cost=2))
    try:
        with TestClient(stronger, base_url=ISSUER, follow_redirects=False) as http:
            r = Harness(stronger, http).login(password="not the right passphrase")
            assert r.status_code not in (302, 303)
    finally:
        stronger.state.runtime.engine.dispose()
    (new_hash,) = sql(idp.app, "SELECT password_hash FROM users WHERE id = :i", i=user_id)[0]
    assert new_hash == old_hash


# --- timeouts -----------------------------------------------------------------------------------


def test_idle_session_times_out(idp: Harness) -> None:
    """OWASP Session Management (Idle Timeout) and NIST SP 800-63B §7.2: a session unused for
    IDP_SESSION_IDLE_TIMEOUT_SECONDS no longer signs the browser in."""
    idp.user()
    rp = idp.client()
    cookie, _ = cookie_attributes(set_cookies(idp.login())[SESSION_COOKIE])
    idle = idp.runtime.settings.session_idle_timeout_seconds
    # Just inside the idle window: still signed in.
    sql(idp.app, "UPDATE sessions SET last_seen_at = :t", t=now() - idle + 30)
    assert session_counts(idp.app, rp, SESSION_COOKIE, cookie)
    # Just past it: /authorize sends the browser back to /login.
    sql(idp.app, "UPDATE sessions SET last_seen_at = :t", t=now() - idle - 1)
    r = idp.http.get("/authorize", params=rp.authorize_params())
    assert r.status_code in (302, 303)
    assert r.headers["location"].startswith("/login")


def test_a_session_in_use_stays_signed_in_past_the_idle_timeout(idp: Harness) -> None:
    """OWASP Session Management (Idle Timeout): the idle timeout counts from the last use. An
    authorization request of a signed-in browser is a use: last_seen_at moves to now when it
    is a minute old or more (never on every request)."""
    idp.user()
    rp = idp.client()
    idp.login()
    idle = idp.runtime.settings.session_idle_timeout_seconds
    half_a_minute_ago = now() - 30
    sql(idp.app, "UPDATE sessions SET last_seen_at = :t", t=half_a_minute_ago)
    idp.http.get("/authorize", params=rp.authorize_params())
    ((within_a_minute,),) = sql(idp.app, "SELECT last_seen_at FROM sessions")
    assert within_a_minute == half_a_minute_ago  # not written: under a minute old
    sql(idp.app, "UPDATE sessions SET last_seen_at = :t", t=now() - idle + 30)
    idp.http.get("/authorize", params=rp.authorize_params())
    ((touched,),) = sql(idp.app, "SELECT last_seen_at FROM sessions")
    assert touched >= now() - 2
    # Past the first idle window, still signed in: it counts from that use.
    sql(idp.app, "UPDATE sessions SET last_seen_at = last_seen_at - 60")
    r = idp.http.get("/authorize", params=rp.authorize_params())
    assert not r.headers.get("location", "").startswith("/login"), r.headers


def test_absolute_session_lifetime_ends_an_active_session(idp: Harness) -> None:
    """OWASP Session Management (Absolute Timeout) and NIST SP 800-63B §7.2: even a session in
    constant use ends IDP_SESSION_ABSOLUTE_TIMEOUT_SECONDS after sign-in."""
    idp.user()
    rp = idp.client()
    r = idp.login()
    cookie, _ = cookie_attributes(set_cookies(r)[SESSION_COOKIE])
    ((created, expires),) = sql(idp.app, "SELECT created_at, expires_at FROM sessions")
    assert expires - created == idp.runtime.settings.session_absolute_timeout_seconds
    assert session_counts(idp.app, rp, SESSION_COOKIE, cookie)
    sql(idp.app, "UPDATE sessions SET expires_at = :t, last_seen_at = :n", t=now() - 1, n=now())
    r = idp.http.get("/authorize", params=rp.authorize_params())
    assert r.status_code in (302, 303)
    assert r.headers["location"].startswith("/login")


def test_session_timeouts_follow_settings(database_url: str, tmp_path: Path) -> None:
    """IDP_SESSION_ABSOLUTE_TIMEOUT_SECONDS sets each new session's lifetime."""
    settings = make_settings(
        database_url,
        tmp_path,
        session_idle_timeout_seconds=60,
        session_absolute_timeout_seconds=120,
    )
    app = migrated_app(settings)
    try:
        with TestClient(app, base_url=ISSUER, follow_redirects=False) as http:
            idp = Harness(app, http)
            idp.user()
            rp = idp.client()
            cookie, _ = cookie_attributes(set_cookies(idp.login())[SESSION_COOKIE])
            ((created, expires),) = sql(app, "SELECT created_at, expires_at FROM sessions")
            assert expires - created == 120
            sql(app, "UPDATE sessions SET last_seen_at = :t", t=now() - 61)
            assert not session_counts(app, rp, SESSION_COOKIE, cookie)
    finally:
        app.state.runtime.engine.dispose()
