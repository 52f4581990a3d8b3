"""Issue 5, "examples/": the relying-party web app and the protected API, each started with its
own command (`python -m examples.rp`, `python -m examples.api`) against the real `idp serve`,
driven end to end as a browser would: sign in with PKCE, see the claims, call the API, refresh,
sign out through the end-session endpoint. A service with client credentials calls the same API.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.e2e.conftest import RunningServer, free_port, running
from tests.interop.test_authlib_client import sign_in_and_consent

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Examples:
    api: str
    rp: str
    client_id: str


def example_env(server: RunningServer, **values: str) -> dict[str, str]:
    env = {k: v for k, v in server.cli.env.items() if not k.startswith(("IDP_", "EXAMPLE_"))}
    env.update(EXAMPLE_ISSUER=server.issuer, **values)
    return env


def register_with_make(server: RunningServer, rp: str, api: str) -> Path:
    """`make example-rp`'s registration step, run by make itself (its `venv` prerequisite taken
    as done: this interpreter's environment is the one to use)."""
    client_file = server.tmp / "rp-client.json"
    result = subprocess.run(
        [
            "make", "--no-print-directory", "-o", "venv", f"VENV={Path(sys.prefix)}",
            f"EXAMPLE_CLIENT={client_file}", f"EXAMPLE_RP_URL={rp}", f"EXAMPLE_API_URL={api}",
            str(client_file),
        ],
        cwd=REPO, env=server.cli.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"make: {result.stdout}\n{result.stderr}"
    assert client_file.stat().st_mode & 0o077 == 0  # the app's secret: readable by its user only
    return client_file


@pytest.fixture(scope="module")
def examples(server: RunningServer) -> Iterator[Examples]:
    """The README's steps: give the user the auditor role, register the example app for the
    API's audience (the Makefile's recipe), then start the API and the app, each with one
    command (what `make example-api` and `make example-rp` run)."""
    api = f"http://127.0.0.1:{free_port()}"
    rp = f"http://127.0.0.1:{free_port()}"
    server.cli.run("users", "roles", server.email, "--add", "auditor")
    client_file = register_with_make(server, rp, api)
    client = json.loads(client_file.read_text())
    assert client["audiences"] == [api]
    assert client["redirect_uris"] == [f"{rp}/callback"]
    env = example_env(
        server, EXAMPLE_API_URL=api, EXAMPLE_RP_URL=rp, EXAMPLE_CLIENT_FILE=str(client_file)
    )
    python = sys.executable
    with (
        running(
            "examples.api", [python, "-m", "examples.api"], env, REPO,
            f"{api}/health", server.tmp / "api.log",
        ),
        running(
            "examples.rp", [python, "-m", "examples.rp"], env, REPO, f"{rp}/",
            server.tmp / "rp.log",
        ),
    ):  # fmt: skip
        yield Examples(api=api, rp=rp, client_id=client["client_id"])


def go(browser: httpx.Client, response: httpx.Response) -> httpx.Response:
    """Follow one redirect, as a browser would."""
    assert response.status_code in (302, 303), f"{response.status_code}: {response.text[:2000]}"
    return browser.get(urljoin(str(response.url), response.headers["location"]))


def idp_rows(server: RunningServer, query: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(server.tmp / "idp.db") as db:
        return list(db.execute(query, params))


def test_relying_party_signs_in_calls_the_api_refreshes_and_signs_out(
    server: RunningServer, examples: Examples, browser: httpx.Client
) -> None:
    """OIDC Core §3.1 (code flow, PKCE), RFC 6750 (the API call), RFC 6749 §6 (refresh),
    RFC 7009 (the app revokes its refresh token) and RP-Initiated Logout 1.0 §2-3."""
    home = browser.get(f"{examples.rp}/")
    assert home.status_code == 200 and 'href="/login"' in home.text

    to_idp = browser.get(f"{examples.rp}/login")
    assert to_idp.status_code == 302
    authorize = to_idp.headers["location"]
    assert authorize.startswith(f"{server.issuer}/authorize?")
    assert "code_challenge_method=S256" in authorize

    callback = sign_in_and_consent(browser, authorize, server)
    assert callback.startswith(f"{examples.rp}/callback?")
    signed_in = go(browser, browser.get(callback))
    assert signed_in.status_code == 200, signed_in.text
    assert f"Signed in as {server.email}" in signed_in.text
    sub = idp_rows(server, "SELECT id FROM users WHERE email = ?", server.email)[0][0]
    assert f"<td>{sub}</td>" in signed_in.text  # the ID token's claims, shown

    notes = browser.get(f"{examples.rp}/call-api")
    assert "API answered 200" in notes.text and sub in notes.text
    report = browser.get(f"{examples.rp}/call-api", params={"path": "/reports"})
    assert "API answered 200" in report.text and "auditor" in report.text

    refreshed = browser.post(f"{examples.rp}/refresh")
    assert refreshed.status_code == 303 and refreshed.headers["location"] == "/"
    rotated = idp_rows(
        server,
        "SELECT count(*), count(used_at) FROM refresh_tokens WHERE client_id = ?",
        examples.client_id,
    )
    assert rotated == [(2, 1)]  # the first one used, its successor live
    after = browser.get(f"{examples.rp}/call-api")
    assert "API answered 200" in after.text  # the new access token works too

    to_end_session = browser.post(f"{examples.rp}/logout")
    assert to_end_session.status_code == 302
    end_session = to_end_session.headers["location"]
    assert end_session.startswith(f"{server.issuer}/logout?")
    assert "id_token_hint=" in end_session
    back = browser.get(end_session)
    assert back.status_code == 302
    assert urlsplit(back.headers["location"]).path == "/signed-out"
    done = go(browser, back)
    assert done.status_code == 200 and "You are signed out" in done.text
    # The app revoked its grant; the IdP ended the session.
    families = idp_rows(
        server, "SELECT revoked_at FROM token_families WHERE client_id = ?", examples.client_id
    )
    assert families and all(row[0] is not None for row in families)
    assert browser.get(f"{examples.rp}/call-api").status_code == 303  # signed out of the app
    again = browser.get(f"{examples.rp}/login")
    assert "/login" in go(browser, again).headers.get("location", "")  # the IdP asks again


def test_the_api_trusts_nothing_without_a_token(examples: Examples) -> None:
    """RFC 6750 §3.1: a request without a token gets 401 and a Bearer challenge, also from the
    loopback interface (Zero Trust: nothing is trusted for where it comes from)."""
    answer = httpx.get(f"{examples.api}/notes")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="notes"'


def test_a_service_with_client_credentials_reads_notes_but_not_reports(
    server: RunningServer, examples: Examples
) -> None:
    """RFC 6749 §4.4: a service registered for the API's audience reads /notes with scope
    notes.read; /reports needs a user's auditor role, which a service token never carries."""
    service = server.cli.json(
        "clients", "create", "--name", "Example service", "--grant-type", "client_credentials",
        "--scope", "notes.read", "--audience", examples.api, "--json",
    )  # fmt: skip
    token = httpx.post(
        f"{server.issuer}/token",
        data={"grant_type": "client_credentials", "scope": "notes.read"},
        auth=(service["client_id"], service["client_secret"]),
    ).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    notes = httpx.get(f"{examples.api}/notes", headers=bearer)
    assert notes.status_code == 200, notes.text
    assert notes.json()["client_id"] == service["client_id"]
    report = httpx.get(f"{examples.api}/reports", headers=bearer)
    assert report.status_code == 403 and report.json()["error"] == "insufficient_role"


def test_sign_in_and_out_in_a_real_browser(
    server: RunningServer, examples: Examples, chromium: Browser
) -> None:
    """The whole journey in Chromium, with the IdP's real CSP, cookies and redirects: sign in at
    the app, the IdP's login and consent pages, the claims, an API call, a refresh, and sign-out
    through the end-session endpoint. No page logs a CSP violation or any other error."""
    email, password = "browser@example.com", "browser " + secrets.token_urlsafe(12)
    server.cli.run("users", "create", email, "--password-stdin", stdin=password + "\n")
    context = chromium.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on(
        "console",
        lambda m: errors.append(f"{m.text} ({m.location['url']})") if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{examples.rp}/")
        page.click("text=Sign in")
        page.wait_for_url(f"{server.issuer}/login?**")
        page.fill("#email", email)
        page.fill("#password", password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{server.issuer}/consent?**")
        assert "Example app" in page.inner_text("h1")  # the consent page names the app
        page.click("button[value=allow]")
        page.wait_for_url(f"{examples.rp}/")
        assert page.inner_text("h1") == f"Signed in as {email}"

        page.click("text=Call the API")
        assert page.inner_text("h1") == "API answered 200"
        page.go_back()
        page.click("text=Refresh tokens")
        page.wait_for_url(f"{examples.rp}/")
        assert page.inner_text("h1") == f"Signed in as {email}"
        page.click("text=Sign out")
        page.wait_for_url(f"{examples.rp}/signed-out?**")
        assert page.inner_text("h1") == "Signed out"
    finally:
        context.close()
    assert errors == [], errors
