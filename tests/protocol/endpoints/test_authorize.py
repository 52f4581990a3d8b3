"""GET|POST /authorize: RFC 6749 §4.1.1 and §4.1.2.1, OIDC Core §3.1.2, RFC 7636, RFC 9207,
RFC 9700."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest

from idp.admin.clients import ClientSpec, register
from tests.authorize_helpers import (
    age_sessions,
    assert_error_page,
    disable_user,
    is_consent_page,
    is_login_redirect,
    redirect_error,
    redirect_to_rp,
    sign_in_from,
    signed_in_with_consent,
)
from tests.helpers import REDIRECT_URI, RP, Harness, form_fields

# --- errors shown at the IdP: the redirect_uri is not (yet) known to be the client's ------------


def test_unknown_client_is_an_error_page(idp: Harness) -> None:
    """RFC 6749 §4.1.2.1: if the client identifier is invalid, the AS MUST NOT redirect."""
    rp = idp.client()
    assert_error_page(idp.authorize(rp, client_id="no-such-client"))


def test_missing_client_id_is_an_error_page(idp: Harness) -> None:
    """RFC 6749 §4.1.2.1: a missing client identifier is shown to the user, not redirected."""
    rp = idp.client()
    assert_error_page(idp.authorize(rp, client_id=None))


def test_repeated_client_id_is_an_error_page(idp: Harness) -> None:
    """RFC 6749 §3.1: parameters MUST NOT repeat; which client asked is then unknown (§4.1.2.1)."""
    rp, other = idp.client(), idp.client()
    params = [*rp.authorize_params().items(), ("client_id", other.client_id)]
    assert_error_page(idp.http.get("/authorize", params=params))


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://attacker.example/callback",
        REDIRECT_URI + "/",
        REDIRECT_URI + "?next=https://attacker.example",
        "https://RP.example/callback",
        "http://rp.example/callback",
    ],
    ids=["other-host", "trailing-slash", "extra-query", "other-case", "http"],
)
def test_unregistered_redirect_uri_is_an_error_page(idp: Harness, redirect_uri: str) -> None:
    """RFC 9700 §4.1.3: redirect URIs are compared by exact string match; RFC 6749 §4.1.2.1:
    a mismatching redirection URI MUST NOT be redirected to."""
    rp = idp.client()
    response = idp.authorize(rp, redirect_uri=redirect_uri)
    assert_error_page(response)
    assert "attacker.example" not in response.headers.get("location", "")


def test_missing_redirect_uri_is_an_error_page(idp: Harness) -> None:
    """OIDC Core §3.1.2.1: redirect_uri is REQUIRED; RFC 6749 §4.1.2.1: no redirect without it."""
    rp = idp.client()
    assert_error_page(idp.authorize(rp, redirect_uri=None))


def test_repeated_redirect_uri_is_an_error_page(idp: Harness) -> None:
    """RFC 6749 §3.1 and §4.1.2.1: with two redirect_uri values neither is validated."""
    rp = idp.client(redirect_uris=[REDIRECT_URI, "https://rp.example/other"])
    params = [*rp.authorize_params().items(), ("redirect_uri", "https://rp.example/other")]
    assert_error_page(idp.http.get("/authorize", params=params))


# --- errors redirected to the validated redirect_uri ---------------------------------------------


@pytest.mark.parametrize("response_type", ["token", "id_token", "code id_token", "code token"])
def test_implicit_and_hybrid_are_unsupported(idp: Harness, response_type: str) -> None:
    """RFC 6749 §4.1.2.1 unsupported_response_type; RFC 9700 §2.1.2: no implicit grant, and
    this OP offers no hybrid flow (OIDC Core §3.3)."""
    rp = idp.client()
    response = idp.authorize(rp, response_type=response_type)
    assert redirect_error(response, rp) == "unsupported_response_type"


def test_scope_the_client_lacks_is_invalid_scope(idp: Harness) -> None:
    """RFC 6749 §4.1.2.1 invalid_scope: the requested scope exceeds what the client may have."""
    rp = idp.client(scopes=["openid", "profile"])
    assert redirect_error(idp.authorize(rp, scope="openid email"), rp) == "invalid_scope"


def test_plain_code_challenge_method_is_refused(idp: Harness) -> None:
    """RFC 7636 §4.2 and RFC 9700 §2.1.1: S256 only; "plain" is an invalid_request."""
    rp = idp.client()
    response = idp.authorize(rp, code_challenge="x" * 43, code_challenge_method="plain")
    assert redirect_error(response, rp) == "invalid_request"


def test_challenge_without_method_is_refused(idp: Harness) -> None:
    """RFC 7636 §4.3: a missing method means "plain", which this server does not accept."""
    rp = idp.client()
    response = idp.authorize(rp, code_challenge_method=None)
    assert redirect_error(response, rp) == "invalid_request"


@pytest.mark.parametrize(
    "challenge", ["x" * 42, "x" * 129, "x" * 42 + "+"], ids=["short", "long", "bad-char"]
)
def test_malformed_code_challenge_is_refused(idp: Harness, challenge: str) -> None:
    """RFC 7636 §4.2: code_challenge is 43 to 128 unreserved characters."""
    rp = idp.client()
    assert redirect_error(idp.authorize(rp, code_challenge=challenge), rp) == "invalid_request"


def test_missing_code_challenge_is_refused(idp: Harness) -> None:
    """RFC 9700 §2.1.1: PKCE is required by default; RFC 7636 §4.4.1 invalid_request."""
    rp = idp.client()
    response = idp.authorize(rp, code_challenge=None, code_challenge_method=None)
    assert redirect_error(response, rp) == "invalid_request"


def test_client_without_pkce_requirement_may_omit_the_challenge(idp: Harness) -> None:
    """RFC 7636 §4.4.1: a client registered without PKCE gets a code without a challenge."""
    idp.user()
    rp = idp.client(require_pkce=False)
    response = idp.follow_to_code(
        idp.authorize(rp, code_challenge=None, code_challenge_method=None), rp
    )
    assert "code" in redirect_to_rp(response, rp, status=303)


@pytest.mark.parametrize("name", ["scope", "state", "nonce", "response_type", "prompt"])
def test_repeated_parameter_is_invalid_request(idp: Harness, name: str) -> None:
    """RFC 6749 §3.1: request parameters MUST NOT be included more than once."""
    rp = idp.client()
    params = [*rp.authorize_params(prompt="none").items(), (name, "openid")]
    response = idp.http.get("/authorize", params=params)
    assert response.status_code == 302, response.text
    assert response.headers["location"].startswith(rp.redirect_uri + "?")
    assert parse_qs(urlsplit(response.headers["location"]).query)["error"] == ["invalid_request"]


def test_prompt_none_with_other_values_is_invalid_request(idp: Harness) -> None:
    """OIDC Core §3.1.2.1: if prompt contains none with any other value, an error is returned."""
    rp = idp.client()
    assert redirect_error(idp.authorize(rp, prompt="none login"), rp) == "invalid_request"


@pytest.mark.parametrize("max_age", ["abc", "-1", "1.5", "", "1e3"])
def test_non_integer_max_age_is_invalid_request(idp: Harness, max_age: str) -> None:
    """OIDC Core §3.1.2.1: max_age is a number of seconds (a non-negative integer)."""
    rp = idp.client()
    assert redirect_error(idp.authorize(rp, max_age=max_age), rp) == "invalid_request"


def test_max_age_with_non_ascii_digits_is_invalid_request(idp: Harness) -> None:
    """OIDC Core §3.1.2.1: max_age is a number of seconds; "²" passes str.isdigit() but is no
    integer, and must be refused as invalid_request rather than crash the request."""
    idp.user()
    rp = idp.client()
    signed_in_with_consent(idp, rp)
    assert redirect_error(idp.authorize(rp, max_age="²"), rp) == "invalid_request"


def test_request_object_is_not_supported(idp: Harness) -> None:
    """OIDC Core §6 and §3.1.2.6: request_not_supported when request objects are not offered."""
    rp = idp.client()
    response = idp.authorize(rp, request="eyJhbGciOiJub25lIn0.e30.")
    assert redirect_error(response, rp) == "request_not_supported"


def test_request_uri_is_not_supported(idp: Harness) -> None:
    """OIDC Core §6 and §3.1.2.6: request_uri_not_supported."""
    rp = idp.client()
    response = idp.authorize(rp, request_uri="https://rp.example/request.jwt")
    assert redirect_error(response, rp) == "request_uri_not_supported"


def test_client_without_the_code_grant_is_unauthorized(idp: Harness) -> None:
    """RFC 6749 §4.1.2.1 unauthorized_client: the client may not use response_type=code."""
    with idp.runtime.sessions.begin() as db:
        registered = register(
            db,
            ClientSpec(
                name="Service",
                grant_types=["client_credentials"],
                scopes=["openid", "api.read"],
                redirect_uris=[REDIRECT_URI],
            ),
            policy=idp.runtime.outbound,
        )
    rp = RP(registered.client.client_id, registered.client_secret)
    assert redirect_error(idp.authorize(rp, scope="openid"), rp) == "unauthorized_client"


def test_error_redirect_without_state_has_iss_and_no_state(idp: Harness) -> None:
    """RFC 6749 §4.1.2.1: state only if the request had one; RFC 9207 §2: iss always."""
    rp = idp.client()
    response = idp.authorize(rp, state=None, scope="openid admin")
    assert response.status_code == 302
    params = parse_qs(urlsplit(response.headers["location"]).query)
    assert params["error"] == ["invalid_scope"]
    assert params["iss"] == ["https://testserver"]
    assert "state" not in params


# --- the way to a code ---------------------------------------------------------------------------


def test_without_session_the_user_is_sent_to_login(idp: Harness) -> None:
    """OIDC Core §3.1.2.3: the OP authenticates the End-User, then resumes this same request.
    Issue 9: the validated request is stored as an interaction; only its id travels."""
    rp = idp.client()
    response = idp.authorize(rp)
    assert is_login_redirect(response)
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert list(query) == ["interaction"]
    location = response.headers["location"]
    for value in (rp.client_id, rp.state, rp.challenge, rp.nonce):
        assert value not in location
    page = idp.http.get(location)
    assert page.status_code == 200
    assert form_fields(page.text)["interaction"] == query["interaction"][0]
    for value in (rp.state, rp.challenge, rp.nonce, rp.redirect_uri):
        assert value not in page.text


def test_login_then_consent_then_code(idp: Harness) -> None:
    """OIDC Core §3.1.2.3-§3.1.2.5: sign in, approve, then a code with state and iss (RFC 9207)."""
    idp.user()
    rp = idp.client()
    after_login = sign_in_from(idp, idp.authorize(rp))
    assert is_consent_page(after_login)
    response = idp.follow_to_code(after_login, rp)
    params = redirect_to_rp(response, rp, status=303)
    assert params["code"]
    assert "error" not in params


def test_success_redirect_carries_iss_and_state(idp: Harness) -> None:
    """RFC 6749 §4.1.2: code and the exact state; RFC 9207 §2: iss on every response."""
    idp.user()
    rp = idp.client()
    signed_in_with_consent(idp, rp)
    rp.state = "a b/c?d=é&e"
    assert redirect_to_rp(idp.authorize(rp), rp)["code"]


def test_long_but_valid_request_survives_sign_in(idp: Harness) -> None:
    """RFC 6749 §4.1.2: state comes back exactly, however the OP authenticates the user in
    between (OIDC Core §3.1.2.3); each parameter here is within the IdP's per-parameter limit."""
    idp.user()
    rp = idp.client()
    rp.state = "s" * 3000
    response = idp.authorize(rp, nonce="n" * 1500)
    assert is_login_redirect(response)
    response = idp.follow_to_code(response, rp)
    assert redirect_to_rp(response, rp, status=303)["code"], response.text


