"""The pages a person sees -- /login, /consent, /logout, /account, / -- under hostile input:
an HTML page or a redirect to this server's pages or a registered URI, never a 5xx."""

from __future__ import annotations

from hypothesis import given, strategies as st

from tests.helpers import RP, Harness
from tests.hostile.strategies import assert_page, content_types, form_bodies, query_strings

PAGES = st.sampled_from(["/login", "/consent", "/logout", "/account", "/", "/authorize/resume"])
POSTS = st.sampled_from(
    ["/login", "/consent", "/logout", "/account/sign-out-everywhere", "/apps/revoke"]
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
