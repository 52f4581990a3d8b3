"""Issue 15, security events: a sign-in from a new device (the browser's signed device cookie
does not name the user) by a user who has signed in before is `login.new_device`, with
`new_address` when no sign-in of theirs came from that /24 (IPv6 /56) in 90 days; the person
sees it on /account."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from idp.authn.new_device import network_of
from tests.conftest import ISSUER, make_settings, migrated_app
from tests.helpers import Harness
from tests.token_helpers import audit_events, json_of, sql

EVENT = "login.new_device"


@pytest.fixture
def proxied(database_url: str, tmp_path: Path) -> Iterator[Harness]:
    """Behind a trusted proxy: X-Forwarded-For gives each request's address."""
    settings = make_settings(database_url, tmp_path, forwarded_allow_ips="testclient")
    app = migrated_app(settings)
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as http:
        yield Harness(app, http)
    app.state.runtime.engine.dispose()


def browser(idp: Harness, address: str) -> Harness:
    """Another browser (no cookies), at `address`."""
    http = TestClient(idp.app, base_url=ISSUER, follow_redirects=False)
    http.headers["X-Forwarded-For"] = address
    return Harness(idp.app, http)


def signed_in(visitor: Harness) -> None:
    assert visitor.login().status_code == 303


def new_devices(idp: Harness) -> list[dict[str, Any]]:
    return [{"user_id": u, **json_of(d)} for _, u, d in audit_events(idp, EVENT)]


def test_the_first_sign_in_ever_is_not_a_new_device(proxied: Harness) -> None:
    proxied.user()
    signed_in(browser(proxied, "198.51.100.7"))
    assert new_devices(proxied) == []


def test_the_same_browser_again_is_not_a_new_device(proxied: Harness) -> None:
    proxied.user()
    home = browser(proxied, "198.51.100.7")
    signed_in(home)
    home.http.cookies.delete("__Host-idp_session")  # signed out, the device cookie stays
    home.http.cookies.delete("idp_session")
    signed_in(home)
    assert new_devices(proxied) == []


def test_another_browser_on_the_same_network_is_a_new_device(proxied: Harness) -> None:
    user_id = proxied.user()
    signed_in(browser(proxied, "198.51.100.7"))
    signed_in(browser(proxied, "198.51.100.200"))  # the same /24: the same line at home
    assert new_devices(proxied) == [{"user_id": user_id}]


def test_another_browser_on_another_network_is_a_new_address(proxied: Harness) -> None:
    user_id = proxied.user()
    signed_in(browser(proxied, "198.51.100.7"))
    elsewhere = browser(proxied, "203.0.113.9")
    signed_in(elsewhere)
    assert new_devices(proxied) == [{"user_id": user_id, "new_address": True}]
    account = elsewhere.http.get("/account")
    assert account.status_code == 200 and "Signed in from a new device" in account.text


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("198.51.100.7", "198.51.100.0/24"),
        ("::ffff:198.51.100.7", "198.51.100.0/24"),
        ("2001:db8:1234:5678::1", "2001:db8:1234:5600::/56"),
        ("testclient", None),
        (None, None),
    ],
)
def test_networks_are_a_v4_slash_24_and_a_v6_slash_56(
    address: str | None, network: str | None
) -> None:
    found = network_of(address)
    assert (str(found) if found else None) == network


def test_another_browser_at_the_same_address_is_a_new_device(proxied: Harness) -> None:
    user_id = proxied.user()
    signed_in(browser(proxied, "198.51.100.7"))
    signed_in(browser(proxied, "198.51.100.7"))
    assert new_devices(proxied) == [{"user_id": user_id}]


def test_an_address_last_used_over_90_days_ago_is_a_new_address(proxied: Harness) -> None:
    """The window holds for the very same address too, not only for its network."""
    user_id = proxied.user()
    signed_in(browser(proxied, "198.51.100.7"))
    sql(
        proxied,
        "UPDATE audit_events SET at = at - :s WHERE event = 'login.succeeded'",
        s=91 * 86400,
    )
    signed_in(browser(proxied, "198.51.100.7"))
    assert new_devices(proxied) == [{"user_id": user_id, "new_address": True}]
