"""`idp audit export` and `idp audit tail` (issue 15's "Export format"): the audit trail as JSON
lines for a SIEM, one event per line with fixed keys, filtered by time and event type, read in
keyset pages, and followed as new events are committed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

import idp.audit.events as events_module
import idp.cli.audit as cli_audit
import idp.store.audit as store_audit
from idp.audit.events import AuditEvent, record
from tests.cli.test_main import Cli, cli, one_line_error  # noqa: F401  (the fixture)
from tests.helpers import Harness

DEC_1 = int(datetime(2025, 12, 1, 10, 0, 0, tzinfo=UTC).timestamp())
KEYS = {"id", "time", "event", "actor", "subject", "client", "address", "details"}


def put(idp: Harness, event: AuditEvent, at: int | None = None, **fields: Any) -> None:
    """Record one event in its own committed transaction, at Unix time `at` (now if None)."""
    with pytest.MonkeyPatch.context() as mp:
        if at is not None:
            mp.setattr(events_module, "now", lambda: at)
        with idp.runtime.sessions.begin() as db:
            record(db, event, **fields)


def lines_of(stdout: str) -> list[dict[str, Any]]:
    """The output's lines (split on "\\n" only, as a SIEM splits them), each one JSON object."""
    assert stdout == "" or stdout.endswith("\n")
    return [json.loads(line) for line in stdout.split("\n")[:-1]]


def exported(tool: Cli, *flags: str) -> list[dict[str, Any]]:
    return lines_of(tool.ok("audit", "export", *flags).stdout)


def test_export_format_has_every_key_in_one_line_per_event(idp: Harness, cli: Cli) -> None:  # noqa: F811
    """Export format, for a SIEM: exactly the keys id, time (RFC 3339 UTC with Z, from `at`),
    event, actor, subject {user_id, client_id}, client, address and details; a detail value
    with a newline (or U+2028, or a quote) stays inside its one line."""
    before = len(exported(cli))
    tricky = 'line one\nline two\r\n{"id": 0, "event": "forged"}\u2028é'
    put(
        idp,
        AuditEvent.CLIENT_UPDATED,
        at=DEC_1 + 5,
        user_id="u-1",
        client_id="c-1",
        ip="192.0.2.7",
        actor="cli",
        reason=tricky,
        changes={"name": {"before": "a", "after": "b"}},
    )
    put(idp, AuditEvent.KEY_CREATED, at=DEC_1 + 6, kid="k1")
    out = cli.ok("audit", "export").stdout
    assert out.count("\n") == before + 2
    *_, updated, key = lines_of(out)
    assert set(updated) == KEYS and set(key) == KEYS
    assert updated["time"] == "2025-12-01T10:00:05Z"
    assert updated["event"] == "client.updated" and updated["actor"] == "cli"
    assert updated["subject"] == {"user_id": "u-1", "client_id": "c-1"}
    assert updated["client"] == "c-1" and updated["address"] == "192.0.2.7"
    assert updated["details"] == {
        "reason": tricky,
        "changes": {"name": {"before": "a", "after": "b"}},
    }
    assert key["id"] > updated["id"]
    assert key["subject"] == {"user_id": None, "client_id": None}
    assert key["client"] is None and key["address"] is None and key["actor"] is None
    assert key["details"] == {"kid": "k1"}
    assert "é" in out  # ensure_ascii=False: as written, not \u00e9
    assert '"time":"2025-12-01T10:00:06Z"' in out  # compact separators


def test_export_since_until_accept_rfc3339_unix_and_durations(idp: Harness, cli: Cli) -> None:  # noqa: F811
    """--since is inclusive and --until exclusive, each as RFC 3339 (Z or an offset), Unix
    seconds, or a duration ago (30m, 24h, 7d); the output is oldest first."""
    for offset, kid in ((0, "a"), (3600, "b"), (7200, "c")):
        put(idp, AuditEvent.LOGOUT, at=DEC_1 + offset, user_id=kid)

    def kids(*flags: str) -> list[object]:
        return [e["subject"]["user_id"] for e in exported(cli, "--event", "logout", *flags)]

    assert kids("--since", "2025-12-01T11:00:00Z") == ["b", "c"]
    assert kids("--since", "2025-12-01T12:00:00+01:00") == ["b", "c"]  # 11:00 UTC
    assert kids("--since", "2025-12-01T10:59:59.5Z") == ["b", "c"]  # rounds up
    assert kids("--since", str(DEC_1 + 3601)) == ["c"]
    assert kids("--until", str(DEC_1 + 3600)) == ["a"]
    assert kids("--since", str(DEC_1), "--until", "2025-12-01T12:00:00Z") == ["a", "b"]
    real_now = int(time.time())
    put(idp, AuditEvent.LOGOUT, at=real_now - 2 * 86400, user_id="two days ago")
    put(idp, AuditEvent.LOGOUT, at=real_now - 3600, user_id="an hour ago")
    assert kids("--since", "24h") == ["an hour ago"]
    assert kids("--since", "3d") == ["two days ago", "an hour ago"]
    assert kids("--since", "90m") == ["an hour ago"]
    assert kids("--since", "30m") == []


