"""/account/password: a signed-in person changes their password. It needs the current password
and a sign-in of the last five minutes; the new one must pass the policy (NIST SP 800-63B-4
§3.1.1.2); a wrong current password is throttled like a sign-in; a change ends every other
session (their relying parties told, OIDC Back-Channel Logout 1.0 §2.5) and keeps this one."""

from __future__ import annotations

import httpx
from sqlalchemy import delete, update
from starlette.testclient import TestClient

from idp.store.factors import TotpFactor, has_second_factor
from idp.store.webauthn import WebAuthnCredential
from tests.helpers import PASSWORD, Harness, form_fields
from tests.mfa_helpers import answer_factor, enrol_totp, totp_code
from tests.token_helpers import ISSUER, audit_events, sql

NEW_PASSWORD = "a brand new passphrase for alice"
BACKCHANNEL_URI = "https://rp.example.invalid/backchannel-logout"


def other_browser(idp: Harness) -> TestClient:
    return TestClient(idp.app, base_url=ISSUER, follow_redirects=False)


def change(idp: Harness, current: str, new: str, confirm: str | None = None) -> httpx.Response:
    page = idp.http.get("/account/password")
    assert page.status_code == 200, page.headers.get("location")
    return idp.http.post(
        "/account/password",
        data={
            "csrf_token": form_fields(page.text)["csrf_token"],
            "current_password": current,
            "new_password": new,
            "confirm_password": new if confirm is None else confirm,
        },
    )


def password_hash(idp: Harness, user_id: str) -> str:
    return str(sql(idp, "SELECT password_hash FROM users WHERE id = :u", u=user_id)[0][0])


def test_the_form_asks_for_the_current_and_a_new_password(idp: Harness) -> None:
    """Password managers are told which field is which (HTML autocomplete tokens), and the
    account page links to the form."""
    idp.user()
    idp.login()
    assert 'href="/account/password"' in idp.http.get("/account").text
    page = idp.http.get("/account/password")
    assert page.status_code == 200
    assert 'name="current_password"' in page.text and 'autocomplete="current-password"' in page.text
    assert page.text.count('autocomplete="new-password"') == 2


def test_a_change_ends_every_other_session_and_keeps_this_one(idp: Harness) -> None:
    """The new password works and the old one no longer does; the other browser is signed
    out (its relying party sent a logout token); this one stays signed in with a new CSRF
    token; password_change_required is cleared; the change is audited."""
    user_id = idp.user()
    rp = idp.client(backchannel_logout_uri=BACKCHANNEL_URI)
    idp.login()
    laptop = other_browser(idp)
    Harness(idp.app, laptop).tokens(rp)  # signs the laptop in to the relying party
    sql(idp, "UPDATE users SET password_change_required = :t WHERE id = :u", t=True, u=user_id)
    done = change(idp, PASSWORD, NEW_PASSWORD)
    assert done.status_code == 303
    assert done.headers["location"] == "/account?notice=password_changed"
    assert "csrf" in done.headers.get("set-cookie", "").lower()
    page = idp.http.get("/account?notice=password_changed")
    assert page.status_code == 200 and "Your password was changed." in page.text
    assert laptop.get("/account").status_code == 302
    assert len(sql(idp, "SELECT sid FROM sessions WHERE user_id = :u", u=user_id)) == 1
    assert sql(idp, "SELECT count(*) FROM logout_deliveries")[0][0] == 1
    assert not sql(idp, "SELECT password_change_required FROM users WHERE id = :u", u=user_id)[0][0]
    assert audit_events(idp, "password.changed")
    fresh = Harness(idp.app, other_browser(idp))
    assert fresh.login(password=PASSWORD).status_code == 400
    assert fresh.login(password=NEW_PASSWORD).status_code == 303


def test_a_wrong_current_password_changes_nothing(idp: Harness) -> None:
    """The page says so, the hash stays, the other session lives, and the failure is audited."""
    user_id = idp.user()
    idp.login()
    laptop = other_browser(idp)
    Harness(idp.app, laptop).login()
    before = password_hash(idp, user_id)
    refused = change(idp, "not the password at all", NEW_PASSWORD)
    assert refused.status_code == 400
    assert "current password is not correct" in refused.text
    assert password_hash(idp, user_id) == before
    assert laptop.get("/account").status_code == 200
    assert audit_events(idp, "password.change_failed")


