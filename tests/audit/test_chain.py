"""The audit trail's hash chain (issue 15, "Tamper evidence"): every row carries an HMAC-SHA256
under a key derived from the KEK over its content and the previous row's MAC, so an edited, a
deleted or an inserted row is found and named; appends from several processes are serialised;
the head is logged at every append; pruning leaves a chained checkpoint to start from."""

from __future__ import annotations

import json
import logging
import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from idp.audit import chain
from idp.audit.events import AuditEvent, record
from idp.db.engine import make_engine, make_sessionmaker
from idp.store import audit_chain
from idp.store.audit import AuditRecord
from idp.store.audit_chain import CHAIN_KEY, ChainKeyMissing, Head
from idp.store.base import now
from idp.worker import prune
from tests.conftest import make_settings
from tests.helpers import Harness
from tests.refresh_helpers import OFFLINE_SCOPE, offline_client, refresh
from tests.token_helpers import sql

DAY = 86400


def key_of(idp: Harness) -> bytes:
    """The key the server seals its audit rows with."""
    provider = idp.runtime.sessions.kw["info"][CHAIN_KEY]
    return bytes(provider())


def verify(idp: Harness, key: bytes | None = None, head: Head | None = None) -> chain.Verdict:
    with idp.runtime.reads() as db:
        return chain.verify(db, key or key_of(idp), head)


def put(idp: Harness, n: int = 1, event: AuditEvent = AuditEvent.USER_CREATED) -> None:
    for i in range(n):
        with idp.runtime.sessions.begin() as db:
            record(db, event, user_id=f"u{i}", note=f"row {i}")


def rows(idp: Harness) -> list[Any]:
    return sql(idp, "SELECT id, seq, mac, event FROM audit_events ORDER BY seq")


def some_flows(idp: Harness) -> None:
    """Sign-ins, a code exchange, a refresh-token reuse: the rows a running server writes."""
    idp.user()
    rp = offline_client(idp)
    token = idp.tokens(rp, scope=OFFLINE_SCOPE)["refresh_token"]
    successor = refresh(idp, rp, token).json()["refresh_token"]
    assert refresh(idp, rp, successor).status_code == 200
    assert refresh(idp, rp, token).status_code == 400  # reuse: the family is revoked


def test_the_trail_of_real_flows_verifies(idp: Harness) -> None:
    """Every row a server writes (start-up keys, user, client, sign-in, consent, a refresh
    reuse) is in one unbroken chain: seq 1, 2, ... with a MAC each."""
    some_flows(idp)
    chained = rows(idp)
    assert [r.seq for r in chained] == list(range(1, len(chained) + 1))
    assert all(len(r.mac) == 64 for r in chained)
    assert "refresh.reused" in {r.event for r in chained}
    verdict = verify(idp)
    assert verdict.intact, verdict.broken
    assert verdict.checked == len(chained) and verdict.last_seq == len(chained)
    assert verdict.head_mac == chained[-1].mac


def test_the_chain_needs_the_kek(idp: Harness) -> None:
    """Someone without the KEK cannot check (or recompute) the chain: another key's walk
    breaks at the first row."""
    put(idp)
    verdict = verify(idp, key=b"\x00" * 32)
    assert not verdict.intact
    assert "seq 1" in (verdict.broken or "")


def test_an_edited_row_is_named(idp: Harness) -> None:
    """A row whose content changed no longer matches its MAC; it is the first broken row."""
    put(idp, 4)
    victim = rows(idp)[-3]
    sql(idp, "UPDATE audit_events SET user_id = 'someone-else' WHERE id = :id", id=victim.id)
    verdict = verify(idp)
    assert not verdict.intact
    assert f"row id {victim.id} (seq {victim.seq}" in (verdict.broken or "")
    assert "edited" in (verdict.broken or "")