# --- POST /authorize -----------------------------------------------------------------------------


def test_post_works_like_get(idp: Harness) -> None:
    """OIDC Core §3.1.2.1: the OP MUST support POST; after a POST the redirect is 303."""
    idp.user()
    rp = idp.client()
    signed_in_with_consent(idp, rp)
    response = idp.http.post("/authorize", data=rp.authorize_params())
    assert redirect_to_rp(response, rp, status=303)["code"]


def test_post_without_session_goes_to_login(idp: Harness) -> None:
    """OIDC Core §3.1.2.1: a POSTed request is handled like a GET one (303 to the login page)."""
    idp.user()
    rp = idp.client()
    response = idp.http.post("/authorize", data=rp.authorize_params())
    assert response.status_code == 303
    assert is_login_redirect(response)
    assert "code" in redirect_to_rp(idp.follow_to_code(response, rp), rp, status=303)


def test_post_error_redirects_with_303(idp: Harness) -> None:
    """OIDC Core §3.1.2.1 and RFC 6749 §4.1.2.1: a POSTed request's error also redirects (303)."""
    rp = idp.client()
    response = idp.http.post("/authorize", data=rp.authorize_params(scope="openid admin"))
    assert redirect_error(response, rp, status=303) == "invalid_scope"


def test_post_with_unknown_client_is_an_error_page(idp: Harness) -> None:
    """RFC 6749 §4.1.2.1: no redirect for an invalid client, whatever the method."""
    rp = idp.client()
    response = idp.http.post("/authorize", data=rp.authorize_params(client_id="nobody"))
    assert_error_page(response)


