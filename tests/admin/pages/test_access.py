"""Issue 13, admin UI access: the admin role plus a session that used MFA; a separate admin
cookie (__Host-, SameSite=Strict, idle timeout); a sign-in within ten minutes for sensitive
actions; CSRF tokens on every form."""

from __future__ import annotations

import time

import pytest

from idp.admin.pages import access
from idp.security.secrets import sha256_hex
from tests.admin.pages.admin_helpers import (
    age_sign_in,
    form_of,
    replace_cookie,
    sign_in_admin,
    sign_in_without_mfa,
)
from tests.helpers import Harness
from tests.token_helpers import sql

# Every admin page a GET reaches, with a client id filled in by the test.
GET_ROUTES = [
    "/admin",
    "/admin/clients",
    "/admin/clients/new",
    "/admin/clients/{cid}",
    "/admin/clients/{cid}/edit",
    "/admin/clients/{cid}/rotate",
    "/admin/clients/{cid}/disable",
    "/admin/clients/{cid}/delete",
    "/admin/keys",
    "/admin/keys/rotate",
    "/admin/keys/{kid}/revoke",
    "/admin/users",
    "/admin/users/new",
    "/admin/users/{uid}",
    "/admin/users/{uid}/disable",
    "/admin/users/{uid}/reset-mfa",
    "/admin/users/{uid}/end-sessions",
    "/admin/users/{uid}/revoke-role",
    "/admin/roles",
    "/admin/approvals",
    "/admin/audit",
]
POST_ROUTES = [
    "/admin/clients/new",
    "/admin/clients/{cid}/edit",
    "/admin/clients/{cid}/rotate",
    "/admin/clients/{cid}/disable",
    "/admin/clients/{cid}/enable",
    "/admin/clients/{cid}/delete",
    "/admin/keys/rotate",
    "/admin/keys/{kid}/revoke",
    "/admin/users/new",
    "/admin/users/{uid}/disable",
    "/admin/users/{uid}/enable",
    "/admin/users/{uid}/reset-mfa",
    "/admin/users/{uid}/end-sessions",
    "/admin/users/{uid}/grant-role",
    "/admin/users/{uid}/revoke-role",
    "/admin/approvals/{cid}/approve",
    "/admin/approvals/{cid}/reject",
]


def _routes(idp: Harness, routes: list[str]) -> list[str]:
    cid = idp.client(grant_types=["client_credentials"], redirect_uris=[]).client_id
    ((kid,),) = sql(idp, "SELECT kid FROM signing_keys")
    uid = idp.user(email=f"target-{len(routes)}-{cid[:6]}@example.com")
    return [r.format(cid=cid, kid=kid, uid=uid) for r in routes]


def test_no_session_is_sent_to_sign_in(idp: Harness) -> None:
    """Not signed in: every admin page sends the person through a sign-in and back."""
    for path in _routes(idp, GET_ROUTES):
        r = idp.http.get(path)
        assert r.status_code == 302 and r.headers["location"].startswith("/login?"), path


def test_a_non_admin_gets_403_on_every_page_and_form(idp: Harness) -> None:
    """Signed in but without the admin role: a 403 page, on every route."""
    routes = _routes(idp, GET_ROUTES)
    idp.user(email="bob@example.com")
    assert idp.login(email="bob@example.com").status_code == 303
    for path in routes:
        r = idp.http.get(path)
        assert r.status_code == 403 and "Not an administrator" in r.text, path
    token = form_of(idp, "/account")["csrf_token"]
    for path in _routes(idp, POST_ROUTES):
        r = idp.http.post(path, data={"csrf_token": token})
        assert r.status_code == 403 and "Not an administrator" in r.text, path


def test_an_admin_without_a_second_factor_reaches_no_page(idp: Harness) -> None:
    """An admin whose session has no second factor is sent to sign in (with two factors)."""
    routes = _routes(idp, GET_ROUTES)
    sign_in_without_mfa(idp)
    for path in routes:
        r = idp.http.get(path)
        assert r.status_code == 302 and r.headers["location"].startswith("/login?"), path
    token = form_of(idp, "/account")["csrf_token"]
    for path in _routes(idp, POST_ROUTES):
        r = idp.http.post(path, data={"csrf_token": token})
        assert r.status_code == 303 and r.headers["location"].startswith("/login?"), path


def test_an_admin_with_mfa_sees_the_dashboard(idp: Harness) -> None:
    """The admin role plus a session that used MFA: the pages open."""
    sign_in_admin(idp)
    r = idp.http.get("/admin")
    assert r.status_code == 200 and "Administration" in r.text


def test_the_admin_cookie_is_host_only_strict_and_httponly(idp: Harness) -> None:
    """A separate admin cookie: __Host-, Secure, HttpOnly, Path=/, SameSite=Strict."""
    sign_in_admin(idp)
    r = idp.http.get("/admin")
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("__Host-idp_admin="))
    attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "secure", "path=/", "samesite=strict"} <= attributes
    assert not any(a.startswith("domain") for a in attributes)


