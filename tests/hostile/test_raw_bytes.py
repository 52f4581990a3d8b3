"""Raw bytes that are not UTF-8 in the query string and in header values, at every endpoint:
a 4xx in the endpoint's form (or an ordinary answer), never a 5xx."""

from __future__ import annotations

from hypothesis import given, strategies as st

from tests.helpers import RP, Harness
from tests.hostile.raw_asgi import RawResponse, send_raw
from tests.hostile.strategies import BACK_CHANNEL_PATHS_FOR_TESTS, raw_bytes

GETS = ["/authorize", "/login", "/consent", "/logout", "/account", "/", "/authorize/resume"]
POSTS = ["/token", "/revoke", "/introspect", "/login", "/consent", "/logout", "/authorize"]
raw_queries = st.builds(lambda a, b: a + b"=" + b, raw_bytes, raw_bytes) | raw_bytes


def assert_answer(path: str, response: RawResponse) -> None:
    assert response.status < 500, (path, response)
    if response.status < 400 or path == "/":
        return
    kind = response.headers.get("content-type", "")
    if path in BACK_CHANNEL_PATHS_FOR_TESTS or path == "/userinfo":
        assert kind.startswith("application/json"), (path, response)
    else:
        assert kind.startswith("text/html"), (path, response)


@given(path=st.sampled_from([*GETS, "/userinfo"]), query=raw_queries)
def test_raw_query_bytes(idp: Harness, rp: RP, path: str, query: bytes) -> None:
    """A query string whose bytes are not UTF-8: the page, or its error page, or a 4xx."""
    prefix = f"client_id={rp.client_id}&response_type=code&".encode()
    headers = [(b"authorization", b"Bearer \xff.\xfe.x")] if path == "/userinfo" else []
    assert_answer(path, send_raw(idp.http, "GET", path, prefix + query, headers))


@given(
    path=st.sampled_from(POSTS),
    name=st.sampled_from([b"authorization", b"cookie", b"accept-language", b"origin"]),
    value=raw_bytes,
)
def test_raw_header_bytes(idp: Harness, path: str, name: bytes, value: bytes) -> None:
    """Header values that are not UTF-8 (HTTP allows obs-text): still a 4xx in form."""
    headers = [(b"content-type", b"application/x-www-form-urlencoded"), (name, value)]
    assert_answer(path, send_raw(idp.http, "POST", path, b"", headers, b"grant_type=x&token=y"))


def test_raw_query_regression(idp: Harness, rp: RP) -> None:
    """The bytes that crashed /authorize, /logout and /userinfo (and their error handler,
    which built request.url): RFC 3986 queries are percent-encoded UTF-8; anything else is a
    bad request, shown as a page or RFC 6750 §3 challenge."""
    query = f"client_id={rp.client_id}&state=\xff".encode("latin-1")
    for path in ("/authorize", "/logout"):
        response = send_raw(idp.http, "GET", path, query)
        assert response.status == 400, (path, response)
        assert response.headers["content-type"].startswith("text/html")
    response = send_raw(idp.http, "GET", "/userinfo", query, [(b"authorization", b"Bearer \xff")])
    assert response.status == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
