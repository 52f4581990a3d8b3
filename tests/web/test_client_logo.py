"""GET /clients/{client_id}/logo: a client's logo (OIDC Registration §2, logo_uri) served from
the IdP's own origin, so pages keep `img-src 'self'` and no browser contacts the client's host."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from idp.admin.clients import remove
from tests.helpers import RP, Harness
from tests.images import JPEG, png
from tests.slow_host import serve_slow

DIGEST = hashlib.sha256(png()).hexdigest()


@pytest.fixture
def with_logo(idp: Harness) -> Iterator[RP]:
    with serve_slow("ok", body=png(), content_type="image/png") as host:
        yield idp.client(logo_uri=host.url + "logo.png")


def logo_path(rp: RP) -> str:
    return f"/clients/{rp.client_id}/logo?v={DIGEST}"


def test_the_logo_is_served_with_its_type_and_digest(idp: Harness, with_logo: RP) -> None:
    """The stored bytes, with the type their signature gave, cacheable for a day under an
    ETag that is their SHA-256."""
    response = idp.http.get(logo_path(with_logo))
    assert response.status_code == 200
    assert response.content == png()
    assert response.headers["content-type"] == "image/png"
    assert response.headers["etag"] == f'"{DIGEST}"'
    assert response.headers["cache-control"] == "public, max-age=86400"


def test_the_logo_cannot_run_as_a_document(idp: Harness, with_logo: RP) -> None:
    """Opened on its own, the image is sandboxed with no sources, never sniffed as another type,
    and shown inline rather than downloaded."""
    headers = idp.http.get(logo_path(with_logo)).headers
    assert headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-disposition"] == "inline"


def test_a_jpeg_logo_keeps_its_own_type(idp: Harness) -> None:
    """The content type is the one stored for this logo, not a fixed one."""
    with serve_slow("ok", body=JPEG, content_type="application/octet-stream") as host:
        rp = idp.client(logo_uri=host.url)
    response = idp.http.get(f"/clients/{rp.client_id}/logo")
    assert (response.headers["content-type"], response.content) == ("image/jpeg", JPEG)


@pytest.mark.parametrize(
    "if_none_match", [f'"{DIGEST}"', f'W/"{DIGEST}"', f'"other", "{DIGEST}"', "*"]
)
def test_a_cached_copy_is_answered_304(idp: Harness, with_logo: RP, if_none_match: str) -> None:
    """RFC 9110 §13.1.2 and §15.4.5: a matching If-None-Match (weak comparison, or "*") is a
    304 without the image, with the ETag and Cache-Control a 200 would have."""
    response = idp.http.get(logo_path(with_logo), headers={"If-None-Match": if_none_match})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == f'"{DIGEST}"'
    assert response.headers["cache-control"] == "public, max-age=86400"


def test_a_stale_copy_gets_the_image(idp: Harness, with_logo: RP) -> None:
    """RFC 9110 §13.1.2: an If-None-Match that names other tags is a full 200."""
    response = idp.http.get(logo_path(with_logo), headers={"If-None-Match": '"0123"'})
    assert (response.status_code, response.content) == (200, png())


def test_an_unknown_client_or_one_without_a_logo_is_404(idp: Harness) -> None:
    """No such client, or a client registered without logo_uri: a short plain 404."""
    plain = idp.client()
    for client_id in ("no-such-client", plain.client_id):
        response = idp.http.get(f"/clients/{client_id}/logo")
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/plain")
        assert len(response.content) < 100


def test_a_removed_clients_logo_is_404(idp: Harness, with_logo: RP) -> None:
    """The logo goes with its client."""
    with idp.runtime.sessions.begin() as db:
        assert remove(db, with_logo.client_id)
    assert idp.http.get(logo_path(with_logo)).status_code == 404


def test_an_overlong_client_id_is_404_without_a_query(idp: Harness, with_logo: RP) -> None:
    """A client_id is at most 64 characters: a longer one is answered before the database is
    asked anything."""
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = idp.runtime.engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert idp.http.get(f"/clients/{'a' * 65}/logo").status_code == 404
        assert statements == []
        assert idp.http.get(f"/clients/{'a' * 64}/logo").status_code == 404
        assert statements  # the same listener sees the query of a 64-character id
    finally:
        event.remove(engine, "before_cursor_execute", seen)
