"""A slow relying-party host never stalls anybody else (issue 9: no network wait inside a
database transaction; every request to another host has an overall deadline and a size cap).

The hosts are tests.slow_host loopback servers on 127.0.0.1 that drip, hang or flood.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from starlette.testclient import TestClient

from idp import outbound
from idp.protocol import backchannel, client_auth
from tests.conftest import migrated_app, ticking_settings
from tests.helpers import Harness, wait_until
from tests.protocol.test_client_auth import SERVICE, assert_invalid_client
from tests.refresh_helpers import (
    OFFLINE_SCOPE,
    introspect,
    offline_client,
    refresh,
    resource_server,
)
from tests.slow_host import serve_slow
from tests.token_helpers import (
    ISSUER,
    assertion_form,
    audit_events,
    audited_count,
    client_assertion,
    client_key,
    public_jwks,
    sql,
)

# Monkeypatched over client_auth.JWKS_FETCH_DEADLINE (5 s), so these tests wait less.
JWKS_DEADLINE = 1.5
# What "keeps its usual latency" means for a request that does not wait for the slow host:
# about 20 ms usually; well under any deadline.
QUICK = 1.0
# Scheduling slack on a shared two-core machine, on top of a deadline.
MARGIN = 3.0
LOGOUT_DEADLINE = 3.5  # monkeypatched over backchannel.DEADLINE_SECONDS (5 s)

T = TypeVar("T")


@pytest.fixture(autouse=True)
def _no_cached_client_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The jwks_uri cache is per process: start and end each test with it empty."""
    monkeypatch.setattr(client_auth, "JWKS_FETCH_DEADLINE", JWKS_DEADLINE)
    client_auth.REMOTE_JWKS.clear()
    yield
    client_auth.REMOTE_JWKS.clear()


def timed(call: Callable[[], T]) -> tuple[T, float]:
    """What `call` returns, and how long it took."""
    start = time.monotonic()
    answer = call()
    return answer, time.monotonic() - start


def cc_assertion(client_id: str, send_client_id: bool = True) -> dict[str, str]:
    """A client_credentials request authenticated with a fresh private_key_jwt assertion, with
    the optional client_id (RFC 7521 §4.2) unless `send_client_id` is False."""
    assertion = client_assertion(client_id, client_key())
    form = assertion_form(assertion, grant_type="client_credentials")
    return {**form, "client_id": client_id} if send_client_id else form


class Background:
    """One request sent from a thread of its own, on a TestClient of its own."""

    def __init__(self, idp: Harness, path: str, data: dict[str, str]) -> None:
        self.http = TestClient(idp.app, base_url=ISSUER, follow_redirects=False)
        self.response: httpx.Response | None = None
        self.elapsed = 0.0
        self.thread = threading.Thread(target=self._run, args=(path, data), daemon=True)

    def _run(self, path: str, data: dict[str, str]) -> None:
        self.response, self.elapsed = timed(lambda: self.http.post(path, data=data))

    def __enter__(self) -> Background:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.thread.join(JWKS_DEADLINE + 2 * MARGIN)
        self.http.close()


# --- a dripping jwks_uri ---------------------------------------------------------------------


def test_a_dripping_jwks_uri_fails_on_time_and_stalls_no_other_client(idp: Harness) -> None:
    """Issue 9, no network wait inside a database transaction; RFC 7523 §3 / RFC 6749 §5.2: a
    private_key_jwt client whose jwks_uri drips a byte a second is invalid_client once the
    fetch's overall deadline passes, and while its keys are awaited other clients' token
    requests that write (a code redeemed, a refresh token rotated) keep their usual latency:
    the fetch happens before any transaction, so it holds no write lock and no connection.
    The failure is remembered: the next request fails at once, without asking the host again,
    and each failure leaves a client_auth.failed audit row (RFC 6749 §10.10)."""
    idp.user()
    writer = offline_client(idp)
    first = idp.tokens(writer, scope=OFFLINE_SCOPE)
    codes = [idp.code_for(writer, scope=OFFLINE_SCOPE) for _ in range(5)]
    with serve_slow("drip", interval=1.0) as host:
        dripping = idp.client(auth_method="private_key_jwt", jwks_uri=host.url, **SERVICE)
        with Background(idp, "/token", cc_assertion(dripping.client_id)) as slow:
            assert wait_until(lambda: host.connections >= 1, timeout=MARGIN)
            token = first["refresh_token"]
            for code in codes:
                exchanged, exchange_took = timed(partial(idp.exchange, writer, code))
                assert exchanged.status_code == 200, exchanged.text
                rotated, refresh_took = timed(partial(refresh, idp, writer, token))
                assert rotated.status_code == 200, rotated.text
                token = rotated.json()["refresh_token"]
                assert exchange_took < QUICK, exchange_took
                assert refresh_took < QUICK, refresh_took
            # The writes really overlapped the fetch: the slow request is still waiting.
            assert slow.thread.is_alive()
        assert not slow.thread.is_alive()
        assert slow.response is not None
        assert_invalid_client(slow.response)
        assert JWKS_DEADLINE - 0.5 < slow.elapsed < JWKS_DEADLINE + MARGIN, slow.elapsed
        again, took = timed(lambda: idp.http.post("/token", data=cc_assertion(dripping.client_id)))
        assert_invalid_client(again)
        assert took < QUICK, took
        assert host.connections == 1
    failures = audit_events(idp, "client_auth.failed")
    assert {row.client_id for row in failures} == {dripping.client_id}
    assert audited_count(idp, "client_auth.failed") == 2


