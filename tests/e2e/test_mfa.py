"""Two-step verification in real Chromium with the keyboard alone (WCAG 2.1.1 Keyboard):
setting up an authenticator app on /account/mfa, then signing in with a code, under the
pages' real CSP with no console errors."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pyotp
import pytest

from tests.e2e.conftest import RunningServer
from tests.e2e.page_checks import Visit, visit
from tests.e2e.test_pages import VARIANTS, new_user

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.e2e


def tab_to(v: Visit, selector: str, limit: int = 30) -> None:
    """Press Tab until the element `selector` names has the focus (as a keyboard user moves)."""
    for _ in range(limit):
        v.page.keyboard.press("Tab")
        if v.page.evaluate("(s) => document.activeElement?.matches(s) ?? false", selector):
            return
    raise AssertionError(f"{selector} is not reachable with Tab on {v.page.url}")


def type_and_submit(v: Visit, selector: str, text: str) -> None:
    tab_to(v, selector)
    v.page.keyboard.type(text)
    with v.page.expect_navigation():
        v.page.keyboard.press("Enter")  # submits the field's form


def keyboard_sign_in(v: Visit, email: str) -> None:
    v.page.goto(v.url("/login"))
    tab_to(v, "input[autocomplete~=username]")
    v.page.keyboard.type(email)
    type_and_submit(v, "input[autocomplete~=current-password]", v.server.password)


def test_set_up_an_authenticator_app_and_sign_in_with_the_keyboard(
    chromium: Browser, server: RunningServer
) -> None:
    email = new_user_for(chromium, server)
    with visit(chromium, server, VARIANTS[-1]) as v:
        keyboard_sign_in(v, email)
        assert urlsplit(v.page.url).path == "/"
        v.page.goto(v.url("/account/mfa"))
        tab_to(v, "a[href='/account/mfa/totp']")
        with v.page.expect_navigation():
            v.page.keyboard.press("Enter")
        # "Cannot scan it?" opens with the keyboard and shows the secret as text.
        tab_to(v, "summary")
        v.page.keyboard.press("Enter")
        secret = (v.page.text_content("#totp-secret") or "").replace(" ", "")
        assert v.page.is_visible("#totp-secret") and len(secret) == 32
        type_and_submit(v, "input[autocomplete=one-time-code]", pyotp.TOTP(secret).now())
        assert v.page.locator("ul.codes li").count() == 10
        tab_to(v, "a.button-primary")
        with v.page.expect_navigation():
            v.page.keyboard.press("Enter")
        assert urlsplit(v.page.url).path == "/account/mfa"
        v.page.context.clear_cookies()
        keyboard_sign_in(v, email)
        assert urlsplit(v.page.url).path == "/login/factor"
        code = pyotp.TOTP(secret).at(int(time.time()) + 30)  # the next step
        type_and_submit(v, "input[autocomplete=one-time-code]", code)
        assert urlsplit(v.page.url).path == "/", v.page.url
        v.page.goto(v.url("/account"))
        assert "One-time code" in (v.page.text_content("main") or "")
        assert v.csp_violations() == [] and v.csp_console == []


def new_user_for(chromium: Browser, server: RunningServer) -> str:
    with visit(chromium, server, VARIANTS[-1]) as v:
        return new_user(v)
