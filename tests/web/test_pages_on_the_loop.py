"""The sign-in pages' units of work (idp.deps.in_transaction): on SQLite they run on the event
loop, in one step, and a page whose write must wait for the write lock waits without holding
up the loop, then goes on (idp.db.engine.on_the_loop; issue 16)."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from idp import deps
from idp.store import users
from tests.helpers import Harness, in_its_own_loop
from tests.token_helpers import ISSUER


def test_a_page_waits_for_the_write_lock_without_holding_up_the_loop(idp: Harness) -> None:
    """OIDC Core §3.1.2.1: GET /authorize stores its interaction. While another unit of work
    (in a thread) holds SQLite's write lock, the authorization request waits for its turn; the
    login page (a read) and the key set answer meanwhile, and once the lock is given back the
    authorization request goes on to the login page with its interaction stored."""
    if idp.runtime.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's one write lock per database; PostgreSQL's writers do not queue")
    rp = idp.client()
    user_id = idp.user()
    held, release = threading.Event(), threading.Event()

    def writer_holding_the_lock() -> None:
        with deps.transaction(idp.runtime) as db:
            users.read(db, user_id)  # the first statement: BEGIN IMMEDIATE
            held.set()
            release.wait(10)

    async def scenario() -> tuple[bool, list[int], httpx.Response]:
        thread = threading.Thread(target=writer_holding_the_lock)
        thread.start()
        assert await asyncio.to_thread(held.wait, 5)
        transport = httpx.ASGITransport(app=idp.app)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as browser:
            authorizing = asyncio.create_task(
                browser.get("/authorize", params=rp.authorize_params())
            )
            async with asyncio.timeout(5):
                meanwhile = [
                    (await browser.get("/jwks.json")).status_code,
                    (await browser.get("/login")).status_code,
                ]
            waited = not authorizing.done()
            release.set()
            async with asyncio.timeout(10):
                answer = await authorizing
        thread.join(5)
        return waited, meanwhile, answer

    try:
        waited, meanwhile, answer = in_its_own_loop(scenario)
    finally:
        release.set()
    assert meanwhile == [200, 200]
    assert waited, "the authorization request did not wait for the write lock"
    assert answer.status_code == 302, answer.text
    assert answer.headers["location"].startswith("/login?interaction=")
