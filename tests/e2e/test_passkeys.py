"""Passkeys end to end in real Chromium with its virtual authenticator (CDP WebAuthn domain):
register one from /account/mfa, use it as the second factor after the password, sign in with
it and no password, and remove it; all under the pages' real CSP (script-src 'self' and the
one static script), with no console error.

WebAuthn needs a domain, so this server's issuer is http://localhost:PORT (LIBRARY-NOTES: an IP
address is refused as RP ID); it still listens on 127.0.0.1 only.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import Cli, RunningServer, free_port, running, server_env
from tests.e2e.page_checks import VIEWPORT_HEIGHT, Variant, Visit, visit

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.e2e

EMAIL = "passkeys@example.com"


@pytest.fixture(scope="module")
def localhost_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("idp-passkeys")
    port = free_port()
    issuer = f"http://localhost:{port}"
    cli = Cli(server_env(tmp, issuer), tmp)
    cli.run("migrate")
    password = "e2e " + secrets.token_urlsafe(18)
    cli.json("users", "create", EMAIL, "--password-stdin", "--json", stdin=password + "\n")
    log_path = tmp / "server.log"
    with running(
        "idp serve",
        [sys.executable, "-m", "idp", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cli.env,
        tmp,
        f"http://127.0.0.1:{port}/.well-known/openid-configuration",
        log_path,
    ) as process:
        yield RunningServer(
            issuer=issuer,
            port=port,
            tmp=tmp,
            log_path=log_path,
            process=process,
            cli=cli,
            email=EMAIL,
            password=password,
            client_id="",
            client_secret="",
        )


def add_authenticator(v: Visit) -> None:
    """A platform authenticator with resident keys and user verification (a phone or laptop
    passkey) that answers without a person touching it."""
    cdp = v.page.context.new_cdp_session(v.page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )


def password_sign_in(v: Visit) -> None:
    v.page.goto(v.url("/login"))
    v.page.fill("input[autocomplete~=username]", v.server.email)
    v.page.fill("input[autocomplete~=current-password]", v.server.password)
    with v.page.expect_navigation():
        v.page.click("form[action='/login'] button[type=submit]")


def path(v: Visit) -> str:
    return urlsplit(v.page.url).path


def test_register_use_and_remove_a_passkey(
    chromium: Browser, localhost_server: RunningServer
) -> None:
    with visit(chromium, localhost_server, Variant("light", 1280)) as v:
        add_authenticator(v)
        password_sign_in(v)
        assert path(v) == "/"
        # Register from the account page.
        v.page.goto(v.url("/account/mfa/passkey"))
        v.page.fill("#name", "Laptop")
        with v.page.expect_navigation():
            v.page.click("form[data-webauthn=create] button[type=submit]")
        assert v.page.locator("ul.codes li").count() == 10, v.page.content()
        v.page.goto(v.url("/account/mfa"))
        assert "Laptop" in (v.page.text_content("ul.passkeys") or "")
        # The second factor after the password.
        v.page.context.clear_cookies()
        password_sign_in(v)
        assert path(v) == "/login/factor"
        with v.page.expect_navigation():
            v.page.click("form[data-webauthn=get] button[type=submit]")
        assert path(v) == "/", v.page.url
        v.page.goto(v.url("/account"))
        assert "Passkey" in (v.page.text_content("main") or "")
        # No password at all: the login page's passkey button.
        v.page.context.clear_cookies()
        v.page.goto(v.url("/login"))
        button = v.page.locator("form[action='/login/passkey'] button")
        assert button.is_visible()
        with v.page.expect_navigation():
            button.click()
        assert path(v) == "/login/passkey"
        with v.page.expect_navigation():
            v.page.click("form[data-webauthn=get] button[type=submit]")
        assert path(v) == "/", v.page.url
        # And remove it again: the account has no second factor left.
        v.page.goto(v.url("/account/mfa"))
        with v.page.expect_navigation():
            v.page.click("ul.passkeys form button[type=submit]")
        assert "removed" in (v.page.text_content("[role=status]") or "")
        assert v.page.locator("ul.passkeys").count() == 0
        assert v.csp_violations() == [] and v.csp_console == []
        assert v.console_errors == [] and v.page_errors == []


def test_without_webauthn_the_passkey_button_stays_hidden(
    chromium: Browser, localhost_server: RunningServer
) -> None:
    """A browser without WebAuthn (here: the API removed before the page runs) sees no
    passkey button; the password form works as ever."""
    context = chromium.new_context(viewport={"width": 1280, "height": VIEWPORT_HEIGHT})
    try:
        context.add_init_script("delete window.PublicKeyCredential")
        page = context.new_page()
        page.goto(f"{localhost_server.issuer}/login")
        assert not page.locator("form[action='/login/passkey']").is_visible()
        assert page.locator("input[autocomplete~=current-password]").is_visible()
    finally:
        context.close()
