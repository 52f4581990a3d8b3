"""OpenID Connect Back-Channel Logout 1.0: logout tokens delivered to a relying party (issue 3)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from joserfc import jwt
from sqlalchemy import select, text
from starlette.testclient import TestClient

from idp.protocol import backchannel
from idp.protocol.backchannel import EVENT, MAX_ATTEMPTS, claim_due, deliver_due, send
from idp.protocol.jose import registry
from tests.conftest import ISSUER, make_settings, migrated_app
from tests.helpers import RP, Harness, wait_until
from tests.slow_host import serve_slow
from tests.token_helpers import sql


class Receiver:
    """A relying party's back-channel logout endpoint on 127.0.0.1."""

    def __init__(self, status: int = 200) -> None:
        self.tokens: list[str] = []
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                outer.tokens.extend(form.get("logout_token", []))
                self.send_response(outer.status)
                self.send_header("Cache-Control", "no-store")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_port}/backchannel-logout"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def signed_in(idp: Harness, uri: str) -> tuple[RP, dict[str, str]]:
    idp.user()
    rp = idp.client(backchannel_logout_uri=uri)
    return rp, idp.tokens(rp)


def failed_attempts(idp: Harness) -> int:
    """Attempts whose outcome is recorded as a failure (claimed attempts still in flight are
    not counted)."""
    with idp.runtime.sessions() as db:
        return int(
            db.execute(
                text("SELECT count(*) FROM logout_deliveries WHERE last_error IS NOT NULL")
            ).scalar()
            or 0
        )


def test_logout_token_reaches_the_relying_party(idp: Harness, receiver: Receiver) -> None:
    """§2.4-§2.6: when the session ends, the RP receives a signed logout token with iss, aud,
    iat, exp, jti, sid, sub and the back-channel event, and no nonce."""
    rp, tokens = signed_in(idp, receiver.uri)
    id_token = idp.decode(tokens["id_token"]).claims
    response = idp.http.get("/logout", params={"id_token_hint": tokens["id_token"]})
    assert response.status_code in (200, 302)
    # Sent by the worker's delivery pool right after the response.
    assert wait_until(lambda: len(receiver.tokens) == 1)
    decoded = jwt.decode(receiver.tokens[0], idp.jwks(), registry=registry("RS256"))
    assert decoded.header["typ"] == "logout+jwt"
    claims = decoded.claims
    assert claims["iss"] == ISSUER
    assert claims["aud"] == rp.client_id
    assert claims["sid"] == id_token["sid"]
    assert claims["sub"] == id_token["sub"]
    assert claims["events"] == {EVENT: {}}
    assert "nonce" not in claims
    assert claims["jti"] and claims["exp"] > claims["iat"]


def test_clients_without_a_backchannel_uri_get_nothing(idp: Harness, receiver: Receiver) -> None:
    """§2.2: only clients that registered a backchannel_logout_uri are notified."""
    idp.user()
    rp = idp.client()
    tokens = idp.tokens(rp)
    idp.http.get("/logout", params={"id_token_hint": tokens["id_token"]})
    assert receiver.tokens == []
    with idp.runtime.sessions() as db:
        assert db.execute(text("SELECT count(*) FROM logout_deliveries")).scalar() == 0


def test_a_failing_relying_party_is_retried_then_recorded(idp: Harness) -> None:
    """Issue 3: delivery has a timeout and bounded retries, and failures are recorded; the
    user's logout itself succeeds whatever the relying party does."""
    idp.app.state.worker.stop()  # this test sends each attempt itself
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/logout"
    _, tokens = signed_in(idp, dead)
    response = idp.http.get("/logout", params={"id_token_hint": tokens["id_token"]})
    assert response.status_code in (200, 302)
    assert "signed in as" not in idp.http.get("/").text
    for _ in range(MAX_ATTEMPTS):
        with idp.runtime.sessions.begin() as db:
            db.execute(text("UPDATE logout_deliveries SET next_attempt_at = 0"))
        deliver_due(idp.runtime)
    with idp.runtime.sessions() as db:
        attempts, failed_at, error = db.execute(
            text("SELECT attempts, failed_at, last_error FROM logout_deliveries")
        ).one()
        events = db.execute(text("SELECT event FROM audit_events")).scalars().all()
    assert attempts == MAX_ATTEMPTS
    assert failed_at is not None and error
    assert "logout.delivery_failed" in events
    # Given up: no further attempt.
    with idp.runtime.sessions.begin() as db:
        db.execute(text("UPDATE logout_deliveries SET next_attempt_at = 0"))
    assert deliver_due(idp.runtime) == {"sent": 0, "failed": 0}


