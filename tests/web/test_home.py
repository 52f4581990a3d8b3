"""The home page: who is signed in, the applications that may use their account, and taking
that access back (OIDC Core §3.1.2.4 consent, withdrawn; RFC 7009 §2.1 revocation of the
grant's refresh tokens and the access tokens they produced)."""

from __future__ import annotations

import re

from tests.authorize_helpers import is_consent_page, redirect_to_rp
from tests.helpers import Harness, form_fields
from tests.refresh_helpers import (
    OFFLINE_SCOPE,
    introspected,
    offline_client,
    refresh,
    resource_server,
    userinfo,
)
from tests.token_helpers import audit_events, error_of, json_of, sql


def _revoke_forms(html: str) -> dict[str, str]:
    """client_id -> csrf token of each "Remove access" form on the page."""
    forms = re.findall(r'<form[^>]*action="/apps/revoke".*?</form>', html, re.S)
    return {form_fields(f)["client_id"]: form_fields(f)["csrf_token"] for f in forms}


def test_signed_out_home_offers_to_sign_in(idp: Harness) -> None:
    page = idp.http.get("/")
    assert page.status_code == 200
    assert 'href="/login"' in page.text
    assert "/apps/revoke" not in page.text


def test_home_lists_the_applications_with_access(idp: Harness) -> None:
    """A person sees which applications hold a consent, with the date and what was granted,
    a link to their account and a way to sign out."""
    idp.user(name="Alice")
    photos = idp.client(name="Acme Photos")
    idp.client(name="Never Used")
    idp.code_for(photos)
    page = idp.http.get("/")
    assert "Hello, Alice" in page.text
    assert "Acme Photos" in page.text
    assert "Never Used" not in page.text
    assert "openid, email, profile" in page.text or "email, openid, profile" in page.text
    assert 'href="/account"' in page.text
    assert 'action="/logout"' in page.text
    assert list(_revoke_forms(page.text)) == [photos.client_id]


def test_removing_access_ends_consent_refresh_tokens_and_access_tokens(idp: Harness) -> None:
    """Withdrawing consent revokes the client's refresh-token families for this user and the
    access tokens they produced; the next authorization request asks for consent again."""
    user_id = idp.user()
    rp = offline_client(idp)
    tokens = idp.tokens(rp, scope=OFFLINE_SCOPE)
    csrf = _revoke_forms(idp.http.get("/").text)[rp.client_id]

    done = idp.http.post("/apps/revoke", data={"csrf_token": csrf, "client_id": rp.client_id})
    assert done.status_code == 303 and done.headers["location"] == "/?notice=revoked"
    assert "Access removed" in idp.http.get(done.headers["location"]).text

    assert error_of(refresh(idp, rp, tokens["refresh_token"])) == "invalid_grant"
    assert userinfo(idp, tokens["access_token"]).status_code == 401
    assert sql(idp, "SELECT * FROM consents WHERE user_id = :u", u=user_id) == []
    assert is_consent_page(idp.follow_local(idp.authorize(rp)))
    [event] = audit_events(idp, "consent.withdrawn")
    assert event.client_id == rp.client_id and event.user_id == user_id
    assert rp.client_id not in _revoke_forms(idp.http.get("/").text)


def test_removing_access_kills_tokens_from_a_code_without_offline_access(idp: Harness) -> None:
    """Revocation reaches every token of the grant: an access token from a plain code
    exchange (no refresh-token family) dies at userinfo and introspection at once."""
    idp.user()
    rp = idp.client()
    tokens = idp.tokens(rp)
    api = resource_server(idp)
    assert userinfo(idp, tokens["access_token"]).status_code == 200
    csrf = _revoke_forms(idp.http.get("/").text)[rp.client_id]
    idp.http.post("/apps/revoke", data={"csrf_token": csrf, "client_id": rp.client_id})
    assert userinfo(idp, tokens["access_token"]).status_code == 401
    assert introspected(idp, api, tokens["access_token"]) == {"active": False}
    [event] = audit_events(idp, "consent.withdrawn")
    assert json_of(event.detail)["jwts"] == 1


def test_other_applications_keep_their_access(idp: Harness) -> None:
    idp.user()
    kept, removed = offline_client(idp, name="Kept"), offline_client(idp, name="Removed")
    kept_tokens = idp.tokens(kept, scope=OFFLINE_SCOPE)
    idp.tokens(removed, scope=OFFLINE_SCOPE)
    csrf = _revoke_forms(idp.http.get("/").text)[removed.client_id]
    idp.http.post("/apps/revoke", data={"csrf_token": csrf, "client_id": removed.client_id})
    assert refresh(idp, kept, kept_tokens["refresh_token"]).status_code == 200
    assert list(_revoke_forms(idp.http.get("/").text)) == [kept.client_id]


def test_a_trusted_application_holding_tokens_is_listed_and_removable(idp: Harness) -> None:
    """A first-party application asks no consent, yet its refresh tokens are access too."""
    idp.user()
    rp = offline_client(idp, name="First Party", trusted=True)
    tokens = idp.tokens(rp, scope=OFFLINE_SCOPE)
    csrf = _revoke_forms(idp.http.get("/").text)[rp.client_id]
    idp.http.post("/apps/revoke", data={"csrf_token": csrf, "client_id": rp.client_id})
    assert error_of(refresh(idp, rp, tokens["refresh_token"])) == "invalid_grant"


def test_removing_access_needs_the_form_token(idp: Harness) -> None:
    """OWASP CSRF: a cross-site POST without our token removes nothing."""
    idp.user()
    rp = idp.client()
    idp.code_for(rp)
    refused = idp.http.post("/apps/revoke", data={"client_id": rp.client_id})
    assert refused.status_code == 403
    assert rp.client_id in _revoke_forms(idp.http.get("/").text)
    assert audit_events(idp, "csrf.rejected")


def test_removing_access_an_application_does_not_have(idp: Harness) -> None:
    idp.user()
    rp = idp.client()
    idp.code_for(rp)
    csrf = _revoke_forms(idp.http.get("/").text)[rp.client_id]
    for client_id in ("unknown-client", "x" * 500):
        answer = idp.http.post("/apps/revoke", data={"csrf_token": csrf, "client_id": client_id})
        assert answer.status_code == 404
        assert "no access to your account" in answer.text
    assert rp.client_id in _revoke_forms(idp.http.get("/").text)


def test_removing_access_signed_out_goes_home(idp: Harness) -> None:
    """A browser whose session ended meanwhile, with a valid form token of its own, is sent
    home to sign in; nothing is removed."""
    idp.user()
    rp = idp.client()
    idp.code_for(rp)
    idp.http.cookies.clear()
    csrf = form_fields(idp.http.get("/login").text)["csrf_token"]  # a signed-out browser's
    answer = idp.http.post("/apps/revoke", data={"csrf_token": csrf, "client_id": rp.client_id})
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    assert not audit_events(idp, "consent.withdrawn")
    assert redirect_to_rp(idp.follow_to_code(idp.authorize(rp), rp), rp)["code"]  # consent kept
