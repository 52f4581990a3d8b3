"""Password checks under load: their own bounded executor behind an admission limit, so a
flood of sign-ins is answered 503 with Retry-After (RFC 9110 §15.6.4, §10.2.3) before any hash
is computed, and never takes the threads that other endpoints need."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI

from idp.settings import Settings
from tests.conftest import make_settings, migrated_app
from tests.helpers import PASSWORD, Harness, basic, form_fields, in_its_own_loop
from tests.token_helpers import ISSUER

T = TypeVar("T")
GATE_TIMEOUT = 30.0  # a forgotten gate fails the test instead of hanging it
UNTHROTTLED = {"throttle_account_address_limit": 1000, "throttle_account_limit": 1000}


def _gated(app: FastAPI) -> tuple[threading.Event, list[int]]:
    """Make every password check wait for the gate; count the checks that started."""
    passwords = app.state.runtime.passwords
    gate, started = threading.Event(), [0]
    verify: Callable[..., bool] = passwords._verify

    def gated(*args: Any) -> bool:
        started[0] += 1
        gate.wait(GATE_TIMEOUT)
        return verify(*args)

    passwords._verify = gated
    return gate, started


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER)


async def _attempt(app: FastAPI, password: str = "wrong password") -> httpx.Response:  # noqa: S107
    """One browser: the form, then the POST."""
    async with _client(app) as browser:
        page = await browser.get("/login")
        fields = form_fields(page.text)
        fields.update(email="alice@example.com", password=password)
        return await browser.post("/login", data=fields)


async def _until(predicate: Callable[[], bool], timeout: float = GATE_TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """These tests fill the hashing queue with wrong guesses from one address: the sign-in
    throttle (tested in tests/authn/test_throttle.py) would refuse them long before."""
    return make_settings(database_url, tmp_path, **UNTHROTTLED)


@pytest.fixture
def small_app(tmp_path: Path, database_url: str) -> Any:
    app = migrated_app(
        make_settings(
            database_url,
            tmp_path,
            password_hash_concurrency=1,
            password_hash_queue=1,
            **UNTHROTTLED,
        )
    )
    yield app
    app.state.runtime.engine.dispose()


def test_a_full_queue_is_503_with_retry_after_and_no_hash(small_app: FastAPI) -> None:
    """One slot and one queue place: the third sign-in at once is told to come back, and no
    password is checked for it."""
    from starlette.testclient import TestClient

    with TestClient(small_app, base_url=ISSUER) as http:
        Harness(small_app, http).user()
    gate, started = _gated(small_app)
    passwords = small_app.state.runtime.passwords

    async def scenario() -> tuple[list[httpx.Response], httpx.Response]:
        admitted = [asyncio.create_task(_attempt(small_app)) for _ in range(2)]
        await _until(lambda: passwords._admitted == 2)
        refused = await _attempt(small_app, PASSWORD)
        gate.set()
        return list(await asyncio.gather(*admitted)), refused

    try:
        answered, refused = in_its_own_loop(scenario)
    finally:
        gate.set()
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert "Too many people are signing in" in refused.text
    assert started[0] == 2  # the refused attempt hashed nothing
    assert [r.status_code for r in answered] == [400, 400]
    assert passwords._admitted == 0


def test_other_endpoints_answer_while_password_checks_pile_up(idp: Harness) -> None:
    """Fifty sign-ins waiting on slow password checks hold none of the shared threads:
    /jwks.json, /authorize and /token (client credentials) still answer meanwhile."""
    idp.user()
    rp = idp.client()
    service = idp.client(grant_types=["client_credentials"], scopes=["api"], redirect_uris=[])
    gate, started = _gated(idp.app)
    passwords = idp.app.state.runtime.passwords

    async def scenario() -> tuple[list[int], list[httpx.Response]]:
        waiting = [asyncio.create_task(_attempt(idp.app)) for _ in range(50)]
        await _until(lambda: passwords._admitted == 36)  # 4 slots + 32 queued (defaults)
        # Every other sign-in has been refused (each reserves its throttle slot first, one
        # write at a time, so the last ones reach the queue a little later).
        await _until(lambda: sum(task.done() for task in waiting) == 14)
        async with _client(idp.app) as other:
            async with asyncio.timeout(10):
                answers = [
                    await other.get("/jwks.json"),
                    await other.get("/authorize", params=rp.authorize_params()),
                    await other.post(
                        "/token",
                        data={"grant_type": "client_credentials", "scope": "api"},
                        headers=basic(service.client_id, service.secret or ""),
                    ),
                ]
        assert passwords._admitted == 36  # every admitted check is still waiting meanwhile
        gate.set()
        return [r.status_code for r in await asyncio.gather(*waiting)], answers

    try:
        statuses, answers = in_its_own_loop(scenario)
    finally:
        gate.set()
    assert [a.status_code for a in answers] == [200, 302, 200]
    assert sorted(set(statuses)) == [400, 503]
    assert statuses.count(400) == 36 and started[0] == 36
