"""The security webhook (issue 15): IDP_SECURITY_WEBHOOK_URL receives every security event of
the audit trail as JSON, signed with HMAC-SHA256 under IDP_SECURITY_WEBHOOK_SECRET, from the
worker and never from a request; failed deliveries are retried a bounded number of times and
then given up on (audited), and the shared cursor survives restarts and several workers."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from idp.audit import webhook as webhook_module
from idp.audit.events import SECURITY_EVENTS, AuditEvent, record
from idp.audit.webhook import SIGNATURE_HEADER, Webhook, deliver_all
from idp.store.webhook_cursor import WebhookCursor
from tests.helpers import Harness, wait_until
from tests.ops.test_logs import Captured, captured  # noqa: F401  (fixture)
from tests.protocol.test_backchannel import Receiver
from tests.refresh_helpers import OFFLINE_SCOPE, harness, offline_client, refresh
from tests.slow_host import Seen, SlowHost, serve_slow
from tests.token_helpers import sql

SECRET = "webhook-secret-for-tests-only-0123456789"
EXPORT_KEYS = {"id", "time", "event", "actor", "subject", "client", "address", "details"}


@contextmanager
def with_webhook(
    database_url: str, tmp_path: Path, host: SlowHost, manual: bool = True, **overrides: object
) -> Iterator[Harness]:
    """An IdP whose webhook points at `host`; with `manual`, its worker is stopped, so the
    test sends each batch itself."""
    values: dict[str, object] = {
        "security_webhook_url": host.url,
        "security_webhook_secret": SECRET,
        "refresh_token_reuse_grace_seconds": 0,
        **overrides,
    }
    with harness(database_url, tmp_path, **values) as idp:
        if manual:
            idp.app.state.worker.stop()
        yield idp


def webhook_of(idp: Harness, **changes: Any) -> Webhook:
    """The runtime's webhook, with no delay between attempts unless told."""
    webhook = Webhook.from_runtime(idp.runtime)
    assert webhook is not None
    return replace(webhook, **{"retry_seconds": 0, **changes})


def security_event(idp: Harness, user_id: str = "u-1") -> int:
    """Write one security event (a user's sessions revoked) and return its id."""
    with idp.runtime.sessions.begin() as db:
        record(db, AuditEvent.SESSIONS_REVOKED, user_id=user_id, actor="cli")
    return int(sql(idp, "SELECT max(id) FROM audit_events")[0][0])


def bodies(host: SlowHost) -> list[dict[str, Any]]:
    with host.lock:
        return [json.loads(seen.body) for seen in host.requests]


def sent_ids(host: SlowHost) -> list[int]:
    return [body["id"] for body in bodies(host)]


def cursor(idp: Harness) -> WebhookCursor | None:
    with idp.runtime.reads.begin() as db:
        return db.get(WebhookCursor, 1)


def verify(seen: Seen, secret: str = SECRET, tolerance: int = 300) -> None:
    """What a receiver does, with hmac alone: the header's timestamp is recent and its v1 is
    HMAC-SHA256(secret, "<t>." + the raw body)."""
    header = seen.headers[SIGNATURE_HEADER.lower()]
    parts = dict(item.split("=", 1) for item in header.split(","))
    assert set(parts) == {"t", "v1"}
    timestamp = int(parts["t"])
    assert abs(time.time() - timestamp) <= tolerance
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + seen.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)


def webhook_metric(outcome: str) -> float:
    value = REGISTRY.get_sample_value("idp_security_webhook_deliveries_total", {"outcome": outcome})
    return value or 0.0


def test_a_reused_refresh_token_reaches_the_receiver_signed(
    database_url: str, tmp_path: Path
) -> None:
    """A real attack (a rotated refresh token presented again: the family is revoked) reaches
    the receiver from the running worker as one JSON object in the export's shape, signed so
    that the receiver verifies it with hmac and the shared secret; the sign-in, consent and
    token events of the same flow (not security events) are not sent."""
    with serve_slow("status") as host, with_webhook(database_url, tmp_path, host, False) as idp:
        user_id = idp.user()
        rp = offline_client(idp)
        tokens = idp.exchange(rp, idp.code_for(rp, scope=OFFLINE_SCOPE)).json()
        assert refresh(idp, rp, tokens["refresh_token"]).status_code == 200
        assert refresh(idp, rp, tokens["refresh_token"]).json()["error"] == "invalid_grant"
        assert wait_until(lambda: "refresh.reused" in [b["event"] for b in bodies(host)])
        with host.lock:
            seen = [s for s in host.requests if json.loads(s.body)["event"] == "refresh.reused"]
        written = {r[0] for r in sql(idp, "SELECT event FROM audit_events")}
    assert len(seen) == 1
    request = seen[0]
    verify(request)
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.body)
    assert set(body) == EXPORT_KEYS
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["time"])
    assert body["subject"] == {"user_id": user_id, "client_id": rp.client_id}
    assert body["client"] == rp.client_id
    # Events that are not security events were written, and none was sent.
    assert "login.succeeded" in written and len(written - SECURITY_EVENTS) > 2
    assert all(b["event"] in SECURITY_EVENTS for b in bodies(host))


