"""Issue 13, the admin UI's whole journey in real Chromium (Debian's, driven by Playwright):
an admin signs in with password and TOTP; registers a service client and copies its secret
from the page; the client gets a token with client credentials; the admin rotates the secret
and edits the client; a client registered without PKCE shows a linter finding, which
disappears once the admin turns PKCE back on. No page logs a console error."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import pyotp
import pytest

from tests.e2e.conftest import RunningServer
from tests.e2e.page_checks import Visit, visit
from tests.e2e.test_pages import VARIANTS, new_user

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.e2e


def enrol_totp(server: RunningServer, email: str) -> str:
    """An authenticator app for the user, set up in the server's database (sealed with the
    server's own key-encryption key); its secret."""
    from idp.audit.chain import write_sessions
    from idp.authn import mfa
    from idp.db.engine import make_engine
    from idp.keys.kek import load_key_encryption_key
    from idp.security.secrets import Sealer
    from idp.store import users
    from tests.conftest import make_settings

    settings = make_settings(
        server.cli.env["IDP_DATABASE_URL"],
        server.tmp,
        key_encryption_key=None,
        key_encryption_key_file=server.tmp / "kek",
    )
    sealer = Sealer(load_key_encryption_key(settings))
    engine = make_engine(settings)
    try:
        with write_sessions(engine, settings).begin() as db:
            user = users.by_email(db, email)
            assert user is not None
            secret = mfa.start_totp(db, sealer, user, "E2E").secret
            previous = pyotp.TOTP(secret).at(time.time() - mfa.TOTP_PERIOD)
            assert mfa.confirm_totp(db, sealer, user, previous, None)
    finally:
        engine.dispose()
    return secret


def sign_in_to_admin(v: Visit, email: str, secret: str) -> None:
    v.page.goto(v.url("/admin"))
    assert urlsplit(v.page.url).path == "/login"
    v.page.fill("input[autocomplete~=username]", email)
    v.page.fill("input[autocomplete~=current-password]", v.server.password)
    with v.page.expect_navigation():
        v.page.keyboard.press("Enter")
    assert urlsplit(v.page.url).path == "/login/factor", v.page.url
    v.page.fill("input[autocomplete=one-time-code]", pyotp.TOTP(secret).now())
    with v.page.expect_navigation():
        v.page.keyboard.press("Enter")
    assert urlsplit(v.page.url).path == "/admin", v.page.url


def submit(v: Visit, selector: str = "main form button[type=submit]") -> None:
    with v.page.expect_navigation():
        v.page.click(selector)


def copied_secret(v: Visit) -> str:
    """Press the copy button and read what it put on the clipboard."""
    shown = v.page.input_value("#client-secret")
    v.page.click("button[data-copy=client-secret]")
    v.page.wait_for_function(
        "() => document.querySelector('button[data-copy]').textContent === 'Copied'"
    )
    copied = str(v.page.evaluate("navigator.clipboard.readText()"))
    assert copied == shown and len(copied) >= 43
    return copied


def token_status(server: RunningServer, client_id: str, secret: str) -> int:
    response = httpx.post(
        f"{server.issuer}/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
        timeout=10.0,
    )
    return response.status_code


def register(v: Visit, name: str, *, service: bool, pkce: bool = True) -> str:
    """Fill the registration form; the new client's id (from the secret page)."""
    v.page.goto(v.url("/admin/clients/new"))
    v.page.fill("#client_name", name)
    v.page.set_checked("input[name=grant_types][value=authorization_code]", not service)
    v.page.set_checked("input[name=grant_types][value=client_credentials]", service)
    v.page.fill("#scope", "billing.read" if service else "openid")
    if not service:
        v.page.fill("#redirect_uris", "https://rp.example/callback")
    v.page.set_checked("#require_pkce", pkce)
    submit(v)
    assert urlsplit(v.page.url).path == "/admin/clients/new"  # the secret page answers the POST
    return v.page.text_content("#client-id") or ""


def test_the_admin_journey(chromium: Browser, server: RunningServer) -> None:
    with visit(chromium, server, VARIANTS[-1]) as v:
        email = new_user(v, admin=True)
        secret = enrol_totp(server, email)
        v.page.context.grant_permissions(
            ["clipboard-read", "clipboard-write"], origin=server.issuer
        )
        # 1. Password and TOTP.
        sign_in_to_admin(v, email, secret)
        # 2. A service client, its secret copied from the page.
        client_id = register(v, "Billing service", service=True)
        first = copied_secret(v)
        # 3. The client gets a token with client credentials.
        assert token_status(server, client_id, first) == 200
        # 4. The admin rotates the secret, then edits the client.
        v.page.goto(v.url(f"/admin/clients/{client_id}"))
        with v.page.expect_navigation():
            v.page.click("a[href$='/rotate']")
        submit(v)
        second = copied_secret(v)
        assert second != first and token_status(server, client_id, second) == 200
        v.page.goto(v.url(f"/admin/clients/{client_id}/edit"))
        v.page.fill("#client_name", "Billing service v2")
        submit(v)
        assert urlsplit(v.page.url).path == f"/admin/clients/{client_id}"
        assert "Billing service v2" in (v.page.text_content("h1") or "")
        # 5. Without PKCE: a linter finding, gone once PKCE is on again.
        web_id = register(v, "Web app", service=False, pkce=False)
        v.page.goto(v.url(f"/admin/clients/{web_id}"))
        assert "pkce-not-required" in (v.page.text_content("main") or "")
        v.page.goto(v.url("/admin/clients"))
        assert re.search(r"1 \(medium\)", v.page.text_content("main") or "")
        v.page.goto(v.url(f"/admin/clients/{web_id}/edit"))
        v.page.check("#require_pkce")
        submit(v)
        assert urlsplit(v.page.url).path == f"/admin/clients/{web_id}"
        assert "pkce-not-required" not in (v.page.text_content("main") or "")
        assert v.console_errors == [] and v.page_errors == []
        assert v.csp_violations() == [] and v.csp_console == []
