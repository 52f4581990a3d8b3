"""The pages a person sees -- /login, /consent, /logout, /account, / -- under hostile input:
an HTML page or a redirect to this server's pages or a registered URI, never a 5xx."""

from __future__ import annotations

from hypothesis import given, strategies as st

from tests.helpers import RP, Harness
from tests.hostile.strategies import (
    assert_page,
    content_types,
    form_bodies,
    hostile_text,
    query_strings,
)
from tests.mfa_helpers import enrol_totp
from tests.token_helpers import sql

PAGES = st.sampled_from(
    [
        "/login",
        "/consent",
        "/logout",
        "/account",
        "/",
        "/authorize/resume",
        "/login/factor",
        "/login/enrol",
        "/account/mfa",
        "/account/mfa/totp",
        "/account/mfa/passkey",
    ]
)
POSTS = st.sampled_from(
    [
        "/login",
        "/consent",
        "/logout",
        "/account/sign-out-everywhere",
        "/apps/revoke",
        "/login/factor",
        "/login/enrol",
        "/login/passkey",
        "/login/passkey/finish",
        "/account/mfa/totp",
        "/account/mfa/totp/remove",
        "/account/mfa/recovery-codes",
        "/account/mfa/passkey",
        "/account/mfa/passkey/remove",
    ]
)


def allowed(rp: RP) -> tuple[str, ...]:
    return (rp.redirect_uri, "https://rp.example/signed-out")


@given(path=PAGES, query=query_strings())
def test_get_with_hostile_query(idp: Harness, rp: RP, path: str, query: str) -> None:
    assert_page(idp.http.get(f"{path}?{query}"), allowed(rp))


@given(path=POSTS, body=form_bodies(), content_type=content_types)
def test_post_with_hostile_body(
    idp: Harness, rp: RP, path: str, body: bytes, content_type: str
) -> None:
    response = idp.http.post(path, content=body, headers={"content-type": content_type})
    assert_page(response, allowed(rp))


@given(path=PAGES, query=query_strings([("interaction", "x" * 43)]))
def test_unknown_interaction_with_hostile_query(
    idp: Harness, rp: RP, path: str, query: str
) -> None:
    """An interaction id that is not one, beside hostile parameters."""
    assert_page(idp.http.get(f"{path}?{query}"), allowed(rp))


@given(
    method=st.sampled_from(["totp", "recovery", "passkey", ""]) | hostile_text, answer=hostile_text
)
def test_hostile_second_factor_answers(idp: Harness, rp: RP, method: str, answer: str) -> None:
    """A live second step (the password was right) and a valid form token, with any method and
    any code or WebAuthn answer: a page (a 4xx for a wrong answer), never a 5xx."""
    if not getattr(idp, "_factor_form", None):
        enrol_totp(idp, idp.user())
        started = idp.http.get("/authorize", params=rp.authorize_params())
        page = idp.http.get(started.headers["location"])
        from tests.helpers import PASSWORD, form_fields

        fields = form_fields(page.text)
        fields.update(email="alice@example.com", password=PASSWORD)
        answered = idp.http.post("/login", data=fields)
        idp._factor_form = form_fields(idp.http.get(answered.headers["location"]).text)  # type: ignore[attr-defined]
    # Every example meets the live step: no earlier wrong answer has ended it or throttled it.
    sql(idp, "UPDATE interactions SET factor_failures = 0")
    sql(idp, "DELETE FROM throttle_counters")
    form = {**idp._factor_form, "method": method, "code": answer, "credential": answer}  # type: ignore[attr-defined]
    response = idp.http.post("/login/factor", data=form)
    assert_page(response, allowed(rp))
    assert response.status_code in (303, 400), response.status_code