def test_only_security_events_are_sent_and_the_cursor_passes_the_rest(
    database_url: str, tmp_path: Path
) -> None:
    """Events that are not security events (a user created, a sign-in) are passed over: the
    receiver gets the security event alone, and the cursor ends at the last id of the trail."""
    with serve_slow("status") as host, with_webhook(database_url, tmp_path, host) as idp:
        webhook = webhook_of(idp)
        idp.user()
        idp.login()
        wanted = security_event(idp)
        with idp.runtime.sessions.begin() as db:
            record(db, AuditEvent.USER_ENABLED, user_id="u-1", actor="cli")
        deliver_all(webhook)
        last = int(sql(idp, "SELECT max(id) FROM audit_events")[0][0])
        at = cursor(idp)
    assert sent_ids(host) == [wanted]
    assert at is not None and at.last_id == last and at.lease is None


def test_an_error_answer_is_retried_after_a_delay_then_delivered(
    database_url: str, tmp_path: Path
) -> None:
    """A receiver answering 500 has not taken the event: it is tried again, not before the
    retry delay, and the same event (the same id, for the receiver to drop a repeat) follows
    once the receiver answers 200; later events wait behind it, in order."""
    failed_before = webhook_metric("failed")
    with (
        serve_slow("status", status=500) as host,
        with_webhook(database_url, tmp_path, host) as idp,
    ):
        waiting = webhook_of(idp, retry_seconds=60)
        first, second = security_event(idp), security_event(idp)
        assert waiting.deliver() is False
        assert sent_ids(host) == [first]
        at = cursor(idp)
        assert at is not None and (at.failing_id, at.attempts) == (first, 1)
        assert at.last_error == "HTTP 500" and at.next_attempt_at > time.time() + 30
        # The delay is not over: nothing goes, and no worker would even take the lease.
        assert waiting.due() is False and waiting.deliver() is False
        assert sent_ids(host) == [first]
        with idp.runtime.sessions.begin() as db:
            db.get_one(WebhookCursor, 1).next_attempt_at = 0  # the delay has passed
        with host.lock:
            host.status = 200
        deliver_all(waiting)
        at = cursor(idp)
        gave_up = sql(idp, "SELECT id FROM audit_events WHERE event = 'webhook.gave_up'")
    assert sent_ids(host) == [first, first, second]
    assert at is not None and (at.failing_id, at.attempts, at.last_error) == (None, 0, None)
    assert gave_up == []
    assert webhook_metric("failed") == failed_before + 1


def test_a_receiver_that_always_fails_is_given_up_on_and_audited(
    database_url: str, tmp_path: Path
) -> None:
    """After IDP_SECURITY_WEBHOOK_MAX_ATTEMPTS failed attempts an event is given up on:
    `webhook.gave_up` names it and the last error (never the secret), the next event goes, and
    `webhook.gave_up`, not a security event, is never sent itself."""
    with (
        serve_slow("status", status=503) as host,
        with_webhook(database_url, tmp_path, host, security_webhook_max_attempts=3) as idp,
    ):
        webhook = webhook_of(idp)
        first, second = security_event(idp, "u-1"), security_event(idp, "u-2")
        for _ in range(10):
            webhook.deliver()
        rows = sql(
            idp,
            "SELECT user_id, detail FROM audit_events WHERE event = 'webhook.gave_up' ORDER BY id",
        )
        at = cursor(idp)
    assert sent_ids(host) == [first] * 3 + [second] * 3
    details = [d if isinstance(d, dict) else json.loads(d) for _, d in rows]
    assert [u for u, _ in rows] == ["u-1", "u-2"]
    assert details == [
        {"event_id": first, "event_type": "sessions.revoked", "attempts": 3, "reason": "HTTP 503"},
        {"event_id": second, "event_type": "sessions.revoked", "attempts": 3, "reason": "HTTP 503"},
    ]
    assert SECRET not in json.dumps(details)
    assert at is not None and at.failing_id is None and at.last_id > second


