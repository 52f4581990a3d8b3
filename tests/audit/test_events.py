"""The audit trail: values that cannot forge a log line, and retention (IDP_AUDIT_RETENTION_DAYS)
so unauthenticated requests cannot grow the table without bound."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from idp.audit.events import AuditEvent, record
from idp.ops.logs import TextFormatter, loggable
from idp.store.audit import AuditRecord
from idp.store.base import now
from idp.worker import prune
from tests.helpers import Harness
from tests.token_helpers import audit_events, sql

DAY = 86400


def test_an_attackers_client_id_cannot_forge_a_log_line(
    idp: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """OWASP Logging Cheat Sheet (log injection): a newline, an escape sequence or a bidi
    override in a logged value is escaped; the table keeps the value as it came."""
    evil = "nobody\n2026-12-02 INFO idp.audit login.succeeded user=admin\x1b[2K\u202e"
    with caplog.at_level(logging.INFO, logger="idp.audit"), idp.runtime.sessions.begin() as db:
        record(db, AuditEvent.CLIENT_AUTH_FAILED, client_id=evil, ip="10.0.0.1", why=evil)
    [line] = [TextFormatter().format(r) for r in caplog.records if r.name == "idp.audit"]
    assert "\n" not in line and "\x1b" not in line and "\u202e" not in line
    assert "client_id=nobody\\n2026-12-02" in line and "\\x1b[2K\\u202e" in line
    assert "why=nobody\\n" in line
    [row] = audit_events(idp, "client_auth.failed")
    assert row.client_id == evil


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("plain", "plain"),
        ("é ü 漢", "é ü 漢"),
        ("a\tb", "a\\tb"),
        ("\u2028", "\\u2028"),
        (None, "None"),
    ],
)
def test_loggable(value: object, shown: str) -> None:
    assert loggable(value) == shown


def _audit_at(idp: Harness, *ages_days: float) -> None:
    """A trail of rows this many days old, oldest first (the trail of a server that ran)."""
    sql(idp, "DELETE FROM audit_events")  # the start-up's rows are newer than the test's
    for age in ages_days:
        with idp.runtime.sessions.begin() as db:
            db.add(AuditRecord(at=now() - int(age * DAY), event="test.aged", detail={}))


def test_audit_events_older_than_the_retention_are_pruned(idp: Harness) -> None:
    _audit_at(idp, 402, 401, 399, 0)
    counts = prune(idp.runtime.sessions, batch=1)  # batch=1: several batches, each bounded
    assert counts["audit events"] == 2
    ages = sorted(
        (now() - r.at) // DAY
        for r in sql(idp, "SELECT at FROM audit_events WHERE event = 'test.aged'")
    )
    assert ages == [0, 399]


def test_a_row_past_the_retention_waits_behind_a_newer_one(idp: Harness) -> None:
    """The trail is pruned in chain order, so what stays is one unbroken chain: a row whose
    time is older than a row written before it (another node's clock) goes with it."""
    _audit_at(idp, 401, 10, 402, 0)
    assert prune(idp.runtime.sessions)["audit events"] == 1
    ages = [
        r.at for r in sql(idp, "SELECT at FROM audit_events WHERE event = 'test.aged' ORDER BY seq")
    ]
    assert [(now() - at) // DAY for at in ages] == [10, 402, 0]


def test_the_retention_is_a_setting(idp: Harness, tmp_path: Path) -> None:
    _audit_at(idp, 31, 29)
    prune(idp.runtime.sessions, audit_retention_days=30)
    ages = [
        (now() - r.at) // DAY
        for r in sql(idp, "SELECT at FROM audit_events WHERE event = 'test.aged'")
    ]
    assert ages == [29]
