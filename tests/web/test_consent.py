"""The consent page and POST /consent: OIDC Core §3.1.2.4 (authorization by the End-User)."""

from __future__ import annotations

import re
import threading

import pytest

from idp.store import consents
from tests.authorize_helpers import (
    consent_page_for,
    is_consent_page,
    redirect_error,
    redirect_to_rp,
    sign_in_from,
    signed_in_with_consent,
    submit_consent,
)
from tests.helpers import Harness, form_fields


def test_consent_page_says_what_is_asked_in_plain_words(idp: Harness) -> None:
    """OIDC Core §3.1.2.4: the End-User is told who asks for what, in words a person reads."""
    idp.user()
    rp = idp.client(name="Acme Photos")
    page = consent_page_for(idp, rp)
    assert page.headers["content-type"].startswith("text/html")
    assert "Acme Photos" in page.text
    assert "See your email address" in page.text
    assert "See your name" in page.text
    assert len(form_fields(page.text)["csrf_token"]) >= 20


def test_client_name_is_shown_as_text(idp: Harness) -> None:
    """OWASP XSS prevention: the client's registered name is escaped on the consent page."""
    idp.user()
    rp = idp.client(name="<script>alert(1)</script> Photos")
    page = consent_page_for(idp, rp)
    assert "<script>alert(1)" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Photos" in page.text


def test_deny_redirects_with_access_denied(idp: Harness) -> None:
    """RFC 6749 §4.1.2.1 access_denied: the resource owner denied the request; state and
    iss (RFC 9207) come back, with 303 after the form POST."""
    idp.user()
    rp = idp.client()
    response = submit_consent(idp, consent_page_for(idp, rp), "deny")
    assert redirect_error(response, rp, status=303) == "access_denied"


def test_deny_is_not_remembered_as_consent(idp: Harness) -> None:
    """OIDC Core §3.1.2.4: after a denial nothing was authorized, so the next request asks."""
    idp.user()
    rp = idp.client()
    submit_consent(idp, consent_page_for(idp, rp), "deny")
    assert redirect_error(idp.authorize(rp, prompt="none"), rp) == "consent_required"


def test_allow_is_remembered(idp: Harness) -> None:
    """OIDC Core §3.1.2.4: consent may be established by prior interaction: the same scopes
    again go straight to a code."""
    idp.user()
    rp = idp.client()
    signed_in_with_consent(idp, rp)
    assert redirect_to_rp(idp.authorize(rp), rp)["code"]


def test_more_scopes_ask_again(idp: Harness) -> None:
    """OIDC Core §3.1.2.4: a prior consent covers only what it granted."""
    idp.user()
    rp = idp.client()
    signed_in_with_consent(idp, rp, scope="openid")
    page = idp.follow_local(idp.authorize(rp, scope="openid email"))
    assert is_consent_page(page)
    assert "See your email address" in page.text


def test_fewer_scopes_do_not_ask_again(idp: Harness) -> None:
    """OIDC Core §3.1.2.4: a subset of what was granted needs no new consent."""
    idp.user()
    rp = idp.client()
    signed_in_with_consent(idp, rp)
    assert redirect_to_rp(idp.authorize(rp, scope="openid email"), rp)["code"]


def test_prompt_consent_asks_again(idp: Harness) -> None:
    """OIDC Core §3.1.2.1 prompt=consent: ask for consent even if it was given before."""
    idp.user()
    rp = idp.client()
    signed_in_with_consent(idp, rp)
    page = idp.follow_local(idp.authorize(rp, prompt="consent"))
    assert is_consent_page(page)
    assert redirect_to_rp(submit_consent(idp, page, "allow"), rp, status=303)["code"]


def test_trusted_client_never_shows_consent(idp: Harness) -> None:
    """OIDC Core §3.1.2.4: consent may be established by other means (a first-party client)."""
    idp.user()
    rp = idp.client(trusted=True)
    after_login = sign_in_from(idp, idp.authorize(rp))
    assert redirect_to_rp(after_login, rp)["code"]
    assert redirect_to_rp(idp.authorize(rp, prompt="none"), rp)["code"]


@pytest.mark.parametrize("token", [None, "", "x" * 43], ids=["missing", "empty", "wrong"])
def test_consent_without_valid_csrf_token_is_refused(idp: Harness, token: str | None) -> None:
    """OWASP CSRF / RFC 6749 §10.12: a forged consent POST is refused with a page, not a code."""
    idp.user()
    rp = idp.client()
    fields = form_fields(consent_page_for(idp, rp).text)
    fields["decision"] = "allow"
    if token is None:
        del fields["csrf_token"]
    else:
        fields["csrf_token"] = token
    response = idp.http.post("/consent", data=fields)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert "location" not in response.headers
    assert redirect_error(idp.authorize(rp, prompt="none"), rp) == "consent_required"


