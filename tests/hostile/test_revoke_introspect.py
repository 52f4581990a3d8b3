"""POST /revoke (RFC 7009) and /introspect (RFC 7662) under hostile input."""

from __future__ import annotations

from urllib.parse import urlencode

from hypothesis import given, strategies as st

from tests.helpers import RP, Harness
from tests.hostile.strategies import (
    MAX_BODY,
    assert_back_channel,
    basic_headers,
    content_types,
    form_bodies,
    hostile_text,
)

PATHS = st.sampled_from(["/revoke", "/introspect"])


@given(path=PATHS, body=form_bodies(), content_type=content_types, auth=st.none() | basic_headers())
def test_any_body_gets_an_oauth_error(
    idp: Harness, path: str, body: bytes, content_type: str, auth: str | None
) -> None:
    """Any body, any content type, any Basic header: 200 or a §5.2 error, never a 5xx."""
    headers = {"content-type": content_type, **({"authorization": auth} if auth else {})}
    assert_back_channel(idp.http.post(path, content=body, headers=headers))


@given(
    path=PATHS,
    token=hostile_text.filter(bool) | st.integers(1, MAX_BODY - 64).map(lambda n: "t" * n),
    hint=st.none() | st.sampled_from(["access_token", "refresh_token"]) | hostile_text,
)
def test_any_token_string_is_unknown_not_an_error(
    idp: Harness, rp: RP, path: str, token: str, hint: str | None
) -> None:
    """RFC 7009 §2.2: 200 for an invalid token; RFC 7662 §2.2: {"active": false} for one the
    server cannot recognise -- of any length the body can hold, with any token_type_hint."""
    data = {"token": token, **({"token_type_hint": hint} if hint is not None else {})}
    response = idp.http.post(path, data=data, headers=rp.auth())
    assert_back_channel(response)
    # A body past IDP_MAX_BODY_BYTES (the long token with a hint that percent-encodes long)
    # is a plain invalid_request; one that fits is read, and the token is not recognised.
    fits = len(urlencode(data).encode()) <= MAX_BODY
    if fits and (hint is None or (len(hint.encode()) <= 4096 and "\x00" not in hint)):
        assert response.status_code == 200, response.text
        if path == "/introspect":
            assert response.json() == {"active": False}