def test_an_unreachable_receiver_is_a_failed_attempt(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A network error counts as a failed attempt, as an error answer does (the outbound
    client's short reason is kept), and so does an address the outbound policy refuses (which
    the webhook thread also warns of when it starts)."""
    with serve_slow("status") as gone:
        pass  # nobody listens on its port any more
    with with_webhook(database_url, tmp_path, gone) as idp:
        webhook = webhook_of(idp, max_attempts=2)
        event_id = security_event(idp)
        webhook.deliver()
        first = cursor(idp)
        refused = replace(webhook, url="http://10.0.0.1:9/hook")  # not an allowed network
        refused.deliver()
        reasons = sql(idp, "SELECT detail FROM audit_events WHERE event = 'webhook.gave_up'")
    with caplog.at_level(logging.WARNING, logger="idp.webhook"):
        refused.check()
    assert "cannot be reached: refused address" in caplog.text
    assert first is not None and first.failing_id == event_id
    assert first.last_error == "connection failed"
    detail = reasons[0][0] if isinstance(reasons[0][0], dict) else json.loads(reasons[0][0])
    assert (detail["event_id"], detail["reason"]) == (event_id, "refused address")


def test_no_webhook_means_no_thread_no_request_and_no_cursor(idp: Harness) -> None:
    """Without IDP_SECURITY_WEBHOOK_URL nothing is sent: the worker has no webhook thread and
    the cursor table is never written, whatever security events happen."""
    assert Webhook.from_runtime(idp.runtime) is None
    security_event(idp)
    assert "idp-webhook" not in [t.name for t in threading.enumerate()]
    assert sql(idp, "SELECT count(*) FROM webhook_cursor")[0][0] == 0


def test_the_cursor_survives_a_restart(database_url: str, tmp_path: Path) -> None:
    """The cursor is in the database: a server started again sends nothing twice, and goes
    on with the events written while it was down."""
    with serve_slow("status") as host:
        with with_webhook(database_url, tmp_path, host) as idp:
            first = security_event(idp)
            deliver_all(webhook_of(idp))
            down = security_event(idp)  # written, not sent: the server stops
        with with_webhook(database_url, tmp_path, host) as idp:
            deliver_all(webhook_of(idp))
            later = security_event(idp)
            deliver_all(webhook_of(idp))
    assert sent_ids(host) == [first, down, later]


def test_the_first_start_with_a_webhook_begins_at_the_end_of_the_trail(
    database_url: str, tmp_path: Path
) -> None:
    """Events written before any server ran with a webhook are not sent (a new webhook gets
    no flood of old events); those written once it started are."""
    with harness(database_url, tmp_path) as idp:
        security_event(idp)
    with serve_slow("status") as host, with_webhook(database_url, tmp_path, host) as idp:
        new = security_event(idp)
        deliver_all(webhook_of(idp))
    assert sent_ids(host) == [new]


def test_two_workers_never_send_one_event_twice(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several servers share one cursor: two workers delivering at once on one database, the
    lease changing hands every two events, send each event once, in id order (taking the
    lease is one conditional UPDATE)."""
    monkeypatch.setattr(webhook_module, "BATCH", 2)
    with (
        serve_slow("status") as host,
        with_webhook(database_url, tmp_path, host) as one,
        with_webhook(database_url, tmp_path, host) as two,
    ):
        written = [security_event(one, f"u-{i}") for i in range(12)]
        webhooks = [webhook_of(one), webhook_of(two)]
        start = threading.Barrier(2)
        errors: list[BaseException] = []

        def run(webhook: Webhook) -> None:
            try:
                start.wait()
                deadline = time.monotonic() + 20
                while len(sent_ids(host)) < len(written) and time.monotonic() < deadline:
                    webhook.deliver()
            except BaseException as exc:  # reported below, not lost in the thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(w,)) for w in webhooks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert errors == []
    assert sent_ids(host) == written


def test_an_id_that_commits_late_is_still_sent(database_url: str, tmp_path: Path) -> None:
    """On PostgreSQL an id is taken at insert and a lower id can commit after a higher one was
    sent: the id passed over is looked for again and sent when it appears; one that never
    appears (a rolled-back insert) is forgotten after LATE_COMMIT_SECONDS."""
    with serve_slow("status") as host, with_webhook(database_url, tmp_path, host) as idp:
        webhook = webhook_of(idp)
        base = int(sql(idp, "SELECT coalesce(max(id), 0) FROM audit_events")[0][0]) + 1000
        insert = (
            "INSERT INTO audit_events (id, at, event, user_id, detail)"
            " VALUES (:id, :at, 'sessions.revoked', 'u-1', '{}')"
        )
        sql(idp, insert, id=base + 3, at=int(time.time()))
        deliver_all(webhook)
        at = cursor(idp)
        assert at is not None and at.last_id == base + 3
        assert str(base + 1) in at.missing and str(base + 2) in at.missing
        sql(idp, insert, id=base + 1, at=int(time.time()))  # the late commit
        deliver_all(webhook)
        with idp.runtime.sessions.begin() as db:  # base + 2 was missed long ago
            row = db.get_one(WebhookCursor, 1)
            row.missing = {k: 0 for k in row.missing}
        assert webhook.due()
        deliver_all(webhook)
        at = cursor(idp)
    assert sent_ids(host) == [base + 3, base + 1]
    assert at is not None and at.missing == {}


def test_a_transaction_that_commits_after_a_later_one_is_sent(
    database_url: str, tmp_path: Path
) -> None:
    """The same with two real transactions (PostgreSQL: SQLite has one writer at a time): an
    event whose transaction stays open while a later event commits and is sent arrives once
    its transaction commits."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite commits in id order")
    with serve_slow("status") as host, with_webhook(database_url, tmp_path, host) as idp:
        webhook = webhook_of(idp)
        with idp.runtime.sessions() as slow:
            with slow.begin():
                record(slow, AuditEvent.KEY_REVOKED, actor="cli", kid="k-1")
                slow.flush()  # the id is taken now
                early = int(slow.execute(text("SELECT max(id) FROM audit_events")).scalar_one())
                later = security_event(idp)
                deliver_all(webhook)
                assert sent_ids(host) == [later]
            deliver_all(webhook)  # committed now
    assert early < later
    assert sent_ids(host) == [later, early]


def test_a_hung_receiver_does_not_hold_up_logout_delivery(
    database_url: str, tmp_path: Path
) -> None:
    """A receiver that never answers holds the webhook's own thread for one deadline at a
    time, never the worker's other threads: meanwhile a back-channel logout is delivered."""
    receiver = Receiver()
    try:
        with (
            serve_slow("hang", linger=8) as host,
            with_webhook(database_url, tmp_path, host, False) as idp,
        ):
            security_event(idp)
            assert wait_until(lambda: host.count == 1)  # the webhook thread is waiting now
            idp.user()
            rp = idp.client(backchannel_logout_uri=receiver.uri)
            tokens = idp.tokens(rp)
            idp.http.get("/logout", params={"id_token_hint": tokens["id_token"]})
            assert wait_until(lambda: len(receiver.tokens) == 1, timeout=4)
            assert host.count == 1  # still the first attempt: the deadline has not passed
    finally:
        receiver.close()


def test_the_secret_never_reaches_a_log(
    captured: Captured,  # noqa: F811  (the fixture)
    database_url: str,
    tmp_path: Path,
) -> None:
    """Neither a delivery, a failed attempt, a give-up nor the worker's start writes the secret
    (or a signature made with it) to any log line."""
    with (
        serve_slow("status", status=500) as host,
        with_webhook(database_url, tmp_path, host) as idp,
    ):
        webhook = webhook_of(idp, max_attempts=2)
        security_event(idp)
        deliver_all(webhook)
        webhook.deliver()
        with host.lock:
            host.status = 200
        security_event(idp)
        deliver_all(webhook)
        with host.lock:
            signatures = [s.headers[SIGNATURE_HEADER.lower()] for s in host.requests]
    logged = "\n".join(captured.lines())
    assert "security webhook" in logged and "webhook.gave_up" in logged
    assert SECRET not in logged
    assert not any(value.split("v1=")[1] in logged for value in signatures)


@pytest.mark.parametrize("outcome", ["delivered", "failed", "gave_up"])
def test_deliveries_are_counted_by_outcome(outcome: str) -> None:
    """idp_security_webhook_deliveries_total has one series per outcome."""
    from idp.ops import metrics

    before = webhook_metric(outcome)
    metrics.webhook_delivery(outcome)
    assert webhook_metric(outcome) == before + 1