# --- prompt --------------------------------------------------------------------------------------


def test_prompt_none_without_session_is_login_required(idp: Harness) -> None:
    """OIDC Core §3.1.2.6 login_required: prompt=none and the End-User is not signed in."""
    rp = idp.client()
    assert redirect_error(idp.authorize(rp, prompt="none"), rp) == "login_required"


def test_prompt_none_without_consent_is_consent_required(idp: Harness) -> None:
    """OIDC Core §3.1.2.6 consent_required: prompt=none and consent was never given."""
    idp.user()
    rp = idp.client()
    idp.login()
    assert redirect_error(idp.authorize(rp, prompt="none"), rp) == "consent_required"


def test_prompt_none_with_session_and_consent_gives_a_code(idp: Harness) -> None:
    """OIDC Core §3.1.2.1 prompt=none: no page at all when nothing needs to be asked."""
    idp.user()
    rp = idp.client()
    signed_in_with_consent(idp, rp)
    params = redirect_to_rp(idp.authorize(rp, prompt="none"), rp)
    assert params["code"]


def test_session_of_a_disabled_user_does_not_count(idp: Harness) -> None:
    """OIDC Core §3.1.2.3: the End-User must be authenticated; a disabled account is not, so
    prompt=none gets login_required."""
    alice = idp.user()
    rp = idp.client()
    signed_in_with_consent(idp, rp)
    disable_user(idp, alice)
    assert redirect_error(idp.authorize(rp, prompt="none"), rp) == "login_required"


