"""Passkeys and security keys in pages (issue 12, WebAuthn L3 with a software authenticator):
registered from /account/mfa/passkey after a fresh sign-in, used as the second factor after the
password, and for a sign-in without a password ("Sign in with a passkey", user verification
required); the challenge is single use; `phr` needs one; the last factor of an admin stays."""

from __future__ import annotations

import html
import json
import re

import httpx
from starlette.testclient import TestClient

from tests.helpers import PASSWORD, RP, Harness, form_fields, query_of
from tests.mfa_helpers import enrol_totp
from tests.token_helpers import ISSUER, audit_events, sql
from tests.webauthn_authenticator import SoftAuthenticator


def options_of(page: httpx.Response, action: str) -> dict[str, str]:
    """The form that posts to `action`: its fields, and the WebAuthn options it carries."""
    match = re.search(
        rf'<form method="post" action="{re.escape(action)}"[^>]*data-options="([^"]*)"', page.text
    )
    assert match, page.text
    form = page.text[match.start() : page.text.index("</form>", match.start())]
    return {**form_fields(form), "options": html.unescape(match.group(1))}


def register(idp: Harness, key: SoftAuthenticator, name: str = "Blue key") -> httpx.Response:
    form = options_of(idp.http.get("/account/mfa/passkey"), "/account/mfa/passkey")
    options = form.pop("options")
    form.update(name=name, credential=key.create(options))
    return idp.http.post("/account/mfa/passkey", data=form)


def signed_in_user(idp: Harness, **user: object) -> str:
    user_id = idp.user(**user)  # type: ignore[arg-type]
    assert idp.login().headers["location"] == "/"
    return user_id


def fresh_browser(idp: Harness) -> Harness:
    return Harness(idp.app, TestClient(idp.app, base_url=ISSUER, follow_redirects=False))


def password_step(idp: Harness, rp: RP, **params: str) -> httpx.Response:
    started = idp.http.get("/authorize", params=rp.authorize_params(**params))
    fields = form_fields(idp.http.get(started.headers["location"]).text)
    fields.update(email="alice@example.com", password=PASSWORD)
    answered = idp.http.post("/login", data=fields)
    assert answered.headers["location"].startswith("/login/factor?"), answered.headers
    return idp.http.get(answered.headers["location"])


def claims_of(idp: Harness, rp: RP, redirect: httpx.Response) -> dict[str, object]:
    done = idp.follow_local(redirect)
    code = query_of(done.headers["location"])["code"]
    return dict(idp.decode(idp.exchange(rp, code).json()["id_token"]).claims)


def test_register_a_passkey_then_use_it_as_the_second_factor(idp: Harness) -> None:
    """WebAuthn L3 §7.1 registration from the account page (first factor: recovery codes come
    with it), then §7.2 after the password: amr pwd hwk user mfa, acr phr (RFC 8176)."""
    user_id = signed_in_user(idp)
    key = SoftAuthenticator()
    added = register(idp, key)
    assert added.status_code == 200 and added.text.count("<li><code>") == 10
    [(name, discoverable)] = sql(
        idp, "SELECT name, discoverable FROM webauthn_credentials WHERE user_id = :u", u=user_id
    )
    assert name == "Blue key" and discoverable
    assert "Blue key" in idp.http.get("/account/mfa").text
    other = fresh_browser(idp)
    rp = other.client(trusted=True)
    page = password_step(other, rp)
    form = options_of(page, "/login/factor")
    options = json.loads(form["options"])
    assert [c["id"] for c in options["allowCredentials"]] == [key.id]
    assert options["userVerification"] == "preferred"
    form["credential"] = key.get(form.pop("options"))
    claims = claims_of(other, rp, other.http.post("/login/factor", data=form))
    assert claims["amr"] == ["pwd", "hwk", "user", "mfa"] and claims["acr"] == "phr"
    assert audit_events(idp, "webauthn.registered")


def test_an_assertion_is_accepted_once(idp: Harness) -> None:
    """The challenge is taken when it is answered: the same answer again is refused."""
    signed_in_user(idp)
    key = SoftAuthenticator()
    register(idp, key)
    other = fresh_browser(idp)
    rp = other.client(trusted=True)
    form = options_of(password_step(other, rp), "/login/factor")
    form["credential"] = key.get(form.pop("options"))
    assert other.http.post("/login/factor", data=form).status_code == 303
    third = fresh_browser(idp)
    page = password_step(third, rp)
    replay = third.http.post(
        "/login/factor",
        data={**options_of(page, "/login/factor"), "credential": form["credential"]},
    )
    assert replay.status_code == 400 and "did not sign you in" in replay.text


