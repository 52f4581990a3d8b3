"""Back-Channel Logout through the real server: the user's logout never waits on a slow relying
party (issue 3, Logout), and the logout token still arrives."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.e2e.conftest import REDIRECT_URI, RunningServer
from tests.e2e.test_server import follow, only_form, pkce_pair, submit

pytestmark = pytest.mark.e2e

RP_DELAY_SECONDS = 3.0


class SlowReceiver:
    def __init__(self) -> None:
        self.tokens: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                time.sleep(RP_DELAY_SECONDS)  # a relying party having a bad day
                length = int(self.headers.get("content-length", "0"))
                outer.tokens += parse_qs(self.rfile.read(length).decode()).get("logout_token", [])
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_port}/bcl"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[SlowReceiver]:
    r = SlowReceiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_logout_does_not_wait_for_a_slow_relying_party(
    server: RunningServer, receiver: SlowReceiver
) -> None:
    """Back-Channel Logout 1.0 §2.5 and issue 3: the OP answers the user at once and delivers
    the logout token afterwards, even when the RP takes seconds to answer."""
    client = server.cli.json(
        "clients",
        "create",
        "--name",
        "Slow RP",
        "--redirect-uri",
        REDIRECT_URI,
        "--grant-type",
        "authorization_code",
        "--scope",
        "openid",
        "--trusted",
        "--backchannel-logout-uri",
        receiver.uri,
        "--json",
    )
    verifier, challenge = pkce_pair()
    with httpx.Client(follow_redirects=False, timeout=30) as browser:
        response = browser.get(
            f"{server.issuer}/authorize",
            params={
                "response_type": "code",
                "client_id": client["client_id"],
                "redirect_uri": REDIRECT_URI,
                "scope": "openid",
                "state": "s",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
        )
        page = follow(browser, response)
        form = only_form(page)
        response = submit(
            browser, page, form.submission(email=server.email, password=server.password), form
        )
        response = follow(browser, response)  # trusted: straight back with a code
        code = parse_qs(urlsplit(response.headers["location"]).query)["code"][0]
        tokens = httpx.post(
            f"{server.issuer}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
            },
            auth=(client["client_id"], client["client_secret"]),
        ).json()
        started = time.monotonic()
        logout = browser.get(
            f"{server.issuer}/logout", params={"id_token_hint": tokens["id_token"]}
        )
        elapsed = time.monotonic() - started
    assert logout.status_code == 200, logout.text
    assert elapsed < RP_DELAY_SECONDS / 2, f"logout waited {elapsed:.2f} s for the RP"
    deadline = time.monotonic() + 20
    while not receiver.tokens and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(receiver.tokens) == 1, server.log()
