"""Several workers, one database (ARCHITECTURE habit 4: nothing lives in only one process).

Two apps built by create_app on the same database stand for two uvicorn workers (or two nodes):
whatever one of them issues, the other can check.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from tests.conftest import ISSUER, make_settings, migrated_app
from tests.helpers import Harness


@pytest.fixture
def workers(database_url: str, tmp_path: Path) -> Iterator[tuple[Harness, Harness]]:
    settings = make_settings(database_url, tmp_path)
    apps: list[FastAPI] = [migrated_app(settings), migrated_app(settings)]
    with (
        TestClient(apps[0], base_url=ISSUER, follow_redirects=False) as a,
        TestClient(apps[1], base_url=ISSUER, follow_redirects=False) as b,
    ):
        yield Harness(apps[0], a), Harness(apps[1], b)
    for app in apps:
        app.state.runtime.engine.dispose()


def test_code_from_one_worker_is_redeemed_on_another(workers: tuple[Harness, Harness]) -> None:
    """RFC 6749 §4.1: the browser signs in and gets a code on worker A; the relying party's
    back-channel request lands on worker B, which redeems it; userinfo on B knows the user."""
    a, b = workers
    a.user(name="Alice")
    rp = a.client()
    code = a.code_for(rp)
    redeemed = b.exchange(rp, code)
    assert redeemed.status_code == 200, redeemed.text
    tokens = redeemed.json()
    id_token = b.decode(tokens["id_token"])
    assert id_token.claims["aud"] == rp.client_id
    assert id_token.claims["nonce"] == rp.nonce
    info = b.http.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.status_code == 200, info.text
    assert info.json()["email"] == "alice@example.com"
    assert info.json()["sub"] == id_token.claims["sub"]
    # Both workers publish the same signing keys.
    assert a.http.get("/jwks.json").json() == b.http.get("/jwks.json").json()


def test_code_is_single_use_across_workers(workers: tuple[Harness, Harness]) -> None:
    """RFC 6749 §4.1.2: the client MUST NOT use the code more than once; a code redeemed on one
    worker is refused (invalid_grant) on the other."""
    a, b = workers
    a.user()
    rp = a.client()
    code = a.code_for(rp)
    assert a.exchange(rp, code).status_code == 200
    replay = b.exchange(rp, code)
    assert replay.status_code == 400, replay.text
    assert replay.json()["error"] == "invalid_grant"


def test_session_from_one_worker_counts_on_another(workers: tuple[Harness, Harness]) -> None:
    """Issue, Accounts and sessions: a browser signed in on worker A is signed in on worker B."""
    a, b = workers
    a.user()
    rp = a.client(trusted=True)
    assert a.login().status_code == 303
    b.http.cookies = a.http.cookies
    r = b.authorize(rp)
    assert r.status_code in (302, 303), r.text
    assert r.headers["location"].startswith(rp.redirect_uri)
    assert "code=" in r.headers["location"]
