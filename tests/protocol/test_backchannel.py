"""OpenID Connect Back-Channel Logout 1.0: logout tokens delivered to a relying party (issue 3)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
from joserfc import jwt
from sqlalchemy import text

from idp.protocol.backchannel import EVENT, MAX_ATTEMPTS, deliver_due
from idp.protocol.jose import registry
from tests.conftest import ISSUER
from tests.helpers import RP, Harness, wait_until


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