def test_wrong_current_passwords_are_throttled_like_sign_ins(idp: Harness) -> None:
    """The sign-in throttle counts each wrong current password: once this device's budget
    (IDP_THROTTLE_DEVICE_LIMIT) is spent, the form answers 429 with Retry-After (RFC 6585
    §4) without checking, even the right password."""
    user_id = idp.user()
    idp.login()
    before = password_hash(idp, user_id)
    for _ in range(idp.runtime.settings.throttle_device_limit):
        assert change(idp, "guess", NEW_PASSWORD).status_code == 400
    blocked = change(idp, PASSWORD, NEW_PASSWORD)
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    assert password_hash(idp, user_id) == before


def test_a_weak_or_mismatched_new_password_is_refused(idp: Harness) -> None:
    """§3.1.1.2: at least 15 characters while the password is the only factor, not a common
    password, not the email; and the two new fields must match."""
    user_id = idp.user()
    idp.login()
    before = password_hash(idp, user_id)
    short = change(idp, PASSWORD, "short")
    assert short.status_code == 400 and "at least 15 characters" in short.text
    email = change(idp, PASSWORD, "alice@example.com")
    assert email.status_code == 400
    mismatch = change(idp, PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "!")
    assert mismatch.status_code == 400 and "do not match" in mismatch.text
    assert password_hash(idp, user_id) == before


def test_a_stale_sign_in_must_sign_in_again(idp: Harness) -> None:
    """A sign-in older than five minutes is not enough: the form redirects to a fresh sign-in,
    and a POST is refused with a page linking to it; nothing changes."""
    user_id = idp.user()
    idp.login()
    page = idp.http.get("/account/password")
    csrf = form_fields(page.text)["csrf_token"]
    sql(idp, "UPDATE sessions SET auth_time = auth_time - 600 WHERE user_id = :u", u=user_id)
    before = password_hash(idp, user_id)
    redirected = idp.http.get("/account/password")
    assert redirected.status_code == 302
    assert redirected.headers["location"].startswith("/login?interaction=")
    refused = idp.http.post(
        "/account/password",
        data={
            "csrf_token": csrf,
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert refused.status_code == 403 and 'href="/account/password"' in refused.text
    assert password_hash(idp, user_id) == before


def test_signed_out_visitors_sign_in_first(idp: Harness) -> None:
    """Without a session the form sends the visitor to sign in, and back."""
    assert idp.http.get("/account/password").headers["location"].startswith("/login?")


def test_the_form_needs_its_csrf_token(idp: Harness) -> None:
    """A POST without this browser's form token is refused (403) and audited; nothing changes."""
    user_id = idp.user()
    idp.login()
    before = password_hash(idp, user_id)
    refused = idp.http.post(
        "/account/password",
        data={
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert refused.status_code == 403
    assert password_hash(idp, user_id) == before
    assert audit_events(idp, "csrf.rejected")


def test_a_second_factor_lowers_the_length_floor(idp: Harness) -> None:
    """NIST SP 800-63B-4 §3.1.1.2: 8 characters suffice once the account has a second factor,
    which is a confirmed TOTP seed or a WebAuthn credential (store.factors.has_second_factor);
    a TOTP seed not yet confirmed is none."""
    user_id = idp.user()
    with idp.runtime.sessions.begin() as db:
        assert not has_second_factor(db, user_id)
        db.add(TotpFactor(user_id=user_id, sealed_seed=b"x", created_at=1))
        db.flush()
        assert not has_second_factor(db, user_id)
        db.add(
            WebAuthnCredential(
                id="k1",
                user_id=user_id,
                credential_id="c1",
                credential_id_hash="h1",
                name="key",
                public_key=b"k",
                created_at=1,
            )
        )
        db.flush()
        assert has_second_factor(db, user_id)
        db.execute(delete(WebAuthnCredential))
        db.execute(update(TotpFactor).values(confirmed_at=2))
        assert has_second_factor(db, user_id)
        db.execute(delete(TotpFactor))
    # A real authenticator app now: with it, every sign-in asks for a code.
    secret = enrol_totp(idp, user_id)
    answer_factor(idp, idp.login(), totp_code(secret))
    assert change(idp, PASSWORD, "ten chars!").status_code == 303