def test_a_sign_count_that_goes_back_is_refused_and_recorded(idp: Harness) -> None:
    """WebAuthn L3 §6.1.1: a counter that does not advance means a cloned key; the refusal's
    audit event commits although the sign-in failed."""
    signed_in_user(idp)
    key = SoftAuthenticator(sign_count=5)
    register(idp, key)
    other = fresh_browser(idp)
    rp = other.client(trusted=True)
    form = options_of(password_step(other, rp), "/login/factor")
    form["credential"] = key.get(form.pop("options"), sign_count=3)
    refused = other.http.post("/login/factor", data=form)
    assert refused.status_code == 400
    assert audit_events(idp, "webauthn.sign_count_regressed")


def test_sign_in_without_a_password(idp: Harness) -> None:
    """ "Sign in with a passkey": a discoverable credential with user verification names its
    user; the tokens say hwk user mfa and phr."""
    signed_in_user(idp)
    key = SoftAuthenticator()
    register(idp, key)
    other = fresh_browser(idp)
    rp = other.client(trusted=True)
    started = other.http.get("/authorize", params=rp.authorize_params())
    login = other.http.get(started.headers["location"])
    assert 'action="/login/passkey"' in login.text
    fields = {
        k: v for k, v in form_fields(login.text).items() if k in ("csrf_token", "interaction")
    }
    page = other.http.post("/login/passkey", data=fields)
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    form = options_of(page, "/login/passkey/finish")
    options = json.loads(form["options"])
    assert options["userVerification"] == "required" and not options.get("allowCredentials")
    form["credential"] = key.get(form.pop("options"))
    claims = claims_of(other, rp, other.http.post("/login/passkey/finish", data=form))
    assert claims["amr"] == ["hwk", "user", "mfa"] and claims["acr"] == "phr"


def test_a_passwordless_sign_in_needs_user_verification(idp: Harness) -> None:
    signed_in_user(idp)
    register(idp, SoftAuthenticator())
    unverified = SoftAuthenticator(user_verified=False)
    register(idp, unverified, "Old key")
    other = fresh_browser(idp)
    token = form_fields(other.http.get("/login").text)["csrf_token"]
    form = options_of(
        other.http.post("/login/passkey", data={"csrf_token": token}), "/login/passkey/finish"
    )
    form["credential"] = unverified.get(form.pop("options"))
    refused = other.http.post("/login/passkey/finish", data=form)
    assert refused.status_code == 400 and "idp_session" not in refused.headers.get("set-cookie", "")


def test_phr_asks_for_the_passkey_only(idp: Harness) -> None:
    """acr_values=phr: a user with an authenticator app and a passkey is offered only the
    passkey (a code is not phishing-resistant)."""
    user_id = signed_in_user(idp)
    enrol_totp(idp, user_id)
    key = SoftAuthenticator()
    register(idp, key)
    other = fresh_browser(idp)
    rp = other.client(trusted=True)
    page = password_step(other, rp, acr_values="phr")
    assert 'autocomplete="one-time-code"' not in page.text
    form = options_of(page, "/login/factor")
    form["credential"] = key.get(form.pop("options"))
    assert claims_of(other, rp, other.http.post("/login/factor", data=form))["acr"] == "phr"


def test_removing_passkeys_and_the_admins_last_factor(idp: Harness) -> None:
    """A user may remove a passkey (the last one takes the recovery codes with it); an admin's
    last factor stays."""
    user_id = signed_in_user(idp)
    register(idp, SoftAuthenticator())
    [(credential_id,)] = sql(idp, "SELECT id FROM webauthn_credentials")
    token = form_fields(idp.http.get("/account/mfa").text)["csrf_token"]
    removed = idp.http.post(
        "/account/mfa/passkey/remove", data={"csrf_token": token, "id": credential_id}
    )
    assert removed.status_code == 303
    assert not sql(idp, "SELECT 1 FROM recovery_codes WHERE user_id = :u", u=user_id)
    assert audit_events(idp, "webauthn.removed")
    sql(
        idp, "INSERT INTO user_roles (user_id, role, granted_at) VALUES (:u, 'admin', 0)", u=user_id
    )
    register(idp, SoftAuthenticator())
    [(credential_id,)] = sql(idp, "SELECT id FROM webauthn_credentials")
    token = form_fields(idp.http.get("/account/mfa").text)["csrf_token"]
    kept = idp.http.post(
        "/account/mfa/passkey/remove", data={"csrf_token": token, "id": credential_id}
    )
    assert kept.status_code == 409
    other = idp.http.post("/account/mfa/passkey/remove", data={"csrf_token": token, "id": "nope"})
    assert other.status_code == 404


def test_a_registration_answer_for_another_origin_is_refused(idp: Harness) -> None:
    signed_in_user(idp)
    form = options_of(idp.http.get("/account/mfa/passkey"), "/account/mfa/passkey")
    form["credential"] = SoftAuthenticator().create(
        form.pop("options"), origin="https://evil.example"
    )
    refused = idp.http.post("/account/mfa/passkey", data=form)
    assert refused.status_code == 400 and "was not added" in refused.text
    assert not sql(idp, "SELECT 1 FROM webauthn_credentials")
