"""Strategies for hostile input, and the checks every answer must pass."""

from __future__ import annotations

import base64
from urllib.parse import quote, urlsplit

import httpx
from hypothesis import strategies as st

from tests.conftest import ISSUER

# Defaults of IDP_MAX_PARAM_BYTES and IDP_MAX_BODY_BYTES (idp/settings.py).
MAX_PARAM = 4096
MAX_BODY = 16 * 1024

# RFC 6749 §5.2's codes, with RFC 7009 §2.2.1's unsupported_token_type; server_error is not
# among them on purpose: it is a 5xx.
BACK_CHANNEL_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        # Too many failed authentications of one client from one address (authn.throttle).
        "temporarily_unavailable",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "unsupported_token_type",
    }
)
OAUTH_NAMES = [
    "grant_type", "code", "redirect_uri", "code_verifier", "client_id", "client_secret",
    "client_assertion", "client_assertion_type", "refresh_token", "scope", "token",
    "token_type_hint", "response_type", "state", "nonce", "prompt", "max_age", "id_token_hint",
    "code_challenge", "code_challenge_method", "response_mode", "request", "request_uri",
    "ui_locales", "login_hint", "acr_values", "interaction", "csrf", "email", "password",
    "decision", "return_to", "post_logout_redirect_uri", "logout_hint", "access_token",
]  # fmt: skip
SPECIALS = [
    "", "\x00", "\ufeff", '"', "'", "\\", "\r\n", "\x7f", "\x1b[31m", "<script>", "%", "%ED%A0%80",
    "%FF", "%00", "a" * (MAX_PARAM + 1), "é" * (MAX_PARAM // 2 + 1), "code", "openid", "S256",
    "https://evil.example/", "//evil.example", "javascript:alert(1)",
]  # fmt: skip

# Any character UTF-8 can carry (lone surrogates cannot be sent as text; see raw bytes below).
any_char = st.characters(exclude_categories=["Cs"])
control = st.characters(min_codepoint=0, max_codepoint=0x1F) | st.sampled_from("\x7f\ufeff\u2028")
hostile_text = (
    st.text(any_char, max_size=40)
    | st.text(control | st.sampled_from("\"'\\<>&%+=;"), max_size=20)
    | st.sampled_from(SPECIALS)
)
names = st.sampled_from(OAUTH_NAMES) | st.text(any_char, min_size=1, max_size=10)
# Lists, so a name may repeat.
pairs = st.lists(st.tuples(names, hostile_text), max_size=8)


def encode_pairs(items: list[tuple[str, str]]) -> str:
    """application/x-www-form-urlencoded, keeping repeats and order."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in items)


# Percent escapes of bytes that are not UTF-8 (lone surrogate, bare continuation, 0xFF).
bad_escapes = st.sampled_from(["%ED%A0%80", "%FF", "%C3", "%80", "%F4%90%80%80", "%C0%AF"])
raw_bytes = st.binary(max_size=64) | st.sampled_from(
    [b"\xff\xfe", b"\xed\xa0\x80", b"a=\xff", b"token=\xc3", b"\x00=\x00", b"=&&=", b"%"]
)


@st.composite
def form_bodies(draw: st.DrawFn) -> bytes:
    """A form body: well-formed with hostile values, with bad escapes, raw bytes, or too big."""
    kind = draw(st.sampled_from(["pairs", "escapes", "raw", "huge", "many"]))
    if kind == "pairs":
        return encode_pairs(draw(pairs)).encode()
    if kind == "escapes":
        return f"{draw(names)}={draw(bad_escapes)}".encode()
    if kind == "raw":
        return draw(raw_bytes)
    if kind == "huge":
        return b"token=" + b"a" * draw(st.sampled_from([MAX_PARAM + 1, MAX_BODY + 1]))
    return "&".join(f"p{i}=v" for i in range(draw(st.integers(60, 200)))).encode()


content_types = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=latin-1",
        "APPLICATION/X-WWW-FORM-URLENCODED",
        "application/json",
        "multipart/form-data; boundary=x",
        "text/plain",
        "",
        "application/x-www-form-urlencoded\x7f",
    ]
)


@st.composite
def basic_headers(draw: st.DrawFn) -> str:
    """An Authorization header: Basic with non-base64, non-UTF-8, no colon or empty parts."""
    kind = draw(st.sampled_from(["bytes", "text", "junk", "scheme"]))
    if kind == "bytes":
        raw = draw(raw_bytes | st.sampled_from([b":", b"id:", b":secret", b"no-colon"]))
        return "Basic " + base64.b64encode(raw).decode()
    if kind == "text":
        user, password = draw(hostile_text), draw(hostile_text)
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    if kind == "junk":
        return "Basic " + draw(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E)))
    return draw(st.sampled_from(["Basic", "basic ", "Bearer", "Bearer x y", "Digest a=b", " "]))


def query_strings(extra: list[tuple[str, str]] | None = None) -> st.SearchStrategy[str]:
    """A query string: hostile pairs (after `extra`), or a bad percent escape."""
    good = pairs.map(lambda items: encode_pairs((extra or []) + items))
    bad = st.tuples(names, bad_escapes).map(
        lambda kv: encode_pairs(extra or []) + f"&{quote(kv[0], safe='')}={kv[1]}"
    )
    return good | bad


# --- checks ---------------------------------------------------------------------------------------


def assert_back_channel(response: httpx.Response) -> None:
    """RFC 6749 §5.2: an error is JSON with an `error` from §5.2's list, never a 5xx."""
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code < 400:
        return
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert body.get("error") in BACK_CHANNEL_ERRORS, body
    assert isinstance(body.get("error_description", ""), str), body
    if response.status_code == 401:
        assert response.headers["www-authenticate"].startswith("Basic"), response.headers
    if body["error"] == "temporarily_unavailable":  # the client throttle: RFC 6585 §4
        assert response.status_code == 429, response.status_code
        assert int(response.headers["retry-after"]) >= 1, response.headers


def assert_bearer(response: httpx.Response) -> None:
    """RFC 6750 §3: a 401 carries a Bearer challenge; every error is a 4xx."""
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code == 401:
        assert response.headers["www-authenticate"].startswith("Bearer"), response.headers
    if response.status_code >= 400:
        assert response.json()["error"] in {"invalid_request", "invalid_token"}, response.text


def assert_page(response: httpx.Response, allowed_redirects: tuple[str, ...] = ()) -> None:
    """A person sees an HTML page, or is redirected to this server's own pages or to a
    redirect_uri registered for the client (RFC 6749 §4.1.2.1) -- never anywhere else."""
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code in (301, 302, 303, 307, 308):
        assert_safe_location(response.headers["location"], allowed_redirects)
        return
    assert response.headers["content-type"].startswith("text/html"), response.headers


def assert_safe_location(location: str, allowed: tuple[str, ...]) -> None:
    parts = urlsplit(location)
    if not parts.scheme and not parts.netloc:
        assert location.startswith("/") and not location.startswith(("//", "/\\")), location
        return
    if location.startswith(ISSUER + "/"):
        return
    assert any(
        location == uri or location.startswith(uri + "?") for uri in allowed
    ), f"redirect to an unregistered URI: {location}"


BACK_CHANNEL_PATHS_FOR_TESTS = frozenset({"/token", "/revoke", "/introspect"})