def test_an_error_answer_is_retried_until_it_succeeds(idp: Harness) -> None:
    """§2.8: an RP answering an error has not processed the logout; a later attempt that gets
    200 completes the delivery, once."""
    receiver = Receiver(status=503)
    try:
        _, tokens = signed_in(idp, receiver.uri)
        idp.http.get("/logout", params={"id_token_hint": tokens["id_token"]})
        assert wait_until(lambda: failed_attempts(idp) == 1)  # tried once, refused
        idp.app.state.worker.stop()  # the next attempt is this test's own
        assert len(receiver.tokens) == 1
        receiver.status = 200
        with idp.runtime.sessions.begin() as db:
            db.execute(text("UPDATE logout_deliveries SET next_attempt_at = 0"))
        assert deliver_due(idp.runtime) == {"sent": 1, "failed": 0}
        assert deliver_due(idp.runtime) == {"sent": 0, "failed": 0}
        assert len(receiver.tokens) == 2
    finally:
        receiver.close()


def test_revoke_sessions_notifies_too(idp: Harness, receiver: Receiver) -> None:
    """Issue 3: ending every session of a user (`idp users revoke-sessions`) queues the same
    notifications, delivered by the workers."""
    from idp.authn.sessions import end_all

    _, tokens = signed_in(idp, receiver.uri)
    user_id = idp.decode(tokens["id_token"]).claims["sub"]
    idp.app.state.worker.stop()  # delivered below, by this test
    with idp.runtime.sessions.begin() as db:
        end_all(db, user_id)
    assert deliver_due(idp.runtime) == {"sent": 1, "failed": 0}
    assert len(receiver.tokens) == 1


def test_discovery_advertises_backchannel_logout(idp: Harness) -> None:
    """Back-Channel Logout §2.1: backchannel_logout_supported and _session_supported."""
    metadata = idp.http.get("/.well-known/openid-configuration").json()
    assert metadata["backchannel_logout_supported"] is True
    assert metadata["backchannel_logout_session_supported"] is True


# --- issue 11: attempts while a POST hangs, and what is queued ---------------------------------


def delivery_row(idp: Harness) -> Any:
    (row,) = sql(idp, "SELECT attempts, failed_at, delivered_at, last_error FROM logout_deliveries")
    return row


def expire_leases(idp: Harness) -> None:
    """What time does to a lease (instead of waiting out DEADLINE_SECONDS * 2)."""
    with idp.runtime.sessions.begin() as db:
        db.execute(text("UPDATE logout_deliveries SET next_attempt_at = 0"))


