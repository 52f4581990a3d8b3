"""idp.outbound.fetch_image, which fetches a client's logo (OIDC Registration §2, logo_uri),
against hosts on 127.0.0.1 (tests.slow_host): the bytes decide what an image is, never the
Content-Type header, and only whole PNG, JPEG and WebP images within the size cap come back."""

from __future__ import annotations

import pytest

from idp.outbound import LOGO_MAX_BYTES, Image, OutboundError, fetch_image
from tests.images import GIF, HTML, JPEG, SVG, WEBP, png
from tests.slow_host import serve_slow
from tests.test_outbound import LOOPBACK

NOT_AN_IMAGE = "not a PNG, JPEG or WebP image"


def refused(url: str) -> str:
    with pytest.raises(OutboundError) as raised:
        fetch_image(url, LOOPBACK)
    return str(raised.value)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(png(), "image/png"), (JPEG, "image/jpeg"), (WEBP, "image/webp")],
    ids=["png", "jpeg", "webp"],
)
def test_png_jpeg_and_webp_are_fetched(body: bytes, content_type: str) -> None:
    """OIDC Registration §2 logo_uri: the image is fetched with an Accept header naming the
    three types this server stores, and comes back with the type its bytes say."""
    with serve_slow("ok", body=body, content_type=content_type) as host:
        assert fetch_image(host.url + "logo", LOOPBACK) == Image(content_type, body)
    (seen,) = host.requests
    assert (seen.method, seen.path) == ("GET", "/logo")
    assert seen.headers["accept"] == "image/png, image/jpeg, image/webp"


def test_a_png_labelled_text_html_is_a_png() -> None:
    """The magic bytes decide: a PNG served as text/html is stored as image/png."""
    with serve_slow("ok", body=png(), content_type="text/html") as host:
        assert fetch_image(host.url, LOOPBACK).content_type == "image/png"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (SVG, "image/svg+xml"),  # an SVG can carry script
        (HTML, "image/png"),  # labelled an image, it is a page
        (GIF, "image/gif"),
        (b"", "image/png"),
        (b"\x89PNG", "image/png"),  # shorter than the signature
        (b"RIFF\x04\x00\x00\x00WAVE", "image/webp"),  # RIFF, but not WebP
    ],
    ids=["svg", "html-as-png", "gif", "empty", "short", "riff-wave"],
)
def test_anything_else_is_refused_whatever_its_label(body: bytes, content_type: str) -> None:
    """Only the PNG, JPEG and WebP signatures are accepted, whatever the Content-Type says."""
    with serve_slow("ok", body=body, content_type=content_type) as host:
        assert refused(host.url) == NOT_AN_IMAGE


@pytest.mark.parametrize(
    "body",
    [png()[:-1], png()[:40], JPEG[:-2], WEBP[:-1], png() + b"\x00"],
    ids=["png-no-crc", "png-no-iend", "jpeg-no-eoi", "webp-short", "png-trailing-byte"],
)
def test_an_image_that_does_not_end_where_its_format_says_is_refused(body: bytes) -> None:
    """A body cut short (or padded) is not stored: pages would show a broken image."""
    with serve_slow("ok", body=body, content_type="image/png") as host:
        assert refused(host.url) == "incomplete image"


# The size cap


def test_a_png_of_exactly_the_cap_is_accepted_and_one_byte_more_is_refused() -> None:
    """The cap is inclusive: a logo of LOGO_MAX_BYTES (256 KiB) is fetched, one byte more is not."""
    with serve_slow("ok", body=png(LOGO_MAX_BYTES)) as host:
        assert len(fetch_image(host.url, LOOPBACK).body) == LOGO_MAX_BYTES
        host.body = png(LOGO_MAX_BYTES + 1)
        assert refused(host.url) == "too large"


@pytest.mark.parametrize(
    "framing",
    [{}, {"content_length": False}, {"chunked": True}],
    ids=["content-length", "until-close", "chunked"],
)
def test_an_oversized_png_is_refused_however_it_is_framed(framing: dict[str, bool]) -> None:
    """A PNG over 256 KiB is refused, whether announced, ended by closing, or sent in chunks
    (the streaming cap counts the bytes themselves)."""
    with serve_slow("ok", body=png(LOGO_MAX_BYTES + 64 * 1024), **framing) as host:
        assert refused(host.url) == "too large"


def test_a_chunked_png_under_the_cap_is_accepted() -> None:
    """Chunked transfer coding is read like any other body (so the refusal above is the cap's)."""
    with serve_slow("ok", body=png(100 * 1024), chunked=True) as host:
        assert fetch_image(host.url, LOOPBACK).body == png(100 * 1024)


def test_a_content_length_under_the_truth_lets_no_more_bytes_in() -> None:
    """A host that announces 1,000 bytes and sends 320 KiB: only the announced bytes are read
    (not "too large": the rest never reaches us), and that prefix is no whole image."""
    with serve_slow("ok", body=png(LOGO_MAX_BYTES + 64 * 1024), length=1000) as host:
        assert refused(host.url) == "incomplete image"


def test_a_content_length_over_the_cap_is_refused_before_the_body() -> None:
    """A Content-Length over the cap refuses the logo on the announcement alone, even when the
    body that follows is a small image."""
    with serve_slow("ok", body=png(), length=LOGO_MAX_BYTES + 1) as host:
        assert refused(host.url) == "too large"


# Statuses


def test_a_redirect_is_not_followed() -> None:
    """A 302 is an error; the host it points at is never asked."""
    with (
        serve_slow("ok", body=png()) as target,
        serve_slow("redirect", location=target.url) as host,
    ):
        assert refused(host.url) == "HTTP 302"
    assert target.connections == 0


@pytest.mark.parametrize("status", [204, 404, 500])
def test_any_status_but_200_is_refused(status: int) -> None:
    """Only a 200 carries an image, even when the body of another status is one."""
    with serve_slow("status", status=status, body=png(), content_type="image/png") as host:
        assert refused(host.url) == f"HTTP {status}"


def test_a_host_that_never_answers_is_cut_off_at_the_deadline() -> None:
    """The deadline of every outbound request holds here too."""
    with serve_slow("hang") as host, pytest.raises(OutboundError, match="timed out"):
        fetch_image(host.url, LOOPBACK, deadline=0.3)
