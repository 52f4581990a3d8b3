"""Every page the IdP shows a person, in real Chromium: light and dark, 320 and 1280 px wide.

Each page state is reached as a person reaches it, in a fresh browser context against the real
`idp serve` and its real Content-Security-Policy (never bypassed), and then checked for:
- WCAG 2.2 level AA as far as axe-core can tell (tags wcag2a, wcag2aa, wcag21a, wcag21aa,
  wcag22aa); axe-core is evaluated through DevTools, which the page's CSP does not govern;
  and 1.4.10 Reflow, which axe does not check: no sideways scrolling, even 320 px wide;
- no console error and no uncaught exception;
- no CSP Level 3 violation: an init script records every `securitypolicyviolation` event and
  Chromium's "Content Security Policy" console messages are a second signal; a self-check
  provokes violations on purpose, so a dead detector cannot pass every page.
A full-page screenshot of each page and variant, and axe's results as JSON, land in
test-output/ (or $IDP_TEST_OUTPUT_DIR) for people to look at; nothing compares pixels.

A new page is one more entry in PAGES: a name and a function that drives a fresh page there.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pyotp
import pytest

from tests.e2e.conftest import REDIRECT_URI, RunningServer
from tests.e2e.page_checks import (
    Variant,
    Visit,
    artefact,
    axe_results,
    problems,
    reflow_problem,
    visit,
)
from tests.e2e.test_server import pkce_pair

if TYPE_CHECKING:
    from playwright.sync_api import Browser, StorageState

pytestmark = pytest.mark.e2e

VARIANTS = [Variant(scheme, width) for scheme in ("light", "dark") for width in (320, 1280)]


# --- how a person gets to each page --------------------------------------------------------------


def fill_credentials(v: Visit, password: str) -> None:
    """Type into the sign-in form, finding the fields by purpose (WCAG 1.3.5 autocomplete
    tokens), and wait for the answer."""
    v.page.fill("input[autocomplete~=username]", v.server.email)
    v.page.fill("input[autocomplete~=current-password]", password)
    with v.page.expect_navigation():
        v.page.click("form:has(input[autocomplete~=current-password]) button[type=submit]")


def sign_in(v: Visit) -> None:
    """Sign in to the IdP itself (no interaction): the IdP sends the person home."""
    v.page.goto(v.url("/login"))
    fill_credentials(v, v.server.password)
    assert urlsplit(v.page.url).path == "/", v.page.url


def start_authorization(v: Visit, scope: str = "openid profile email") -> None:
    """The relying party's redirect: the code flow with PKCE S256, asking openid profile
    email of a client that is not trusted (so consent is asked)."""
    _, challenge = pkce_pair()
    v.page.goto(
        v.url(
            "/authorize",
            response_type="code",
            client_id=v.server.client_id,
            redirect_uri=REDIRECT_URI,
            scope=scope,
            state=secrets.token_urlsafe(16),
            nonce=secrets.token_urlsafe(16),
            code_challenge=challenge,
            code_challenge_method="S256",
        )
    )


def login(v: Visit) -> None:
    v.page.goto(v.url("/login"))


def login_in_authorization(v: Visit) -> None:
    start_authorization(v)
    v.page.wait_for_url(re.compile(r"/login\?interaction="))


def login_error(v: Visit) -> None:
    login_in_authorization(v)
    fill_credentials(v, "not the password")


def consent(v: Visit) -> None:
    start_authorization(v)  # signed in already: straight to the consent page
    v.page.wait_for_url(re.compile(r"/consent\?interaction="))


def logout_confirm(v: Visit) -> None:
    v.page.goto(v.url("/logout"))  # signed in, no id_token_hint: the IdP asks first


def signed_out(v: Visit) -> None:
    sign_in(v)  # a session of its own: confirming ends it
    logout_confirm(v)
    with v.page.expect_navigation():
        v.page.click("button[name=confirm][value=yes]")


def error_page(v: Visit) -> None:
    # An unknown client: nowhere safe to redirect to, so an error page (RFC 6749 §4.1.2.1).
    v.page.goto(
        v.url(
            "/authorize",
            response_type="code",
            client_id="no-such-client",
            redirect_uri=REDIRECT_URI,
            scope="openid",
        )
    )


def home(v: Visit) -> None:
    v.page.goto(v.url("/"))


def home_with_an_application(v: Visit) -> None:
    """A session of its own that allowed the client: the home page lists it with its
    "Remove access" form. The answer is posted with the context's own cookies but not
    followed: Chromium refuses to load the relying party's port 9. Consent is remembered, so
    only the first variant is asked. It grants `openid` alone, so the "consent" page, which
    asks for more, is still asked whatever runs first."""
    sign_in(v)  # lands on the home page
    if v.page.locator("form[action='/apps/revoke']").count():
        return
    start_authorization(v, scope="openid")
    v.page.wait_for_url(re.compile(r"/consent\?interaction="))
    form = {
        name: v.page.input_value(f"form[action='/consent'] input[name={name}]")
        for name in ("csrf_token", "interaction")
    }
    answer = v.page.request.post(
        v.url("/consent"),
        form={**form, "decision": "allow"},
        headers={"Origin": v.server.issuer},
        max_redirects=0,
    )
    assert answer.status == 303 and answer.headers["location"].startswith(REDIRECT_URI)
    home(v)


def account(v: Visit) -> None:
    v.page.goto(v.url("/account"))


def account_password(v: Visit) -> None:
    """The password form needs a sign-in of the last five minutes: a sign-in of its own, not
    the module's shared one, which may be older by the time this runs."""
    sign_in(v)
    v.page.goto(v.url("/account/password"))


