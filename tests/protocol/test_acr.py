"""Who must use a second factor, and what a relying party may ask for (issue 12): the admin
role and clients registered with require_mfa enrol before the flow goes on; acr_values (OIDC
Core §3.1.2.1) steps a session up, aal1 < aal2 < phr; a request the user's factors cannot reach
is `unmet_authentication_requirements` (OpenID Connect Unmet Authentication Requirements 1.0),
`interaction_required` with prompt=none, never a silent downgrade."""

from __future__ import annotations

import pyotp
from starlette.testclient import TestClient

from tests.helpers import PASSWORD, RP, Harness, form_fields, query_of
from tests.mfa_helpers import answer_factor, enrol_totp, totp_code
from tests.token_helpers import ISSUER, audit_events, sql


def _password(idp: Harness, rp: RP, **params: str) -> object:
    started = idp.http.get("/authorize", params=rp.authorize_params(**params))
    assert started.headers["location"].startswith("/login?"), started.headers["location"]
    fields = form_fields(idp.http.get(started.headers["location"]).text)
    fields.update(email="alice@example.com", password=PASSWORD)
    return idp.http.post("/login", data=fields)


def _claims(idp: Harness, rp: RP, redirect: object) -> dict[str, object]:
    location = redirect.headers["location"]  # type: ignore[attr-defined]
    assert location.startswith(rp.redirect_uri), location
    tokens = idp.exchange(rp, query_of(location)["code"]).json()
    return dict(idp.decode(tokens["id_token"]).claims)


def _enrol(idp: Harness, enrol_redirect: object) -> tuple[str, object]:
    """At the redirect to /login/enrol: read the secret off the page, confirm it; returns the
    secret and the recovery-codes page."""
    location = enrol_redirect.headers["location"]  # type: ignore[attr-defined]
    assert location.startswith("/login/enrol?"), location
    page = idp.http.get(location)
    assert page.status_code == 200
    assert "<svg" in page.text and "style=" not in page.text.split("<svg", 1)[1].split("</svg>")[0]
    secret = page.text.split('id="totp-secret">', 1)[1].split("<", 1)[0].replace(" ", "")
    fields = form_fields(page.text)
    wrong = idp.http.post("/login/enrol", data={**fields, "code": "000000"})
    assert wrong.status_code == 400 and "not right" in wrong.text
    fields["code"] = pyotp.TOTP(secret).now()
    return secret, idp.http.post("/login/enrol", data=fields)


def test_an_admin_without_mfa_enrols_before_the_sign_in_goes_on(idp: Harness) -> None:
    """The admin role requires two factors: after the password the admin sets up an
    authenticator app, gets recovery codes once, and only then gets a code for the RP."""
    idp.user(is_admin=True)
    rp = idp.client(trusted=True)
    answered = _password(idp, rp)
    assert "idp_session" not in answered.headers.get("set-cookie", "")  # type: ignore[attr-defined]
    # Nothing else finishes this sign-in: resuming goes back to the second step.
    resumed = idp.http.get(
        "/authorize/resume?" + answered.headers["location"].split("?", 1)[1]  # type: ignore[attr-defined]
    )
    assert resumed.headers["location"].startswith("/login/factor?")
    enrol = idp.http.get(resumed.headers["location"])
    assert enrol.headers["location"].startswith("/login/enrol?")
    _, codes_page = _enrol(idp, enrol)
    assert codes_page.status_code == 200  # type: ignore[attr-defined]
    text = codes_page.text  # type: ignore[attr-defined]
    assert text.count("<li><code>") == 10 and 'download="recovery-codes.txt"' in text
    continue_url = text.split('class="button button-primary" href="', 1)[1].split('"', 1)[0]
    done = idp.follow_local(idp.http.get(continue_url.replace("&amp;", "&")))
    claims = _claims(idp, rp, done)
    assert claims["amr"] == ["pwd", "otp", "mfa"] and claims["acr"] == "aal2"
    assert audit_events(idp, "mfa.enrolled")


def test_an_admin_without_mfa_gets_no_session_at_all(idp: Harness) -> None:
    """Not even the IdP's own pages: /account after the password is still a sign-in."""
    idp.user(is_admin=True)
    answered = idp.login()
    assert answered.headers["location"].startswith("/login/enrol?")
    assert idp.http.get("/account").headers["location"].startswith("/login?")