def test_an_edit_with_a_recomputed_plain_hash_is_still_found(idp: Harness) -> None:
    """Copying another row's MAC onto an edited row does not help: the MAC covers the row's
    own place and content."""
    put(idp, 3)
    first, second = rows(idp)[-2:]
    sql(idp, "UPDATE audit_events SET mac = :m WHERE id = :id", m=first.mac, id=second.id)
    verdict = verify(idp)
    assert f"row id {second.id}" in (verdict.broken or "")


def test_a_deleted_row_is_named(idp: Harness) -> None:
    """A row deleted from the middle leaves a gap in the sequence: the row after it is
    named, and so is the missing number."""
    put(idp, 4)
    victim, after = rows(idp)[-3:-1]
    sql(idp, "DELETE FROM audit_events WHERE id = :id", id=victim.id)
    verdict = verify(idp)
    assert not verdict.intact
    assert f"seq {victim.seq} is missing before row id {after.id}" in (verdict.broken or "")


def test_an_inserted_row_outside_the_chain_is_named(idp: Harness) -> None:
    """A row inserted with SQL carries no place in the chain: it is reported as inserted."""
    put(idp, 2)
    sql(
        idp,
        "INSERT INTO audit_events (at, event, user_id, detail) "
        "VALUES (:at, 'login.succeeded', 'alibi', '{}')",
        at=now(),
    )
    [forged] = sql(idp, "SELECT id FROM audit_events WHERE seq IS NULL")
    verdict = verify(idp)
    assert not verdict.intact
    assert f"row id {forged.id} (login.succeeded) is outside the chain" in (verdict.broken or "")


def test_an_inserted_row_with_a_forged_place_is_named(idp: Harness) -> None:
    """A row given the next seq and a made-up MAC (or the previous row's MAC) fails its MAC:
    without the KEK nobody can compute the right one."""
    put(idp, 2)
    last = rows(idp)[-1]
    sql(
        idp,
        "INSERT INTO audit_events (at, event, user_id, detail, seq, mac) "
        "VALUES (:at, 'login.succeeded', 'alibi', '{}', :seq, :mac)",
        at=now(),
        seq=last.seq + 1,
        mac=last.mac,
    )
    [forged] = sql(idp, "SELECT id FROM audit_events WHERE seq = :s", s=last.seq + 1)
    verdict = verify(idp)
    assert f"row id {forged.id} (seq {last.seq + 1}, login.succeeded)" in (verdict.broken or "")


