"""/account/mfa (issue 12): a person sets up an authenticator app (inline SVG QR code, the
otpauth URI and the base32 secret as text, confirmed by one code), gets ten recovery codes once,
makes new ones, and removes the app; every change needs a fresh sign-in; an admin cannot
remove their last factor."""

from __future__ import annotations

import base64
import re
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp

from tests.helpers import Harness, form_fields
from tests.mfa_helpers import enrol_totp
from tests.token_helpers import audit_events, sql


def _signed_in(idp: Harness, **user: object) -> str:
    user_id = idp.user(**user)  # type: ignore[arg-type]
    signed_in = idp.login()
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"
    return user_id


def _setup_page(idp: Harness) -> tuple[str, str, dict[str, str]]:
    page = idp.http.get("/account/mfa/totp")
    assert page.status_code == 200, page.headers
    uri = re.search(r'href="(otpauth://[^"]+)"', page.text)
    assert uri is not None
    secret = page.text.split('id="totp-secret">', 1)[1].split("<", 1)[0].replace(" ", "")
    return unquote(uri.group(1).replace("&amp;", "&")), secret, form_fields(page.text)


def test_setting_up_an_authenticator_app(idp: Harness) -> None:
    """The page shows the QR code as inline SVG (no script, no style attribute: the CSP stays
    strict), the otpauth URI with issuer and account name and a secret of 160 bits; the factor
    counts once a code confirms it, and the recovery codes are shown that once."""
    user_id = _signed_in(idp)
    uri, secret, fields = _setup_page(idp)
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth" and parts.netloc == "totp"
    assert "alice@example.com" in parts.path
    query = parse_qs(parts.query)
    assert query["issuer"] and query["secret"] == [secret]
    assert len(base64.b32decode(secret)) * 8 >= 160
    page = idp.http.get("/account/mfa/totp")
    svg = page.text.split("<svg", 1)[1].split("</svg>", 1)[0]
    assert "style=" not in svg and "<script" not in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # no script at all
    # Not a factor yet: a sign-in elsewhere still needs only the password.
    assert not sql(idp, "SELECT 1 FROM totp_factors WHERE confirmed_at IS NOT NULL")
    wrong = idp.http.post("/account/mfa/totp", data={**fields, "code": "000000"})
    assert wrong.status_code == 400 and "not right" in wrong.text
    done = idp.http.post("/account/mfa/totp", data={**fields, "code": pyotp.TOTP(secret).now()})
    assert done.status_code == 200 and done.text.count("<li><code>") == 10
    assert sql(idp, "SELECT count(*) FROM recovery_codes WHERE user_id = :u", u=user_id)[0][0] == 10
    assert audit_events(idp, "mfa.enrolled")
    overview = idp.http.get("/account/mfa")
    assert "10 unused recovery codes left." in overview.text


def test_changes_need_a_fresh_sign_in(idp: Harness) -> None:
    """A sign-in older than five minutes: the setup page sends the person to sign in again,
    and a POST is not carried out but answered with the way to sign in."""
    _signed_in(idp)
    _, _, fields = _setup_page(idp)
    sql(idp, "UPDATE sessions SET auth_time = auth_time - 600")
    page = idp.http.get("/account/mfa/totp")
    assert page.status_code == 302 and page.headers["location"].startswith("/login?")
    post = idp.http.post("/account/mfa/totp", data={**fields, "code": "123456"})
    assert post.status_code == 303 and post.headers["location"].startswith("/login?")
    assert not sql(idp, "SELECT 1 FROM totp_factors WHERE confirmed_at IS NOT NULL")


def test_new_recovery_codes_void_the_old_ones(idp: Harness) -> None:
    user_id = _signed_in(idp)
    enrol_totp(idp, user_id)
    fields = form_fields(idp.http.get("/account/mfa").text)
    first = idp.http.post("/account/mfa/recovery-codes", data=fields)
    second = idp.http.post("/account/mfa/recovery-codes", data=fields)
    codes = [re.findall(r"<li><code>([^<]+)</code>", r.text) for r in (first, second)]
    assert len(codes[0]) == len(codes[1]) == 10 and not set(codes[0]) & set(codes[1])
    assert sql(idp, "SELECT count(*) FROM recovery_codes WHERE user_id = :u", u=user_id)[0][0] == 10
    assert len(audit_events(idp, "recovery_codes.created")) == 2


def test_recovery_codes_need_a_factor(idp: Harness) -> None:
    _signed_in(idp)
    token = form_fields(idp.http.get("/account").text)["csrf_token"]
    refused = idp.http.post("/account/mfa/recovery-codes", data={"csrf_token": token})
    assert refused.status_code == 409


def test_removing_the_app_turns_mfa_off_and_voids_the_codes(idp: Harness) -> None:
    user_id = _signed_in(idp)
    enrol_totp(idp, user_id)
    idp.http.post(
        "/account/mfa/recovery-codes", data=form_fields(idp.http.get("/account/mfa").text)
    )
    fields = form_fields(idp.http.get("/account/mfa").text)
    removed = idp.http.post("/account/mfa/totp/remove", data=fields)
    assert removed.status_code == 303 and "notice=totp_removed" in removed.headers["location"]
    assert not sql(idp, "SELECT 1 FROM totp_factors")
    assert not sql(idp, "SELECT 1 FROM recovery_codes")
    assert audit_events(idp, "mfa.removed")


def test_an_admin_cannot_remove_the_last_factor(idp: Harness) -> None:
    """The admin role must use MFA: the last factor stays."""
    user_id = idp.user(is_admin=True)
    secret = enrol_totp(idp, user_id)
    from tests.mfa_helpers import answer_factor, totp_code

    answer_factor(idp, idp.login(), totp_code(secret))
    fields = form_fields(idp.http.get("/account/mfa").text)
    refused = idp.http.post("/account/mfa/totp/remove", data=fields)
    assert refused.status_code == 409
    assert sql(idp, "SELECT 1 FROM totp_factors")


def test_the_forms_need_their_csrf_token(idp: Harness) -> None:
    user_id = _signed_in(idp)
    enrol_totp(idp, user_id)
    for path in ("/account/mfa/totp", "/account/mfa/totp/remove", "/account/mfa/recovery-codes"):
        assert idp.http.post(path, data={"code": "1"}).status_code == 403
    assert sql(idp, "SELECT 1 FROM totp_factors")


def test_the_mfa_page_needs_a_sign_in(idp: Harness) -> None:
    page = idp.http.get("/account/mfa")
    assert page.status_code == 302 and page.headers["location"].startswith("/login?")
