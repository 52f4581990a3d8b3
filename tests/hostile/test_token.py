"""POST /token under hostile input: RFC 6749 §5.2 JSON errors (400/401), never a 5xx."""

from __future__ import annotations

from hypothesis import example, given, strategies as st

from tests.helpers import RP, Harness
from tests.hostile.strategies import (
    assert_back_channel,
    basic_headers,
    content_types,
    encode_pairs,
    form_bodies,
    hostile_text,
    pairs,
)

GRANTS = st.sampled_from(["authorization_code", "refresh_token", "client_credentials"])


@given(body=form_bodies(), content_type=content_types, auth=st.none() | basic_headers())
def test_any_body_gets_an_oauth_error(
    idp: Harness, body: bytes, content_type: str, auth: str | None
) -> None:
    """Garbage, non-UTF-8, repeated, oversized bodies of any content type, with or without
    hostile Basic credentials: a §5.2 error."""
    headers = {"content-type": content_type, **({"authorization": auth} if auth else {})}
    assert_back_channel(idp.http.post("/token", content=body, headers=headers))


@given(grant=GRANTS | hostile_text, extra=pairs, use_auth=st.booleans())
def test_each_grant_with_hostile_parameters(
    idp: Harness, rp: RP, grant: str, extra: list[tuple[str, str]], use_auth: bool
) -> None:
    """Every grant type, authenticated as a real client, with hostile parameters beside it."""
    body = encode_pairs([("grant_type", grant), *extra])
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if use_auth:
        headers.update(rp.auth())
    assert_back_channel(idp.http.post("/token", content=body.encode(), headers=headers))


@given(auth=basic_headers(), grant=GRANTS)
@example(auth="Basic ADow", grant="authorization_code")  # client id "\x00": PostgreSQL's NUL
@example(auth="Basic 4oCoOng=", grant="client_credentials")  # client id U+2028
def test_hostile_basic_credentials(idp: Harness, auth: str, grant: str) -> None:
    """RFC 6749 §2.3.1: credentials that are not base64, not UTF-8, lack a colon or a part,
    or name a client id that is not printable ASCII (Appendix A.1).
    (Each is still read after the client throttle's budget for this address is used up: the
    answer becomes 429, the credentials are parsed all the same.)"""
    response = idp.http.post(
        "/token", data={"grant_type": grant}, headers={"authorization": auth}
    )
    assert_back_channel(response)
    assert response.status_code in (400, 401, 429), response.text
