"""GET|POST /authorize under hostile input: an error page at the IdP until client and
redirect_uri are known to belong together, then an error redirect to that redirect_uri only
(RFC 6749 §4.1.2.1); never a 5xx, never a redirect anywhere else."""

from __future__ import annotations

from hypothesis import given, strategies as st

from tests.helpers import RP, Harness
from tests.hostile.strategies import (
    assert_page,
    content_types,
    encode_pairs,
    form_bodies,
    hostile_text,
    pairs,
    query_strings,
)

AUTHORIZE_NAMES = st.sampled_from(
    [
        "response_type", "scope", "state", "nonce", "prompt", "max_age", "id_token_hint",
        "code_challenge", "code_challenge_method", "response_mode", "request", "request_uri",
        "ui_locales", "login_hint", "acr_values", "claims", "display", "redirect_uri",
        "client_id",
    ]
)  # fmt: skip


def base_params(rp: RP) -> list[tuple[str, str]]:
    return list(rp.authorize_params().items())


@given(overrides=st.lists(st.tuples(AUTHORIZE_NAMES, hostile_text), max_size=6), extra=pairs)
def test_valid_client_with_hostile_parameters(
    idp: Harness, rp: RP, overrides: list[tuple[str, str]], extra: list[tuple[str, str]]
) -> None:
    """Hostile values for every parameter (replacing or repeating the good ones)."""
    replaced = {name for name, _ in overrides}
    params = [(k, v) for k, v in base_params(rp) if k not in replaced] + overrides + extra
    response = idp.http.get("/authorize?" + encode_pairs(params))
    assert_page(response, (rp.redirect_uri,))


@given(query=query_strings())
def test_hostile_query_without_a_client(idp: Harness, rp: RP, query: str) -> None:
    """No valid client and redirect_uri: a page, whatever the query holds."""
    assert_page(idp.http.get("/authorize?" + query), (rp.redirect_uri,))


@given(data=st.data())
def test_hostile_query_after_a_valid_client(idp: Harness, rp: RP, data: st.DataObject) -> None:
    """A valid client and redirect_uri first, then bad escapes and hostile pairs."""
    query = data.draw(query_strings(base_params(rp)))
    assert_page(idp.http.get("/authorize?" + query), (rp.redirect_uri,))


@given(body=form_bodies(), content_type=content_types)
def test_hostile_post_bodies(idp: Harness, rp: RP, body: bytes, content_type: str) -> None:
    """OIDC Core §3.1.2.1 POST: any body of any type."""
    response = idp.http.post("/authorize", content=body, headers={"content-type": content_type})
    assert_page(response, (rp.redirect_uri,))