def account_password_error(v: Visit) -> None:
    """The password form shown again with an error (the new passwords do not match)."""
    account_password(v)
    v.page.fill("#current_password", v.server.password)
    v.page.fill("#new_password", "one long new passphrase")
    v.page.fill("#confirm_password", "another long new passphrase")
    with v.page.expect_navigation():
        v.page.click("form[action='/account/password'] button[type=submit]")


def login_in_german(v: Visit) -> None:
    v.page.goto(v.url("/login", ui_locales="de"))


def new_user(v: Visit, *, admin: bool = False) -> str:
    """A user of its own for a page that changes the account (each variant gets one). Made
    in this process, in the server's database, as `idp users create` makes one: a CLI
    process per user cost a second and a half each."""
    from idp.admin.users import create_user
    from idp.audit.chain import write_sessions
    from idp.authn.passwords import Passwords
    from idp.db.engine import make_engine
    from idp.store import roles
    from tests.conftest import make_settings

    email = f"mfa-{secrets.token_hex(6)}@example.com"
    settings = make_settings(v.server.cli.env["IDP_DATABASE_URL"], v.server.tmp)
    engine = make_engine(settings)
    try:
        with write_sessions(engine, settings).begin() as db:
            user = create_user(
                db, Passwords(settings), settings, email=email, password=v.server.password
            )
            if admin:
                # Set up in the store, not through the approval gate: the server is shared,
                # so this may not be its first admin (tests/admin test the gate itself).
                roles.add(db, user.id, roles.ADMIN)
    finally:
        engine.dispose()
    return email


def sign_in_as(v: Visit, email: str) -> None:
    v.page.goto(v.url("/login"))
    v.page.fill("input[autocomplete~=username]", email)
    v.page.fill("input[autocomplete~=current-password]", v.server.password)
    with v.page.expect_navigation():
        v.page.click("form:has(input[autocomplete~=current-password]) button[type=submit]")


def mfa_overview(v: Visit) -> None:
    v.page.goto(v.url("/account/mfa"))


def totp_setup(v: Visit) -> str:
    """A new user, signed in, at the authenticator-app setup; returns the email."""
    email = new_user(v)
    sign_in_as(v, email)
    v.page.goto(v.url("/account/mfa/totp"))
    return email


def set_up_totp(v: Visit) -> str:
    """Set up an authenticator app: the answer is the page with the recovery codes."""
    email = totp_setup(v)
    secret = (v.page.text_content("#totp-secret") or "").replace(" ", "")
    v.page.fill("input[autocomplete=one-time-code]", pyotp.TOTP(secret).now())
    with v.page.expect_navigation():
        v.page.click("form[action='/account/mfa/totp'] button[type=submit]")
    return email


def recovery_codes(v: Visit) -> None:
    set_up_totp(v)


def factor(v: Visit) -> None:
    """A user with an authenticator app signs in again: the code page after the password."""
    email = set_up_totp(v)
    v.page.context.clear_cookies()
    sign_in_as(v, email)


def passkey_add(v: Visit) -> None:
    sign_in_as(v, new_user(v))
    v.page.goto(v.url("/account/mfa/passkey"))


def login_with_a_passkey(v: Visit) -> None:
    """The login page's passkey button (shown by webauthn.js) leads to the passkey page."""
    v.page.goto(v.url("/login"))
    with v.page.expect_navigation():
        v.page.click("form[action='/login/passkey'] button")


def enrol_at_sign_in(v: Visit) -> None:
    """An admin without a second factor: the sign-in sets one up first."""
    sign_in_as(v, new_user(v, admin=True))


@dataclass(frozen=True)
class PageState:
    """A page as a person sees it. `reach` drives a fresh page there, signed in beforehand
    (the module's one session, as storage state) when `signed_in`; the page must end on
    `path`, served with `status`."""

    name: str
    reach: Callable[[Visit], None]
    path: str
    status: int = 200
    signed_in: bool = False