def test_export_event_filter_is_repeatable(idp: Harness, cli: Cli) -> None:  # noqa: F811
    """--event keeps only the types given, and may be given more than once."""
    put(idp, AuditEvent.KEY_CREATED, kid="k")
    put(idp, AuditEvent.USER_CREATED, user_id="u")
    put(idp, AuditEvent.LOGOUT, user_id="u")
    assert {e["event"] for e in exported(cli, "--event", "logout")} == {"logout"}
    both = exported(cli, "--event", "logout", "--event", "user.created")
    assert [e["event"] for e in both if e["subject"]["user_id"] == "u"] == [
        "user.created",
        "logout",
    ]


def test_export_unknown_event_and_bad_time_are_one_line_errors(cli: Cli) -> None:  # noqa: F811
    """An event the closed list (AuditEvent) does not hold, and a TIME that is not one, each
    fail with one line naming it, and print nothing."""
    error = one_line_error(cli.run("audit", "export", "--event", "login.maybe"))
    assert "'login.maybe'" in error and "not an audit event" in error
    for bad in ("yesterday", "2025-12-01T10:00:00", "12x", "-5m", ""):
        error = one_line_error(cli.run("audit", "export", f"--since={bad}"))
        assert "--since" in error and repr(bad) in error
    assert "--until" in one_line_error(cli.run("audit", "export", "--until", "soon"))
    tail = one_line_error(cli.run("audit", "tail", "--event", "nope", "--max-seconds", "0"))
    assert "'nope'" in tail