def test_prompt_login_asks_again_and_refreshes_auth_time(idp: Harness) -> None:
    """OIDC Core §3.1.2.1 prompt=login: reauthenticate even with a session; §2 auth_time then
    is the time of that new authentication."""
    idp.user()
    rp = idp.client()
    signed_in_with_consent(idp, rp)
    age_sessions(idp, 120)
    before = int(time.time())
    response = idp.authorize(rp, prompt="login")
    assert is_login_redirect(response)
    params = redirect_to_rp(sign_in_from(idp, response), rp)
    tokens = idp.exchange(rp, params["code"]).json()
    assert idp.decode(tokens["id_token"]).claims["auth_time"] >= before


# --- max_age -------------------------------------------------------------------------------------


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> float:
    """Time stands still: a sign-in and the next request happen in the same second."""
    instant = time.time()
    monkeypatch.setattr(time, "time", lambda: instant)
    return instant


def test_max_age_zero_forces_reauthentication(idp: Harness, frozen_clock: float) -> None:
    """OIDC Core §3.1.2.1: "max_age=0 is equivalent to prompt=login", even for a sign-in made
    a moment ago."""
    idp.user()
    rp = idp.client()
    signed_in_with_consent(idp, rp)
    response = idp.authorize(rp, max_age="0")
    assert is_login_redirect(response), response.headers.get("location")


def test_max_age_exceeded_forces_reauthentication(idp: Harness) -> None:
    """OIDC Core §3.1.2.1: elapsed time greater than max_age: the OP MUST re-authenticate, and
    the ID token MUST carry auth_time."""
    idp.user()
    rp = idp.client()
    signed_in_with_consent(idp, rp)
    age_sessions(idp, 120)
    before = int(time.time())
    response = idp.authorize(rp, max_age="60")
    assert is_login_redirect(response)
    params = redirect_to_rp(sign_in_from(idp, response), rp)
    id_token = idp.decode(idp.exchange(rp, params["code"]).json()["id_token"])
    assert id_token.claims["auth_time"] >= before


def test_max_age_exceeded_with_prompt_none_is_login_required(idp: Harness) -> None:
    """OIDC Core §3.1.2.1 and §3.1.2.6: re-authentication is needed but prompt=none forbids it."""
    idp.user()
    rp = idp.client()
    signed_in_with_consent(idp, rp)
    age_sessions(idp, 120)
    assert redirect_error(idp.authorize(rp, prompt="none", max_age="60"), rp) == "login_required"


def test_large_max_age_keeps_the_session(idp: Harness) -> None:
    """OIDC Core §3.1.2.1: within max_age the existing authentication is reused."""
    idp.user()
    rp = idp.client()
    signed_in_with_consent(idp, rp)
    age_sessions(idp, 120)
    params = redirect_to_rp(idp.authorize(rp, max_age="3600"), rp)
    id_token = idp.decode(idp.exchange(rp, params["code"]).json()["id_token"])
    assert id_token.claims["auth_time"] <= int(time.time()) - 120


# --- hints ---------------------------------------------------------------------------------------


def test_login_hint_prefills_the_email(idp: Harness) -> None:
    """OIDC Core §3.1.2.1 login_hint: a hint about the identifier the End-User might use."""
    rp = idp.client()
    response = idp.authorize(rp, login_hint="bob@example.com")
    assert is_login_redirect(response)
    page = idp.http.get(response.headers["location"])
    assert page.status_code == 200
    assert form_fields(page.text)["email"] == "bob@example.com"