def test_a_hanging_endpoint_gets_at_most_max_attempts_even_past_its_leases(
    idp: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11: "deliveries respect their attempt limit while a POST hangs". An endpoint that
    accepts and never answers holds each attempt past its lease; every lapsed lease lets the
    next attempt be claimed, but the attempt is counted when claimed, so after MAX_ATTEMPTS
    claims nothing more is sent. The last lease lapsing with no outcome gives the delivery up
    (one logout.delivery_failed), and the hung POSTs' late failures change nothing."""
    idp.app.state.worker.stop()  # this test claims and sends each attempt itself
    # Every POST hangs until the test lets go, however loaded the machine: the deadline is
    # not what ends them here (the leases are expired by hand).
    monkeypatch.setattr(backchannel, "DEADLINE_SECONDS", 60.0)
    with serve_slow("hang", linger=60) as host:
        _, tokens = signed_in(idp, host.url + "logout")
        idp.http.get("/logout", params={"id_token_hint": tokens["id_token"]})
        sending: list[threading.Thread] = []
        for claimed_so_far in range(MAX_ATTEMPTS + 3):
            expire_leases(idp)
            claimed = claim_due(idp.runtime, 10)
            assert len(claimed) == (1 if claimed_so_far < MAX_ATTEMPTS else 0)
            for delivery in claimed:
                assert delivery.attempts == claimed_so_far + 1  # counted at the claim
                assert delivery_row(idp).attempts == claimed_so_far + 1
                thread = threading.Thread(target=send, args=(idp.runtime, delivery), daemon=True)
                thread.start()
                sending.append(thread)
        assert wait_until(lambda: host.connections == MAX_ATTEMPTS)
        assert all(thread.is_alive() for thread in sending)  # every POST still hangs
        row = delivery_row(idp)
        assert (row.attempts, row.delivered_at) == (MAX_ATTEMPTS, None)
        assert row.failed_at is not None  # the last lease lapsed: given up
        host.stop.set()  # the endpoint lets go; each hung POST now fails
        for thread in sending:
            thread.join(30)
    assert not any(thread.is_alive() for thread in sending)
    assert host.connections == MAX_ATTEMPTS
    assert delivery_row(idp).attempts == MAX_ATTEMPTS
    events = sql(idp, "SELECT event FROM audit_events WHERE event = 'logout.delivery_failed'")
    assert len(events) == 1
    expire_leases(idp)
    assert claim_due(idp.runtime, 10) == []


def test_a_late_failure_does_not_reschedule_the_attempt_claimed_after_it(idp: Harness) -> None:
    """Issue 11: an attempt whose lease lapsed is no longer the delivery's; when it fails at
    last, it must not set next_attempt_at and so cut short the lease of the attempt claimed
    after it (which would let a third be claimed while the second still runs)."""
    idp.app.state.worker.stop()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/logout"
    _, tokens = signed_in(idp, dead)
    idp.http.get("/logout", params={"id_token_hint": tokens["id_token"]})
    (first,) = claim_due(idp.runtime, 10)
    expire_leases(idp)
    (second,) = claim_due(idp.runtime, 10)  # the first's lease lapsed
    assert (first.attempts, second.attempts) == (1, 2)
    send(idp.runtime, first)  # the first fails late
    assert claim_due(idp.runtime, 10) == []  # the second's lease still holds
    row = delivery_row(idp)
    assert (row.attempts, row.last_error) == (2, None)


def test_logging_out_an_ended_session_queues_nothing(idp: Harness, receiver: Receiver) -> None:
    """Issue 11: "queued only when a session really ended". A sign-out of a session another
    request ended meanwhile (two tabs, a retried POST), or of an unknown one, queues no
    logout token: the relying party is told once."""
    from idp.authn import sessions
    from idp.store import sessions as session_store

    _, tokens = signed_in(idp, receiver.uri)
    idp.app.state.worker.stop()
    sid = idp.decode(tokens["id_token"]).claims["sid"]
    with idp.runtime.sessions() as db:
        (session,) = db.scalars(
            select(session_store.BrowserSession).where(session_store.BrowserSession.sid == sid)
        )
        db.expunge(session)
    for _ in range(2):  # both requests read the live session; each then ends it
        with idp.runtime.sessions.begin() as db:
            sessions.end(db, session, ip=None)
    unknown = session_store.BrowserSession(sid="no-such-sid", user_id=session.user_id)
    with idp.runtime.sessions.begin() as db:
        sessions.end(db, unknown, ip=None)
    assert len(sql(idp, "SELECT id FROM logout_deliveries")) == 1  # one client, told once
    with idp.runtime.sessions.begin() as db:
        sessions.end_all(db, session.user_id)  # the session is gone: nothing more to tell
    assert len(sql(idp, "SELECT id FROM logout_deliveries")) == 1


def test_a_loopback_logout_endpoint_is_not_posted_to_in_production(
    database_url: str, tmp_path: Path
) -> None:
    """Issue 11: with IDP_OUTBOUND_ALLOWED_NETWORKS unset, a production server does not
    connect to a loopback backchannel_logout_uri (here one registered while the setting
    allowed it): the attempt fails as "refused address" and the endpoint hears nothing."""
    with serve_slow("status", status=200, body=b"") as host:
        allowed = migrated_app(make_settings(database_url, tmp_path / "a"))
        try:
            with TestClient(allowed, base_url=ISSUER, follow_redirects=False) as http:
                idp = Harness(allowed, http)
                allowed.state.worker.stop()  # the strict app below sends it
                _, tokens = signed_in(idp, host.url + "logout")
                idp.http.get("/logout", params={"id_token_hint": tokens["id_token"]})
        finally:
            allowed.state.runtime.engine.dispose()
        strict = migrated_app(
            make_settings(database_url, tmp_path / "s", outbound_allowed_networks="")
        )
        try:
            runtime = strict.state.runtime
            assert deliver_due(runtime) == {"sent": 0, "failed": 0}
            with runtime.sessions() as db:
                error = db.execute(text("SELECT last_error FROM logout_deliveries")).scalar()
        finally:
            runtime.engine.dispose()
    assert error == "refused address"
    assert host.connections == 0