def test_the_head_is_logged_at_every_append(idp: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """The head (seq and MAC) goes to the log as each appending transaction commits, so rows
    cut off the end of the table are evident: `verify` against the logged head fails."""
    with caplog.at_level(logging.INFO, logger="idp.audit.chain"):
        put(idp, 3)
    heads = [r.fields for r in caplog.records if r.name == "idp.audit.chain"]  # type: ignore[attr-defined]
    assert len(heads) == 3
    last = rows(idp)[-1]
    assert heads[-1] == {"seq": last.seq, "mac": last.mac}
    logged = Head(heads[-1]["seq"], heads[-1]["mac"])
    assert verify(idp, head=logged).intact
    sql(idp, "DELETE FROM audit_events WHERE seq >= :s", s=last.seq - 1)  # the tail cut off
    assert verify(idp).intact  # the chain alone cannot tell ...
    verdict = verify(idp, head=logged)  # ... the logged head can
    assert not verdict.intact
    assert f"before the logged head seq {last.seq}" in (verdict.broken or "")


def test_a_transaction_that_writes_no_audit_row_logs_no_head(
    idp: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    service = idp.client(grant_types=["client_credentials"], scopes=["api"], redirect_uris=[])
    with caplog.at_level(logging.INFO, logger="idp.audit.chain"):
        response = idp.client_credentials(service)
    assert response.status_code == 200, response.text
    assert [r for r in caplog.records if r.name == "idp.audit.chain"] == []


def test_a_rolled_back_savepoint_takes_no_number(
    idp: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A row written in a savepoint that rolls back is gone and leaves no gap; the head is
    logged once, when the transaction commits."""
    before = len(rows(idp))
    with (
        caplog.at_level(logging.INFO, logger="idp.audit.chain"),
        idp.runtime.sessions.begin() as db,
    ):
        record(db, AuditEvent.USER_CREATED, user_id="kept-1")
        savepoint = db.begin_nested()
        record(db, AuditEvent.USER_CREATED, user_id="undone")
        db.flush()
        savepoint.rollback()
        with db.begin_nested():
            record(db, AuditEvent.USER_CREATED, user_id="kept-2")
    chained = rows(idp)
    assert len(chained) == before + 2
    assert [r.seq for r in chained] == list(range(1, before + 3))
    heads = [r.fields for r in caplog.records if r.name == "idp.audit.chain"]  # type: ignore[attr-defined]
    assert heads == [{"seq": before + 2, "mac": chained[-1].mac}]
    assert sql(idp, "SELECT count(*) AS n FROM audit_events WHERE user_id = 'undone'")[0].n == 0
    assert verify(idp).intact


def test_a_commit_with_a_savepoint_still_open_seals_its_rows(idp: Harness) -> None:
    """A transaction that commits while a savepoint is open (as the refresh grant does when it
    detects a reuse) seals the rows of both."""
    before = len(rows(idp))
    with idp.runtime.sessions.begin() as db:
        db.begin_nested()
        record(db, AuditEvent.REFRESH_REUSED, user_id="in-savepoint")
    assert [r.seq for r in rows(idp)] == list(range(1, before + 2))
    assert verify(idp).intact


def test_a_rolled_back_transaction_takes_no_number(idp: Harness) -> None:
    before = len(rows(idp))
    with pytest.raises(RuntimeError), idp.runtime.sessions.begin() as db:
        record(db, AuditEvent.USER_CREATED, user_id="undone")
        db.flush()
        raise RuntimeError("boom")
    put(idp)
    assert [r.seq for r in rows(idp)] == list(range(1, before + 2))
    assert verify(idp).intact


def test_an_audit_row_without_a_chain_key_is_refused(idp: Harness, tmp_path: Path) -> None:
    """A session factory with no chain key cannot commit an audit row (an unsealed row would
    read as tampering); nothing of that transaction is written."""
    engine = make_engine(make_settings(str(idp.runtime.engine.url), tmp_path))
    try:
        bare: sessionmaker[Session] = make_sessionmaker(engine)
        before = len(rows(idp))
        with pytest.raises(ChainKeyMissing), bare.begin() as db:
            db.add(AuditRecord(at=now(), event="user.created", detail={}))
        assert len(rows(idp)) == before
    finally:
        engine.dispose()


# --- retention -----------------------------------------------------------------------------------


def aged(idp: Harness, *ages_days: int) -> None:
    sql(idp, "DELETE FROM audit_events")  # the start-up's rows are newer than the test's
    for age in ages_days:
        with idp.runtime.sessions.begin() as db:
            db.add(AuditRecord(at=now() - age * DAY, event="test.aged", detail={}))


def test_pruning_appends_a_checkpoint_and_the_rest_verifies(idp: Harness) -> None:
    """Retention deletes the oldest rows and appends a chained checkpoint naming the last one
    deleted (its seq and MAC): verification starts there, and the pruned rows are not gaps."""
    aged(idp, 403, 402, 401, 5, 1)
    doomed = rows(idp)[:3]
    counts = prune(idp.runtime.sessions, batch=2)
    assert counts["audit events"] == 3
    [first, second] = sql(
        idp, "SELECT seq, detail FROM audit_events WHERE event = 'audit.checkpoint' ORDER BY seq"
    )
    detail = first.detail if isinstance(first.detail, dict) else json.loads(first.detail)
    assert detail["reason"] == "retention" and detail["through_seq"] == doomed[1].seq
    assert detail["through_mac"] == doomed[1].mac and detail["pruned"] == 2
    verdict = verify(idp)
    assert verdict.intact, verdict.broken
    assert verdict.first_seq == doomed[2].seq + 1  # from the newest checkpoint on
    assert verdict.checked == 4  # two kept rows and two checkpoints
    assert second.seq == verdict.last_seq


def test_a_forged_checkpoint_is_found(idp: Harness) -> None:
    """A checkpoint edited to skip rows (a later through_seq) no longer matches its MAC,
    and the walk from it reaches it."""
    aged(idp, 402, 401, 5, 4, 3)
    prune(idp.runtime.sessions)
    [cp] = sql(idp, "SELECT id, seq, detail FROM audit_events WHERE event = 'audit.checkpoint'")
    last_kept = rows(idp)[-2]
    forged = json.dumps(
        {"reason": "retention", "through_seq": last_kept.seq, "through_mac": last_kept.mac}
    )
    sql(idp, "UPDATE audit_events SET detail = :d WHERE id = :id", d=forged, id=cp.id)
    verdict = verify(idp)
    assert f"row id {cp.id}" in (verdict.broken or "")


def test_deleting_the_newest_checkpoint_shows_the_pruned_rows_as_deleted(idp: Harness) -> None:
    aged(idp, 402, 401, 5)
    prune(idp.runtime.sessions)
    sql(idp, "DELETE FROM audit_events WHERE event = 'audit.checkpoint'")
    verdict = verify(idp)
    assert "seq 1 is missing" in (verdict.broken or "")


# --- several processes ---------------------------------------------------------------------------


def _append_from_process(url: str, tmp: str, n: int, tag: str, go: Any) -> None:
    """A process of its own (as another server worker), appending n rows one transaction
    each, after the start signal."""
    settings = make_settings(url, Path(tmp))
    engine = make_engine(settings)
    factory = chain.write_sessions(engine, settings)
    go.wait(30)
    for i in range(n):
        with factory.begin() as db:
            record(db, AuditEvent.USER_CREATED, user_id=f"{tag}-{i}")
    engine.dispose()


def test_concurrent_appends_from_two_processes_stay_one_chain(idp: Harness, tmp_path: Path) -> None:
    """Two processes appending at once (the SQLite write lock, a PostgreSQL advisory lock)
    give one contiguous sequence that verifies, with every row of both in it."""
    before = len(rows(idp))
    url = idp.runtime.engine.url.render_as_string(hide_password=False)
    # Forked: each child builds an engine of its own and uses nothing of the parent's.
    fork = multiprocessing.get_context("fork")
    go = fork.Event()
    procs = [
        fork.Process(target=_append_from_process, args=(url, str(tmp_path), 40, tag, go))
        for tag in ("a", "b")
    ]
    for proc in procs:
        proc.start()
    go.set()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    chained = rows(idp)
    assert len(chained) == before + 80
    assert [r.seq for r in chained] == list(range(1, before + 81))
    verdict = verify(idp)
    assert verdict.intact, verdict.broken


def test_rows_from_before_the_chain_are_sealed_once(idp: Harness) -> None:
    """Rows written before the chain existed (migration 0018 adds it) are sealed in id order
    at the next start; once the chain has rows, a row without a place stays outside it."""
    sql(idp, "DELETE FROM audit_events")
    for i in range(3):
        sql(
            idp,
            "INSERT INTO audit_events (at, event, user_id, detail)"
            " VALUES (:at, 'logout', :u, '{}')",
            at=now(),
            u=f"old-{i}",
        )
    assert chain.seal_legacy(idp.runtime.sessions) == 3
    sealed = rows(idp)
    assert [r.seq for r in sealed] == [1, 2, 3]
    assert verify(idp).intact
    sql(idp, "INSERT INTO audit_events (at, event, detail) VALUES (:at, 'logout', '{}')", at=now())
    assert chain.seal_legacy(idp.runtime.sessions) == 0
    assert "outside the chain" in (verify(idp).broken or "")


def test_the_checkpoint_event_is_in_the_closed_list() -> None:
    assert AuditEvent.AUDIT_CHECKPOINT == audit_chain.CHECKPOINT