PAGES = [
    PageState("login", login, "/login"),
    PageState("login-authorize", login_in_authorization, "/login"),
    PageState("login-error", login_error, "/login", status=400),
    PageState("consent", consent, "/consent", signed_in=True),
    PageState("logout-confirm", logout_confirm, "/logout", signed_in=True),
    PageState("signed-out", signed_out, "/logout"),
    PageState("error", error_page, "/authorize", status=400),
    PageState("home", home, "/"),
    PageState("home-signed-in", home, "/", signed_in=True),
    PageState("home-with-an-application", home_with_an_application, "/"),
    PageState("account", account, "/account", signed_in=True),
    PageState("account-password", account_password, "/account/password"),
    PageState("account-password-error", account_password_error, "/account/password", status=400),
    PageState("login-de", login_in_german, "/login"),
    PageState("account-mfa", mfa_overview, "/account/mfa", signed_in=True),
    PageState("totp-setup", totp_setup, "/account/mfa/totp"),
    PageState("recovery-codes", recovery_codes, "/account/mfa/totp"),
    PageState("factor", factor, "/login/factor"),
    PageState("enrol-at-sign-in", enrol_at_sign_in, "/login/enrol"),
    PageState("passkey-add", passkey_add, "/account/mfa/passkey"),
    PageState("login-passkey", login_with_a_passkey, "/login/passkey"),
]


@pytest.fixture(scope="module")
def signed_in(chromium: Browser, server: RunningServer) -> StorageState:
    """The cookies of one sign-in through the login page, shared by the pages that need a
    session and leave it alive (nothing here confirms a logout with it)."""
    with visit(chromium, server, VARIANTS[-1]) as v:
        sign_in(v)
        return v.page.context.storage_state()


def arrive(v: Visit, state: PageState) -> None:
    """Drive to the page and check it is the one meant, loaded."""
    state.reach(v)
    v.page.wait_for_load_state("load")
    url, status = v.document()
    assert urlsplit(v.page.url).path == state.path, f"{state.name}: ended on {v.page.url}"
    assert status == state.status, f"{state.name}: {url} answered {status}: {v.documents}"


def open_state(request: pytest.FixtureRequest, state: PageState) -> StorageState | None:
    """The storage state a fresh context for `state` starts with."""
    if not state.signed_in:
        return None
    stored: StorageState = request.getfixturevalue("signed_in")
    return stored


# --- tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "variant"),
    [pytest.param(s, var, id=f"{s.name}-{var.id}") for s in PAGES for var in VARIANTS],
)
def test_page_meets_wcag_aa_without_console_errors_or_csp_violations(
    request: pytest.FixtureRequest,
    chromium: Browser,
    server: RunningServer,
    axe_source: str,
    state: PageState,
    variant: Variant,
) -> None:
    """WCAG 2.2 AA as axe-core checks it (wcag2a, 2aa, 21a, 21aa, 22aa) and 1.4.10 Reflow (no
    sideways scrolling), no console error, no uncaught exception and no CSP Level 3
    `securitypolicyviolation`, in the light and dark color schemes at 320 px (Reflow's width)
    and 1280 px; a full-page screenshot is kept."""
    name = f"{state.name}-{variant.id}"
    shot = artefact("screenshots", f"{name}.png")
    with visit(chromium, server, variant, open_state(request, state)) as v:
        arrive(v, state)
        v.page.screenshot(path=str(shot), full_page=True)  # before axe touches the page
        axe = axe_results(v, axe_source)
        artefact("axe", f"{name}.json").write_text(json.dumps(axe, indent=2) + "\n")
        found = problems(v, state.status, axe)
        url = v.page.url
    assert not found, "\n".join([f"{state.name} [{variant.id}] at {url}:", *found, str(shot)])


@pytest.mark.parametrize("state", [pytest.param(s, id=s.name) for s in PAGES])
def test_page_names_its_language_and_has_a_title(
    request: pytest.FixtureRequest, chromium: Browser, server: RunningServer, state: PageState
) -> None:
    """WCAG 3.1.1 Language of Page (a non-empty `<html lang>`) and 2.4.2 Page Titled (a
    non-empty `<title>`)."""
    with visit(chromium, server, VARIANTS[-1], open_state(request, state)) as v:
        arrive(v, state)
        lang = v.page.evaluate("document.documentElement.getAttribute('lang')")
        title = v.page.evaluate("document.querySelector('head > title')?.textContent ?? null")
    assert lang and lang.strip(), f"{state.name}: <html lang> is {lang!r}"
    assert title and title.strip(), f"{state.name}: <title> is {title!r}"


