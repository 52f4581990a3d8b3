"""Audit without flooding (issue 11): failures of unauthenticated requests are counted per
(address, client, kind) and minute in a table of their own, and one audit event is appended
when the minute closes, so nothing in the audit trail is ever changed in place."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from idp.audit import events
from idp.settings import Settings
from idp.worker import close_failure_minutes, prune
from tests.conftest import make_settings
from tests.helpers import Harness, basic
from tests.token_helpers import json_of, sql

MINUTE = 1_900_000_040  # 20 s into a minute (1_900_000_020 starts one)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # Enough budget that every failure below is judged (the throttle is tested elsewhere).
    return make_settings(
        database_url, tmp_path, throttle_client_limit=1000, forwarded_allow_ips="testclient"
    )


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    ts = [MINUTE]
    monkeypatch.setattr(events, "now", lambda: ts[0])
    return ts


def fail_auth(idp: Harness, client_id: str, ip: str, times: int = 1) -> None:
    for _ in range(times):
        response = idp.http.post(
            "/token",
            data={"grant_type": "client_credentials"},
            headers={**basic(client_id, "wrong"), "X-Forwarded-For": ip},
        )
        assert response.status_code == 401


def trail(idp: Harness) -> list[tuple[str, str | None, str | None, int, int]]:
    rows = sql(idp, "SELECT event, ip, client_id, detail, at FROM audit_events ORDER BY id")
    return [(e, ip, c, json_of(d).get("count"), at) for e, ip, c, d, at in rows]


def tallied(idp: Harness) -> int:
    return int(sql(idp, "SELECT count(*) FROM failure_tallies")[0][0])


def test_a_flood_in_one_minute_is_one_event_with_its_count(
    idp: Harness, clock: list[int]
) -> None:
    """Two hundred failed authentications from one address in one minute write no audit row
    meanwhile, and one client_auth.failed event with count 200 once the minute has closed."""
    service = idp.client(grant_types=["client_credentials"], scopes=["api"], redirect_uris=[])
    before = len(trail(idp))
    fail_auth(idp, service.client_id, "203.0.113.1", 200)
    assert len(trail(idp)) == before and tallied(idp) == 1
    with idp.runtime.sessions.begin() as db:
        # Not yet: the minute ends at +40 s, and closes a few seconds later.
        assert events.close_minutes(db, MINUTE + 40) == 0
        assert events.close_minutes(db, MINUTE + 40 + events.CLOSE_GRACE_SECONDS) == 1
    minute = MINUTE - MINUTE % 60
    assert trail(idp)[before:] == [
        ("client_auth.failed", "203.0.113.1", service.client_id, 200, minute + 59)
    ]
    [(detail,)] = sql(idp, "SELECT detail FROM audit_events WHERE event = 'client_auth.failed'")
    assert json_of(detail)["minute"] == minute and json_of(detail)["reason"]
    assert tallied(idp) == 0


def test_one_event_per_address_client_kind_and_minute(idp: Harness, clock: list[int]) -> None:
    """The keys of a tally: another address, another client, another kind or another minute
    is an event of its own."""
    idp.user()
    for ip in ("203.0.113.1", "203.0.113.2"):
        for client_id in ("client-a", "client-b"):
            fail_auth(idp, client_id, ip, 2)
    clock[0] += 60  # the next minute
    fail_auth(idp, "client-a", "203.0.113.1")
    with idp.runtime.sessions.begin() as db:
        assert events.close_minutes(db, MINUTE + 200) == 5
    counted = sorted((ip, c, n) for e, ip, c, n, _ in trail(idp) if e == "client_auth.failed")
    assert counted == [
        ("203.0.113.1", "client-a", 1),
        ("203.0.113.1", "client-a", 2),
        ("203.0.113.1", "client-b", 2),
        ("203.0.113.2", "client-a", 2),
        ("203.0.113.2", "client-b", 2),
    ]


def test_failed_sign_ins_and_csrf_refusals_are_tallied_too(
    idp: Harness, clock: list[int]
) -> None:
    """login.failed and csrf.rejected, which any stranger can cause, are tallied the same way;
    an event that needs an authenticated caller (login.succeeded) is written at once."""
    from tests.helpers import PASSWORD, form_fields

    idp.user()
    for _ in range(3):
        assert idp.login(password="wrong password").status_code == 400
    fields = form_fields(idp.http.get("/login").text)
    fields.update(email="alice@example.com", password=PASSWORD, csrf_token="x" * 43)
    assert idp.http.post("/login", data=fields).status_code == 403
    assert idp.login().status_code == 303
    assert [e for e, *_ in trail(idp)][-1] == "login.succeeded"
    with idp.runtime.sessions.begin() as db:
        events.close_minutes(db, MINUTE + 100)
    counts = {e: n for e, _, _, n, _ in trail(idp) if e in ("login.failed", "csrf.rejected")}
    assert counts == {"login.failed": 3, "csrf.rejected": 1}


def test_two_workers_closing_at_once_append_each_minute_once(
    idp: Harness, clock: list[int]
) -> None:
    """DELETE ... RETURNING: two closers racing (two workers, or `idp prune` beside a server)
    never both write one tally, on SQLite and PostgreSQL."""
    for n in range(40):
        fail_auth(idp, f"client-{n}", "203.0.113.9")
    appended: list[int] = []
    start = threading.Barrier(2)

    def close() -> None:
        start.wait()
        appended.append(close_failure_minutes(idp.runtime.sessions, batch=7))

    threads = [threading.Thread(target=close) for _ in range(2)]
    clock[0] += 120
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sum(appended) == 40
    assert sum(1 for e, *_ in trail(idp) if e == "client_auth.failed") == 40
    assert tallied(idp) == 0


def test_prune_audits_closed_minutes_first(idp: Harness, clock: list[int]) -> None:
    """`idp prune` (and each server's pruning) writes the closed minutes' events too, so a
    deployment without a running server still gets them."""
    fail_auth(idp, "client-x", "203.0.113.4", 3)
    clock[0] += 120
    assert prune(idp.runtime.sessions)["failure minutes audited"] == 1
    assert [n for e, _, _, n, _ in trail(idp) if e == "client_auth.failed"] == [3]


def test_a_quiet_worker_takes_no_write_lock(idp: Harness, clock: list[int]) -> None:
    """The worker's tick looks in a read-only transaction first: with nothing to close it
    opens no write transaction."""
    opened: list[str] = []
    real_begin = idp.runtime.sessions.begin

    def spying_begin() -> object:
        opened.append("write")
        return real_begin()

    idp.runtime.sessions.begin = spying_begin  # type: ignore[method-assign]
    try:
        assert close_failure_minutes(idp.runtime.sessions, reads=idp.runtime.reads) == 0
    finally:
        idp.runtime.sessions.begin = real_begin  # type: ignore[method-assign]
    assert opened == []

