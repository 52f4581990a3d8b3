"""Reads awaited on the event loop on PostgreSQL (idp.db.loop_reads; issue 16): the token
endpoint's client_credentials grant reads its client's row there, and falls back to a thread
whenever that read cannot be made, with the same answer (RFC 6749 §4.4, §5.2)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from idp.audit.events import AuditEvent
from idp.db import loop_reads as loop_reads_module
from idp.db.loop_reads import LoopReads, ReadFailed, loop_reads
from idp.protocol.server import IdpServer, KnownClient, NotRead
from idp.settings import Settings
from tests.conftest import make_settings, migrated_app
from tests.helpers import RP, Harness, in_its_own_loop
from tests.token_helpers import ISSUER, audit_events


@pytest.fixture(autouse=True)
def _postgres_only(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's reads awaited on the loop; SQLite reads on the loop itself")


@pytest.fixture
def service(idp: Harness) -> RP:
    return idp.client(grant_types=["client_credentials"], scopes=["api.read"], redirect_uris=[])


def awaited_reads(idp: Harness, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements awaited on the loop from now on."""
    seen: list[str] = []
    fetch_one = LoopReads.fetch_one

    async def noting(reads: LoopReads, sql: str, params: object) -> object:
        seen.append(sql)
        return await fetch_one(reads, sql, params)  # type: ignore[arg-type]

    monkeypatch.setattr(LoopReads, "fetch_one", noting)
    return seen


def pool_checkouts(idp: Harness, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    taken: list[object] = []
    connect = idp.runtime.read_engine.connect
    monkeypatch.setattr(
        type(idp.runtime.read_engine), "connect", lambda engine: taken.append(1) or connect()
    )
    return taken


def test_the_client_is_read_on_the_loop(
    idp: Harness, service: RP, monkeypatch: pytest.MonkeyPatch
) -> None:
    """§4.4: the grant's one read, of the client's row, is awaited on the server's loop."""
    seen = awaited_reads(idp, monkeypatch)
    response = idp.client_credentials(service)
    assert response.status_code == 200, response.text
    assert len(seen) == 1 and "FROM clients" in seen[0]


def test_a_failed_read_is_made_again_in_a_thread(
    idp: Harness, service: RP, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read the loop's pool cannot make (no connection in time, a driver error) changes
    nothing: the grant is made in a thread, on the engine's pool, and answers as ever."""

    async def failing(*_args: object) -> None:
        raise ReadFailed("no connection in time")

    monkeypatch.setattr(LoopReads, "fetch_one", failing)
    taken = pool_checkouts(idp, monkeypatch)
    response = idp.client_credentials(service)
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"
    assert len(taken) == 1


def test_the_driver_failing_is_a_read_failed(
    idp: Harness, service: RP, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A statement PostgreSQL refuses surfaces as ReadFailed, never as the driver's error."""
    seen = awaited_reads(idp, monkeypatch)
    monkeypatch.setattr(
        "idp.store.clients._RECORD",
        type("Broken", (), {"of_style": lambda self, style: "SELECT * FROM no_such_table"})(),
    )
    monkeypatch.setattr("idp.store.clients.get_record", lambda *_: None)  # the thread's read
    response = idp.client_credentials(service)
    assert seen == ["SELECT * FROM no_such_table"]
    # Made again in the thread (where this test's stand-in finds no client): §5.2 invalid_client.
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_a_wrong_secret_is_refused_and_audited(idp: Harness, service: RP) -> None:
    """§5.2: invalid_client, 401, and the failure in the trail, written after the read."""
    response = idp.http.post(
        "/token",
        data={"grant_type": "client_credentials"},
        auth=(service.client_id, "not-the-secret"),
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert len(audit_events(idp, AuditEvent.CLIENT_AUTH_FAILED)) == 1


def test_an_unknown_client_is_refused(idp: Harness) -> None:
    """§5.2: a client id that names no client is invalid_client, read on the loop as any."""
    response = idp.http.post(
        "/token", data={"grant_type": "client_credentials"}, auth=("nobody", "secret")
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_a_grant_asking_for_another_client_is_not_answered_from_the_read(idp: Harness) -> None:
    """The row read before the grant is its Basic client's; asked for any other, the server
    stops (NotRead), so the grant is made again where it can read."""
    with idp.runtime.sessions.begin() as db:
        server = IdpServer(idp.runtime, db, read_only=True, known_client=KnownClient("a", None))
        assert server.query_client("a") is None
        with pytest.raises(NotRead):
            server.query_client("b")


def test_a_registration_changed_elsewhere_holds_at_the_next_request(
    idp: Harness, service: RP
) -> None:
    """§3.3: the client's row read on the loop decides each time, as in a thread."""
    assert idp.client_credentials(service, scope="api.read").status_code == 200
    with idp.runtime.engine.begin() as conn:
        conn.execute(
            text("UPDATE clients SET access_token_ttl = 120 WHERE client_id = :c"),
            {"c": service.client_id},
        )
    assert idp.client_credentials(service).json()["expires_in"] == 120


def test_another_loop_reads_in_a_thread(idp: Harness, service: RP) -> None:
    """The pool is bound to the server's loop: a request served on any other loop (here
    httpx's ASGI transport in a loop of its own) reads in a thread, with the same answer."""

    async def on_another_loop() -> tuple[object, httpx.Response]:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=idp.app), base_url=ISSUER
        ) as client:
            response = await client.post(
                "/token", data={"grant_type": "client_credentials"}, headers=service.auth()
            )
        return loop_reads(idp.runtime.engine), response

    reads, response = in_its_own_loop(on_another_loop)
    assert reads is None
    assert response.status_code == 200, response.text


def test_the_pool_opens_and_closes_with_the_server(settings: Settings) -> None:
    """The server's start opens the loop's pool and its shutdown closes it: the requests
    after it (the app used past its shutdown) read in threads."""
    app = migrated_app(settings)
    engine = app.state.runtime.engine
    try:
        with TestClient(app, base_url=ISSUER) as http:
            assert engine in loop_reads_module._LOOP_READS
            assert http.get("/jwks.json").status_code == 200
        assert engine not in loop_reads_module._LOOP_READS
    finally:
        engine.dispose()


def test_none_with_the_setting_at_zero(database_url: str, tmp_path: Path) -> None:
    """IDP_DATABASE_LOOP_READ_CONNECTIONS=0: no pool of the loop's own."""
    app = migrated_app(make_settings(database_url, tmp_path, database_loop_read_connections=0))
    engine = app.state.runtime.engine
    try:
        with TestClient(app, base_url=ISSUER):
            assert engine not in loop_reads_module._LOOP_READS
    finally:
        engine.dispose()