def test_axe_catches_violations_in_dark_mode(
    chromium: Browser, server: RunningServer, axe_source: str
) -> None:
    """WCAG 1.1.1 (image-alt) and 1.4.3 Contrast (color-contrast), provoked on purpose: an
    image without alt text, and dark grey text on the dark background (which axe-core would
    measure against white, and pass, on a page that left its background to the browser).
    Without this, a dead audit passes every page."""
    with visit(chromium, server, Variant("dark", 1280)) as v:
        v.page.goto(v.url("/login"))
        v.page.evaluate(
            """() => {
              const img = document.createElement("img");
              img.src = "/static/favicon.svg";  // img-src 'self': allowed
              img.width = img.height = 16;
              const dim = document.createElement("p");
              dim.textContent = "Hard to read";
              dim.style.color = "#333333";  // CSSOM: style-src does not govern it
              document.querySelector("main").append(dim, img);
            }"""
        )
        axe = axe_results(v, axe_source)
        csp = v.csp_violations()
    found = {x["id"]: x for x in axe["violations"]}
    # The pages paint their own dark background, so axe measures against it unaided.
    assert axe["canvas"] is None, axe["canvas"]
    assert "image-alt" in found, found
    assert (
        "color-contrast" in found and "#333333" in found["color-contrast"]["nodes"][0]["summary"]
    ), found
    assert csp == [], csp


def test_the_csp_detector_catches_violations(chromium: Browser, server: RunningServer) -> None:
    """CSP Level 3 §5.3 (`securitypolicyviolation`): the recorder runs on a page whose CSP
    allows no script at all, catches an image and an inline script that the page's CSP
    blocks, and still reports them once the browser has moved on to another page; the console
    reports them too. Without this, a dead detector passes every page."""
    with visit(chromium, server, VARIANTS[-1]) as v:
        v.page.goto(v.url("/login"))
        assert v.csp_violations() == []  # the init script ran despite default-src 'none'
        assert v.csp_console == [], v.csp_console
        # img-src 'self' blocks the image before any request: example.invalid is never asked.
        v.page.evaluate(
            """() => {
              const img = document.createElement("img");
              img.src = "https://example.invalid/x.png";
              document.body.append(img);
              const script = document.createElement("script");
              script.textContent = "window.__ran = true";
              document.body.append(script);
            }"""
        )
        v.page.wait_for_function("window.__cspViolations.length >= 2")
        caught = {(x["directive"], x["blocked"]) for x in v.csp_violations()}
        ran = v.page.evaluate("window.__ran === true")
        v.page.goto(v.url("/"))  # the violations were in the document before this one
        later = {(x["directive"], x["blocked"], x["document"]) for x in v.csp_violations()}
        console = list(v.csp_console)
    assert ("img-src", "https://example.invalid/x.png") in caught, caught
    assert ("script-src-elem", "inline") in caught, caught
    assert not ran, "the page's CSP let an inline script run"
    login = v.url("/login")
    assert ("img-src", "https://example.invalid/x.png", login) in later, later
    assert ("script-src-elem", "inline", login) in later, later
    assert any("example.invalid" in m for m in console), console
    assert any("inline script" in m for m in console), console


def test_the_reflow_check_catches_sideways_scrolling(
    chromium: Browser, server: RunningServer
) -> None:
    """WCAG 1.4.10 Reflow: the check sees a page that scrolls sideways at 320 px (a block
    placed 640 px wide through CSSOM, which the page's CSP allows)."""
    with visit(chromium, server, VARIANTS[0]) as v:
        v.page.goto(v.url("/login"))
        assert reflow_problem(v) is None
        v.page.evaluate(
            """() => {
              const wide = document.createElement("div");
              wide.style.position = "absolute";  // out of any flex or grid layout
              wide.style.left = "0";
              wide.style.width = "640px";
              wide.style.height = "1px";
              document.body.append(wide);
            }"""
        )
        problem = reflow_problem(v)
    assert problem is not None and "scrolls sideways" in problem, problem


def test_removing_an_applications_access_from_the_home_page(
    chromium: Browser, server: RunningServer
) -> None:
    """In the browser, with the keyboard alone (WCAG 2.1.1): "Remove access" on the home page
    removes the application's consent; the page says so and no longer lists it."""
    with visit(chromium, server, VARIANTS[-1]) as v:
        home_with_an_application(v)
        button = v.page.get_by_role("button", name=re.compile(r"^Remove access for E2E$"))
        button.focus()
        with v.page.expect_navigation():
            v.page.keyboard.press("Enter")
        assert urlsplit(v.page.url).path == "/"
        assert "Access removed." in v.page.locator("[role=status]").inner_text()
        assert v.page.locator("form[action='/apps/revoke']").count() == 0
        assert v.csp_violations() == []
