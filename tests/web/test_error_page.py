"""The error page (RFC 6749 §4.1.2.1: with no valid client or redirect URI, the OP tells the
person and never redirects): what went wrong, and the ways back."""

from __future__ import annotations

import re

from tests.helpers import Harness


def _links(html: str) -> list[str]:
    card = html.split('<div class="actions">', 1)[1]
    return re.findall(r'href="([^"]+)"', card.split("</div>", 1)[0])


def test_an_unknown_client_gets_a_way_home(idp: Harness) -> None:
    page = idp.http.get("/authorize", params={"client_id": "nobody"})
    assert page.status_code == 400
    assert "Unknown application" in page.text and 'role="alert"' in page.text
    assert _links(page.text) == ["/"]


def test_a_known_client_gets_a_link_to_its_home(idp: Harness) -> None:
    """When the request named a registered client, the page links back to its client_uri."""
    rp = idp.client(name="Acme", client_uri="https://acme.example/")
    page = idp.http.get(
        "/authorize", params={"client_id": rp.client_id, "redirect_uri": "https://evil.example/"}
    )
    assert page.status_code == 400
    assert "not registered for Acme" in page.text
    assert "https://evil.example" not in page.text
    assert _links(page.text) == ["https://acme.example/", "/"]


def test_technical_detail_is_shown_apart_from_the_message(idp: Harness) -> None:
    """A bad parameter: a plain message for the person, the exact reason for the developer."""
    page = idp.http.get("/authorize", params={"client_id": "x" * 10_000})
    assert page.status_code == 400
    assert "This request has a parameter that is not valid." in page.text
    assert re.search(r'<p class="detail"><code>[^<]*client_id[^<]*</code>', page.text)
