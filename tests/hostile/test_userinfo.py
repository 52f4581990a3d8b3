"""GET|POST /userinfo under hostile input: RFC 6750 §3 errors, a Bearer challenge on a 401."""

from __future__ import annotations

from hypothesis import given, strategies as st

from tests.helpers import Harness
from tests.hostile.strategies import assert_bearer, basic_headers, form_bodies, query_strings

ascii_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200)
authorizations = (
    st.none()
    | ascii_text.map(lambda t: "Bearer " + t)
    | st.sampled_from(["Bearer", "Bearer ", "bearer a.b.c", "Bearer a.b.c d", "BEARER ..."])
    | basic_headers()
    | ascii_text
)


@given(
    method=st.sampled_from(["GET", "POST"]),
    auth=authorizations,
    query=query_strings(),
    body=form_bodies(),
)
def test_any_request_gets_a_bearer_error(
    idp: Harness, method: str, auth: str | None, query: str, body: bytes
) -> None:
    """Hostile tokens, schemes, queries and bodies: 400/401/403 per RFC 6750 §3, never a 5xx."""
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if auth is not None:
        headers["authorization"] = auth
    response = idp.http.request(
        method, "/userinfo?" + query, content=body if method == "POST" else None, headers=headers
    )
    assert_bearer(response)
    assert response.status_code >= 400