def test_a_client_that_requires_mfa_gets_only_two_factor_sign_ins(idp: Harness) -> None:
    """--require-mfa: a user without a factor enrols; a user with one is asked for it."""
    idp.user()
    rp = idp.client(trusted=True, require_mfa=True)
    secret, codes_page = _enrol(idp, _password(idp, rp))
    assert codes_page.status_code == 200  # type: ignore[attr-defined]
    other = Harness(idp.app, TestClient(idp.app, base_url=ISSUER, follow_redirects=False))
    factor = _password(other, rp)
    done = other.follow_local(answer_factor(other, factor, totp_code(secret, 1)))
    assert _claims(other, rp, done)["acr"] == "aal2"


def test_acr_values_aal2_steps_a_password_session_up(idp: Harness) -> None:
    """A session that signed in with a password only (the factor came later) is asked for the
    second factor, not the password again; auth_time moves (OIDC Core §2)."""
    user_id = idp.user()
    rp = idp.client(trusted=True)
    first = _claims(idp, rp, idp.follow_local(_password(idp, rp)))  # type: ignore[arg-type]
    assert first["acr"] == "aal1" and first["amr"] == ["pwd"]
    secret = enrol_totp(idp, user_id)
    sql(idp, "UPDATE sessions SET auth_time = auth_time - 100")
    started = idp.http.get("/authorize", params=rp.authorize_params(acr_values="aal2"))
    assert started.headers["location"].startswith("/login/factor?")
    done = idp.follow_local(answer_factor(idp, started, totp_code(secret)))
    stepped = _claims(idp, rp, done)
    assert stepped["acr"] == "aal2" and stepped["amr"] == ["pwd", "otp", "mfa"]
    # The session's auth_time was moved 100 s back: the step-up set it to now again.
    assert int(stepped["auth_time"]) >= int(first["auth_time"])  # type: ignore[call-overload]
    assert stepped["sid"] == first["sid"]  # raised in place


def test_a_request_the_user_cannot_meet_is_unmet_authentication_requirements(
    idp: Harness,
) -> None:
    """No factor, aal2 asked: back to the RP with the error (and the state), no code."""
    idp.user()
    rp = idp.client(trusted=True)
    answered = _password(idp, rp, acr_values="aal2", state="s1")
    location = answered.headers["location"]  # type: ignore[attr-defined]
    assert location.startswith(rp.redirect_uri)
    params = query_of(location)
    assert params["error"] == "unmet_authentication_requirements" and params["state"] == "s1"
    assert "code" not in params


def test_phr_needs_a_passkey_an_authenticator_app_does_not_do(idp: Harness) -> None:
    """phr (phishing-resistant) is above aal2: a user with only TOTP cannot reach it."""
    user_id = idp.user()
    enrol_totp(idp, user_id)
    rp = idp.client(trusted=True)
    answered = _password(idp, rp, acr_values="phr")
    params = query_of(answered.headers["location"])  # type: ignore[attr-defined]
    assert params["error"] == "unmet_authentication_requirements"


def test_prompt_none_that_needs_a_factor_is_interaction_required(idp: Harness) -> None:
    """OIDC Core §3.1.2.6: with prompt=none the answer is interaction_required, whether the
    factor could be asked for or not."""
    user_id = idp.user()
    rp = idp.client(trusted=True)
    idp.follow_local(_password(idp, rp))  # type: ignore[arg-type]
    for_none = idp.http.get(
        "/authorize", params=rp.authorize_params(acr_values="aal2", prompt="none")
    )
    assert query_of(for_none.headers["location"])["error"] == "interaction_required"
    enrol_totp(idp, user_id)
    again = idp.http.get("/authorize", params=rp.authorize_params(prompt="none"))
    assert query_of(again.headers["location"])["error"] == "interaction_required"


def test_unknown_acr_values_are_ignored(idp: Harness) -> None:
    """acr_values are voluntary: values we do not know do not fail the request."""
    idp.user()
    rp = idp.client(trusted=True)
    answered = idp.follow_local(_password(idp, rp, acr_values="urn:example:loa:9 gold"))  # type: ignore[arg-type]
    assert _claims(idp, rp, answered)["acr"] == "aal1"


def test_prompt_login_runs_every_factor_again(idp: Harness) -> None:
    """prompt=login (and max_age) re-run the password and the second factor, not only the
    password."""
    user_id = idp.user()
    secret = enrol_totp(idp, user_id)
    rp = idp.client(trusted=True)
    idp.follow_local(answer_factor(idp, _password(idp, rp), totp_code(secret)))  # type: ignore[arg-type]
    again = _password(idp, rp, prompt="login")
    assert again.headers["location"].startswith("/login/factor?")  # type: ignore[attr-defined]


def test_discovery_lists_the_acr_values(idp: Harness) -> None:
    doc = idp.http.get("/.well-known/openid-configuration").json()
    assert doc["acr_values_supported"] == ["aal1", "aal2", "phr"]