def test_the_admin_cookie_slides_and_is_bound_to_the_session(idp: Harness) -> None:
    """Re-issued on each admin request; a cookie of another session does not count."""
    sign_in_admin(idp)
    first = idp.http.get("/admin").cookies.get("__Host-idp_admin")
    time.sleep(1.1)
    second = idp.http.get("/admin").cookies.get("__Host-idp_admin")
    assert first and second and first != second
    # The session's sign-in is older than the idle window: only a cookie of this session helps.
    age_sign_in(idp, 3600)
    assert idp.http.get("/admin").status_code == 200
    replace_cookie(idp, "__Host-idp_admin", "forged.value.sig")
    r = idp.http.get("/admin")
    assert r.status_code == 302 and r.headers["location"].startswith("/login?")


def test_an_idle_admin_cookie_means_sign_in_again(
    idp: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Idle past IDP_ADMIN_IDLE_SECONDS (900 by default): sign in again."""
    assert idp.runtime.settings.admin_idle_seconds == 900
    sign_in_admin(idp)
    assert idp.http.get("/admin").status_code == 200
    # The admin's last request was 901 seconds ago.
    with monkeypatch.context() as m:
        m.setattr(time, "time", lambda real=time.time: real() - 901)
        browser_cookie = idp.http.cookies.get("__Host-idp_session")
        old = access._serializer(idp.runtime).dumps(sha256_hex(browser_cookie or ""))
    replace_cookie(idp, "__Host-idp_admin", old)
    r = idp.http.get("/admin")
    assert r.status_code == 302 and r.headers["location"].startswith("/login?")


def test_a_missing_cookie_after_an_old_sign_in_means_sign_in_again(idp: Harness) -> None:
    """No admin cookie, and the sign-in is older than the idle window: sign in again."""
    sign_in_admin(idp)
    age_sign_in(idp, 901)
    r = idp.http.get("/admin")
    assert r.status_code == 302 and r.headers["location"].startswith("/login?")


def test_a_sensitive_form_needs_a_sign_in_within_ten_minutes(idp: Harness) -> None:
    """A GET of a sensitive form with a stale sign-in goes through sign-in and back."""
    sign_in_admin(idp)
    idp.http.get("/admin")  # the admin cookie
    age_sign_in(idp, access.ADMIN_FRESH_SECONDS + 5)
    assert idp.http.get("/admin/clients").status_code == 200  # not sensitive
    r = idp.http.get("/admin/clients/new")
    assert r.status_code == 302 and r.headers["location"].startswith("/login?")


def test_a_stale_post_is_refused_with_a_link_back(idp: Harness) -> None:
    """A POST with a stale sign-in is refused with a page linking back (nothing changes)."""
    cid = idp.client(grant_types=["client_credentials"], redirect_uris=[]).client_id
    sign_in_admin(idp)
    fields = form_of(idp, f"/admin/clients/{cid}/disable")
    age_sign_in(idp, access.ADMIN_FRESH_SECONDS + 5)
    r = idp.http.post(f"/admin/clients/{cid}/disable", data=fields)
    assert r.status_code == 403 and "Sign in again" in r.text
    assert f'href="/admin/clients/{cid}/disable"' in r.text
    assert "active" in idp.http.get(f"/admin/clients/{cid}").text


def test_a_form_without_its_csrf_token_is_refused(idp: Harness) -> None:
    """CSRF tokens on every form: a POST without this browser's token changes nothing."""
    cid = idp.client(grant_types=["client_credentials"], redirect_uris=[]).client_id
    sign_in_admin(idp)
    for path in [*_routes(idp, POST_ROUTES), f"/admin/clients/{cid}/disable"]:
        r = idp.http.post(path, data={"csrf_token": "forged"})
        assert r.status_code == 403 and "This form expired" in r.text, path


def test_a_post_without_the_admin_cookie_changes_nothing(idp: Harness) -> None:
    """SameSite=Strict: a POST from another site carries no admin cookie. Even with a fresh
    sign-in and this browser's CSRF token, a form POST without it changes nothing."""
    cid = idp.client(grant_types=["client_credentials"], redirect_uris=[]).client_id
    sign_in_admin(idp)
    fields = form_of(idp, f"/admin/clients/{cid}/disable")
    idp.http.cookies.delete("__Host-idp_admin")
    r = idp.http.post(f"/admin/clients/{cid}/disable", data=fields)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?")
    assert sql(idp, "SELECT disabled FROM clients WHERE client_id = :c", c=cid)[0][0] in (0, False)


def test_a_notice_shows_only_words_of_the_server(idp: Harness) -> None:
    """A crafted link cannot put its own text on an admin page."""
    cid = idp.client(grant_types=["client_credentials"], redirect_uris=[]).client_id
    sign_in_admin(idp)
    shown = idp.http.get(f"/admin/clients/{cid}", params={"notice": "updated"})
    assert "Done: client updated." in shown.text
    crafted = idp.http.get(f"/admin/clients/{cid}", params={"notice": "hacked, call +1 555"})
    assert crafted.status_code == 200 and "555" not in crafted.text