def test_consent_from_another_origin_is_refused(idp: Harness) -> None:
    """OWASP CSRF (Origin check): a consent POST sent by another site's page is refused."""
    idp.user()
    rp = idp.client()
    fields = form_fields(consent_page_for(idp, rp).text)
    fields["decision"] = "allow"
    response = idp.http.post("/consent", data=fields, headers={"Origin": "https://rp.example"})
    assert response.status_code == 403
    assert "location" not in response.headers


def test_consent_form_carries_only_the_interaction(idp: Harness) -> None:
    """RFC 6749 §4.1.2.1 and issue 9: what /authorize validated stays on the server. The form
    holds the interaction id, nothing of the request; parameters added to the POST (another
    redirect_uri) change nothing: the code goes to the registered redirect_uri."""
    idp.user()
    rp = idp.client()
    page = consent_page_for(idp, rp)
    fields = form_fields(page.text)
    assert set(fields) == {"csrf_token", "interaction"}
    fields.update(redirect_uri="https://attacker.example/callback", decision="allow")
    response = idp.http.post("/consent", data=fields)
    assert response.status_code == 303
    assert response.headers["location"].startswith(rp.redirect_uri + "?")


def test_consent_page_form_action_allows_the_rp_origin(idp: Harness) -> None:
    """CSP Level 3 form-action: the consent form posts to 'self', and the redirect that follows
    goes to the client's validated origin, which must be allowed too."""
    idp.user()
    rp = idp.client()
    csp = consent_page_for(idp, rp).headers["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert "'self'" in directives["form-action"]
    assert "https://rp.example" in directives["form-action"]
    assert "'unsafe-inline'" not in csp


def test_consent_page_cannot_be_framed_or_cached(idp: Harness) -> None:
    """RFC 6749 §10.13: the authorization page must not be framed (clickjacking); RFC 9111
    §5.2.2.5: it carries a CSRF token and the request, so it is not stored."""
    idp.user()
    rp = idp.client()
    page = consent_page_for(idp, rp)
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert "no-store" in page.headers["cache-control"]


def test_consent_page_shows_the_clients_registration_metadata(idp: Harness) -> None:
    """OIDC Registration §2: logo_uri, client_uri, policy_uri and tos_uri "SHOULD" be shown to
    the End-User: the logo (served from our origin), the domain and the links."""
    from tests.images import png
    from tests.slow_host import serve_slow

    idp.user()
    with serve_slow("ok", body=png(), content_type="image/png") as host:
        rp = idp.client(
            name="Acme Photos",
            logo_uri=host.url + "logo.png",
            client_uri="https://photos.acme.example/",
            policy_uri="https://photos.acme.example/privacy",
            tos_uri="https://photos.acme.example/terms",
        )
    page = consent_page_for(idp, rp).text
    assert f'src="/clients/{rp.client_id}/logo?v=' in page
    assert re.search(r'<a href="https://photos.acme.example/"[^>]*>photos.acme.example</a>', page)
    assert 'href="https://photos.acme.example/privacy"' in page and "Privacy policy" in page
    assert 'href="https://photos.acme.example/terms"' in page and "Terms of service" in page
    assert host.url not in page  # no browser contacts the client's host


def test_consent_page_without_metadata_names_the_redirect_host(idp: Harness) -> None:
    idp.user()
    rp = idp.client(name="Plain")
    page = consent_page_for(idp, rp).text
    assert "/logo" not in page and "Privacy policy" not in page
    assert re.search(r'<p class="lead">\s*rp.example\s*</p>', page)


def test_two_decisions_at_once_are_both_remembered(idp: Harness) -> None:
    """OIDC Core §3.1.2.4: one user deciding for one client in two sign-ins at once (two tabs,
    two devices): while the first decision's transaction is still open, the second waits for
    it, and both succeed; the consent on file covers the scopes of both. On PostgreSQL the
    second used to fail on the primary key (a 500 at POST /consent)."""
    user_id = idp.user()
    rp = idp.client(scopes=["openid", "email", "profile"])
    first_written, first_may_commit = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with idp.runtime.sessions.begin() as db:
                consents.grant(db, user_id, rp.client_id, ["openid", "email"])
                first_written.set()
                first_may_commit.wait(10)
        except BaseException as exc:
            errors.append(exc)

    def second() -> None:
        try:
            with idp.runtime.sessions.begin() as db:
                consents.grant(db, user_id, rp.client_id, ["openid", "profile"])
        except BaseException as exc:
            errors.append(exc)

    one = threading.Thread(target=first)
    one.start()
    assert first_written.wait(10)
    two = threading.Thread(target=second)
    two.start()
    two.join(0.5)
    waited = two.is_alive()  # for the first transaction's row (PostgreSQL) or lock (SQLite)
    first_may_commit.set()
    one.join(10)
    two.join(10)
    assert errors == []
    assert waited
    with idp.runtime.sessions.begin() as db:
        assert consents.covers(db, user_id, rp.client_id, ["openid", "email", "profile"])
