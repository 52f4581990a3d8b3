"""Migration 0018: the audit trail's chain columns (seq, unique; mac). Rows written before it
are sealed into the chain, in id order, at the next server start (a migration holds no KEK),
and a downgrade drops the columns and keeps the rows."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text

from idp.audit import chain
from idp.db.engine import make_engine
from idp.db.migrate import upgrade
from idp.runtime import build_runtime
from tests.conftest import make_settings
from tests.db.test_migration_0011 import _to


def test_rows_from_before_are_sealed_at_the_next_start(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path)
    engine = make_engine(settings)
    try:
        upgrade(engine)
        _to(engine, "0017")
        assert "seq" not in {c["name"] for c in inspect(engine).get_columns("audit_events")}
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_events"))
            for user in ("u1", "u2", "u3"):
                conn.execute(
                    text(
                        "INSERT INTO audit_events (at, event, user_id, detail)"
                        " VALUES (1, 'logout', :u, '{}')"
                    ),
                    {"u": user},
                )
        _to(engine, "head", up=True)
        build_runtime(settings).engine.dispose()  # a server's start seals them
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT user_id, seq FROM audit_events ORDER BY id")).all()
        assert [tuple(r) for r in rows[:3]] == [("u1", 1), ("u2", 2), ("u3", 3)]
        assert all(r.seq is not None for r in rows)
        with chain.write_sessions(engine, settings)() as db:
            assert chain.verify(db, chain.key_from_settings(settings)()).intact
        _to(engine, "0017")
        columns = {c["name"] for c in inspect(engine).get_columns("audit_events")}
        assert "seq" not in columns and "mac" not in columns
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM audit_events")).scalar_one() == len(rows)
        _to(engine, "head", up=True)
    finally:
        engine.dispose()