def test_a_refused_assertion_is_audited_under_its_client(idp: Harness) -> None:
    """RFC 6749 §10.10 (credential guessing): the client_auth.failed row of a refused
    assertion names the client its iss and sub claim to be, also when the request leaves out
    the optional client_id parameter (RFC 7521 §4.2), as most private_key_jwt clients do."""
    rp = idp.client(
        auth_method="private_key_jwt", jwks_uri="http://127.0.0.1:9/jwks.json", **SERVICE
    )
    form = cc_assertion(rp.client_id, send_client_id=False)
    assert_invalid_client(idp.http.post("/token", data=form))
    assert [row.client_id for row in audit_events(idp, "client_auth.failed")] == [rp.client_id]


# More than anyio's default thread limiter (40), which every sync endpoint of a worker shares.
CROWD = 48


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # not about the database
def test_a_crowd_naming_a_dripping_client_stalls_no_other_client(idp: Harness) -> None:
    """Issue 9 (a slow relying-party host never stalls anybody else): many requests naming a
    client whose jwks_uri drips (anyone can send them: the client id is no secret, and the
    keys are fetched before the assertion's signature can be checked) do not take the threads
    every other client's token request needs."""
    idp.user()
    writer = offline_client(idp)
    token = idp.tokens(writer, scope=OFFLINE_SCOPE)["refresh_token"]
    with serve_slow("drip", interval=1.0) as host:
        dripping = idp.client(auth_method="private_key_jwt", jwks_uri=host.url, **SERVICE)
        forms = [cc_assertion(dripping.client_id) for _ in range(CROWD)]
        # One TestClient, so one event loop and one threadpool, as in a server process.
        crowd = [
            threading.Thread(target=idp.http.post, args=("/token",), kwargs={"data": form})
            for form in forms
        ]
        for thread in crowd:
            thread.start()
        try:
            assert wait_until(lambda: host.connections >= 1, timeout=MARGIN)
            time.sleep(0.5)  # the crowd is waiting for the fetch
            rotated, took = timed(lambda: refresh(idp, writer, token))
            assert rotated.status_code == 200, rotated.text
            assert took < QUICK, took
        finally:
            for thread in crowd:
                thread.join(JWKS_DEADLINE + 2 * MARGIN)


# --- a back-channel logout endpoint that never answers ---------------------------------------


def delivery(idp: Harness) -> Any:
    (row,) = sql(idp, "SELECT attempts, last_error, delivered_at FROM logout_deliveries")
    return row