def test_login_hint_is_escaped(idp: Harness) -> None:
    """OWASP XSS prevention: login_hint comes from the RP's URL and is shown as text only."""
    rp = idp.client()
    hint = '"><script>alert(1)</script>'
    page = idp.http.get(idp.authorize(rp, login_hint=hint).headers["location"])
    assert "<script>alert(1)" not in page.text
    assert form_fields(page.text)["email"] == hint


def test_id_token_hint_of_current_user_with_prompt_none(idp: Harness) -> None:
    """OIDC Core §3.1.2.1 id_token_hint: the hinted End-User is signed in, so prompt=none
    succeeds."""
    idp.user()
    rp = idp.client()
    id_token = idp.tokens(rp)["id_token"]
    response = idp.authorize(rp, prompt="none", id_token_hint=id_token)
    assert redirect_to_rp(response, rp)["code"]


def test_invalid_id_token_hint_is_invalid_request(idp: Harness) -> None:
    """OIDC Core §3.1.2.1: id_token_hint must be an ID token this OP issued."""
    idp.user()
    rp = idp.client()
    signed_in_with_consent(idp, rp)
    response = idp.authorize(rp, prompt="none", id_token_hint="not.a.token")
    assert redirect_error(response, rp) == "invalid_request"


def test_access_token_is_not_an_id_token_hint(idp: Harness) -> None:
    """OIDC Core §3.1.2.1: the hint is an ID token; an access token (RFC 9068 typ) is not one."""
    idp.user()
    rp = idp.client()
    access_token = idp.tokens(rp)["access_token"]
    response = idp.authorize(rp, prompt="none", id_token_hint=access_token)
    assert redirect_error(response, rp) == "invalid_request"


def test_id_token_hint_of_another_user_is_login_required(idp: Harness) -> None:
    """OIDC Core §3.1.2.1: if the hinted End-User is not the one signed in, with prompt=none the
    OP returns login_required."""
    idp.user()
    idp.user("bob@example.com")
    rp = idp.client()
    bob_code = idp.follow_to_code(idp.authorize(rp), rp, email="bob@example.com")
    bob_code_params = redirect_to_rp(bob_code, rp, status=303)
    bobs_id_token = idp.exchange(rp, bob_code_params["code"]).json()["id_token"]
    # Alice signs in on the same browser and approves the client too.
    alice = idp.follow_to_code(idp.authorize(rp, prompt="login"), rp)
    assert "code" in redirect_to_rp(alice, rp, status=303)
    response = idp.authorize(rp, prompt="none", id_token_hint=bobs_id_token)
    assert redirect_error(response, rp) == "login_required"


# --- security headers on the pages /authorize leads to -------------------------------------------


@pytest.mark.parametrize("page", ["error", "login"])
def test_pages_carry_security_headers(idp: Harness, page: str) -> None:
    """CSP (no inline script, frame-ancestors 'none': RFC 6749 §10.13 clickjacking),
    X-Frame-Options, nosniff, Referrer-Policy same-origin (no Referer leaves for another site,
    and browsers send a real Origin on our own forms), and HSTS on an https issuer."""
    rp = idp.client()
    if page == "error":
        response = idp.authorize(rp, client_id="nobody")
        assert_error_page(response)
    else:
        redirect = idp.authorize(rp)
        assert is_login_redirect(redirect)
        response = idp.http.get(redirect.headers["location"])
        assert response.status_code == 200
    headers = response.headers
    csp = headers["content-security-policy"]
    assert "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert "max-age=" in headers["strict-transport-security"]


@pytest.mark.parametrize(
    "response_type", ['"', "code\x01", "\ufeffcode", "code\x7f", "c\\ode", "é"]
)
def test_hostile_response_type_is_unsupported_not_a_crash(idp: Harness, response_type: str) -> None:
    """RFC 6749 §4.1.2.1 unsupported_response_type, for a value that holds characters
    error_description may not carry (quote, backslash, controls, non-ASCII): still a redirect
    with the error, never a 500."""
    rp = idp.client()
    response = idp.authorize(rp, response_type=response_type)
    assert redirect_error(response, rp) == "unsupported_response_type"


def test_missing_response_type_is_invalid_request(idp: Harness) -> None:
    """RFC 6749 §4.1.2.1 invalid_request: the request is missing a required parameter."""
    rp = idp.client()
    assert redirect_error(idp.authorize(rp, response_type=None), rp) == "invalid_request"