def test_export_reads_keyset_pages(
    idp: Harness,
    cli: Cli,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """More rows than one page: every row comes out once, oldest first, read page by page
    (each query asks for at most PAGE_SIZE rows after the last id seen)."""
    monkeypatch.setattr(cli_audit, "PAGE_SIZE", 2)
    calls: list[tuple[int, int]] = []
    original = store_audit.search_after

    def spy(db: Any, query: Any, after_id: int, limit: int, up_to_id: int | None = None) -> Any:
        calls.append((after_id, limit))
        return original(db, query, after_id, limit, up_to_id)

    monkeypatch.setattr(store_audit, "search_after", spy)
    for n in range(7):
        put(idp, AuditEvent.KEY_CREATED, kid=f"page-{n}")
    rows = exported(cli, "--event", "key.created")
    kids = [e["details"]["kid"] for e in rows if e["details"].get("kid", "").startswith("page-")]
    assert kids == [f"page-{n}" for n in range(7)]
    ids = [e["id"] for e in rows]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert len(calls) >= 4 and {limit for _, limit in calls} == {2}
    assert [after for after, _ in calls] == [0, *(ids[i] for i in range(1, len(calls) * 2 - 1, 2))]


def test_tail_prints_the_last_lines_then_follows_new_events(
    idp: Harness,
    cli: Cli,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """tail prints the last --lines events, then an event another transaction commits while it
    polls arrives after them, in the same format; --max-seconds ends it with status 0."""
    for n in range(4):
        put(idp, AuditEvent.KEY_CREATED, kid=f"old{n}")
    started = threading.Event()
    original = store_audit.last_id

    def spy(db: Any) -> int:
        top = original(db)
        started.set()
        return top

    monkeypatch.setattr(store_audit, "last_id", spy)
    result: list[Any] = []
    args = ("audit", "tail", "--lines", "2", "--interval", "0.1", "--max-seconds", "2")
    thread = threading.Thread(target=lambda: result.append(cli.run(*args)))
    thread.start()
    assert started.wait(10)
    put(idp, AuditEvent.USER_CREATED, user_id="new-user", ip="198.51.100.1")
    put(idp, AuditEvent.LOGOUT, user_id="new-user")
    thread.join(20)
    assert not thread.is_alive()
    (done,) = result
    assert done.returncode == 0 and done.stderr == ""
    old1, old2, new, logout = lines_of(done.stdout)
    assert [old1["details"], old2["details"]] == [{"kid": "old2"}, {"kid": "old3"}]
    assert new["event"] == "user.created" and set(new) == KEYS
    assert new["subject"] == {"user_id": "new-user", "client_id": None}
    assert new["address"] == "198.51.100.1" and new["time"].endswith("Z")
    assert logout["event"] == "logout" and old2["id"] < new["id"] < logout["id"]


def test_tail_event_filter_and_since(
    idp: Harness,
    cli: Cli,  # noqa: F811
) -> None:
    """tail's --event and --since narrow the first lines as export's do."""
    put(idp, AuditEvent.LOGOUT, at=DEC_1, user_id="early")
    put(idp, AuditEvent.LOGOUT, at=DEC_1 + 60, user_id="late")
    put(idp, AuditEvent.KEY_CREATED, at=DEC_1 + 120, kid="k")
    out = cli.ok(
        "audit", "tail", "--event", "logout", "--since", str(DEC_1 + 1), "--max-seconds", "0"
    )
    assert [e["subject"]["user_id"] for e in lines_of(out.stdout)] == ["late"]
    none = cli.ok("audit", "tail", "--lines", "0", "--max-seconds", "0")
    assert none.stdout == ""


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_tail_ends_quietly_on_ctrl_c_and_sigterm(
    idp: Harness,
    cli: Cli,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    """Interrupted while it waits (Ctrl-C, or SIGTERM as a service manager sends), tail exits
    0 with the lines so far and nothing on stderr."""
    put(idp, AuditEvent.KEY_CREATED, kid="shown")

    real_sleep = time.sleep

    def interrupted(_seconds: float) -> None:
        if how == "ctrl-c":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)
        real_sleep(5)  # the handler raises here, in the main thread

    monkeypatch.setattr(cli_audit.time, "sleep", interrupted)
    before = signal.getsignal(signal.SIGTERM)
    done = cli.run("audit", "tail", "--lines", "1")
    assert done.returncode == 0 and done.stderr == ""
    assert [e["details"] for e in lines_of(done.stdout)] == [{"kid": "shown"}]
    assert signal.getsignal(signal.SIGTERM) == before


def test_tail_shows_an_event_whose_lower_id_commits_late(
    idp: Harness,
    cli: Cli,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On PostgreSQL an id is taken at insert and a transaction can commit after a later one:
    tail shows the later id first, looks for the id it skipped at the next polls, and shows
    it when it commits (simulated here with explicit ids, on every backend)."""
    started = threading.Event()
    original = store_audit.last_id

    def spy(db: Any) -> int:
        top = original(db)
        started.set()
        return top

    monkeypatch.setattr(store_audit, "last_id", spy)
    with idp.runtime.sessions.begin() as db:
        base = original(db)
    result: list[Any] = []
    args = ("audit", "tail", "--lines", "0", "--interval", "0.1", "--max-seconds", "2.5")
    thread = threading.Thread(target=lambda: result.append(cli.run(*args)))
    thread.start()
    assert started.wait(10)

    def insert(row_id: int, who: str) -> None:
        with idp.runtime.sessions.begin() as db:
            db.add(
                store_audit.AuditRecord(id=row_id, at=int(time.time()), event="logout", user_id=who)
            )

    insert(base + 2, "committed first")
    time.sleep(0.6)  # tail has shown it, and missed base + 1
    insert(base + 1, "committed late")
    thread.join(20)
    (done,) = result
    assert done.returncode == 0, done.stderr
    shown = [(e["id"], e["subject"]["user_id"]) for e in lines_of(done.stdout)]
    assert shown == [(base + 2, "committed first"), (base + 1, "committed late")]


def test_export_into_a_reader_that_stops_early_ends_quietly(idp: Harness, cli: Cli) -> None:  # noqa: F811
    """`idp audit export | head -1`: the closed pipe ends the export with status 0 and no
    traceback (the reader has what it wanted)."""
    from idp.store.audit import AuditRecord

    with idp.runtime.sessions.begin() as db:
        db.add_all(
            AuditRecord(at=DEC_1 + i, event="login.succeeded", detail={"amr": "pwd" * 20})
            for i in range(3000)  # far more than a pipe's buffer holds
        )
    env = {**cli.env, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "idp", "audit", "export"],
        env=env,
        cwd=cli.cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    with process.stdout, process.stderr:
        first = process.stdout.readline()
        process.stdout.close()
        assert process.wait(timeout=60) == 0
        assert "event" in json.loads(first)
        assert process.stderr.read() == b""