def test_a_hanging_logout_endpoint_stalls_no_request_and_no_key_maintenance(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 9 and Back-Channel Logout 1.0 §2.5 (the OP sends the logout token; the RP may
    never answer): a delivery whose endpoint holds the connection without answering occupies
    one thread of the worker's delivery pool until its deadline, and meanwhile introspection
    (RFC 7662 §2.1), token requests (RFC 6749 §6) and the worker's key maintenance go on as
    usual; when the deadline passes, the attempt is recorded as failed."""
    settings = ticking_settings(database_url, tmp_path)
    app = migrated_app(settings)
    ring = app.state.runtime.keys
    original_tick = ring.tick
    ticks: list[float] = []

    def counting_tick() -> list[str]:
        ticks.append(time.monotonic())
        return original_tick()  # type: ignore[no-any-return]

    monkeypatch.setattr(ring, "tick", counting_tick)
    monkeypatch.setattr(backchannel, "DEADLINE_SECONDS", LOGOUT_DEADLINE)
    try:
        with (
            serve_slow("hang") as host,
            TestClient(app, base_url=ISSUER, follow_redirects=False) as http,
        ):
            idp = Harness(app, http)
            idp.user()
            rp = offline_client(idp, backchannel_logout_uri=host.url)
            api = resource_server(idp)
            tokens = idp.tokens(rp, scope=OFFLINE_SCOPE)
            other = offline_client(idp, name="Other RP")
            other_tokens = idp.tokens(other, scope=OFFLINE_SCOPE)
            logout = http.get("/logout", params={"id_token_hint": tokens["id_token"]})
            assert logout.status_code in (200, 302, 303), logout.text
            assert wait_until(lambda: host.count >= 1, timeout=MARGIN)  # the token was sent
            started = time.monotonic()
            hanging = len(ticks)
            token = other_tokens["refresh_token"]
            while len(ticks) < hanging + 2:
                assert time.monotonic() - started < LOGOUT_DEADLINE, "the worker stopped ticking"
                looked, took = timed(lambda: introspect(idp, api, other_tokens["access_token"]))
                assert looked.status_code == 200 and looked.json()["active"] is True
                assert took < QUICK, took
                rotated, took = timed(partial(refresh, idp, other, token))
                assert rotated.status_code == 200, rotated.text
                assert took < QUICK, took
                token = rotated.json()["refresh_token"]
            # Two ticks while the relying party still holds the connection, answer unrecorded.
            assert delivery(idp).last_error is None
            assert host.connections == 1
            assert wait_until(
                lambda: delivery(idp).last_error is not None, timeout=LOGOUT_DEADLINE + MARGIN
            )
            row = delivery(idp)
            assert row.attempts == 1 and row.delivered_at is None
            assert row.last_error == "timed out"
    finally:
        app.state.runtime.engine.dispose()


# --- caps on what a relying party may send -----------------------------------------------------


def padded_jwks(size: int) -> dict[str, object]:
    """The client's JWK Set, padded with an extra member to exactly `size` bytes of JSON."""
    document: dict[str, object] = {"padding": "", **public_jwks(client_key())}
    document["padding"] = "x" * (size - len(json.dumps(document)))
    assert len(json.dumps(document)) == size
    return document


def test_a_jwks_document_over_64_kib_is_invalid_client(idp: Harness) -> None:
    """Issue 9 (a size cap on every answer): a jwks_uri document of more than 64 KiB holding
    the client's valid key is refused as soon as the cap is passed, whether a Content-Length
    announces it or not, and authenticates nobody (RFC 6749 §5.2); one of exactly 64 KiB is
    read and used."""
    for announced in (True, False):
        for size, status in ((outbound.JWKS_MAX_BYTES, 200), (outbound.JWKS_MAX_BYTES + 1, 401)):
            document = padded_jwks(size)
            with serve_slow("ok", document=document, content_length=announced) as host:
                rp = idp.client(auth_method="private_key_jwt", jwks_uri=host.url, **SERVICE)
                form = cc_assertion(rp.client_id)
                response, took = timed(partial(idp.http.post, "/token", data=form))
            assert response.status_code == status, (announced, size, response.text)
            if status == 401:
                assert_invalid_client(response)
            assert took < QUICK, took


def test_an_oversized_logout_answer_is_a_failed_attempt(idp: Harness) -> None:
    """Issue 9 (a size cap on every answer): a back-channel logout endpoint answering more
    than 16 KiB is cut off at the cap, and the attempt is recorded as failed, to be retried."""
    idp.app.state.worker.stop()  # this test sends the attempt itself
    with serve_slow("big", size=outbound.LOGOUT_MAX_BYTES * 64, content_length=False) as host:
        rp = idp.client(backchannel_logout_uri=host.url)
        idp.user()
        tokens = idp.tokens(rp)
        idp.http.get("/logout", params={"id_token_hint": tokens["id_token"]})
        started = time.monotonic()
        assert backchannel.deliver_due(idp.runtime) == {"sent": 0, "failed": 0}
        assert time.monotonic() - started < QUICK
        assert host.count == 1
    row = delivery(idp)
    assert row.last_error == "too large" and row.delivered_at is None
