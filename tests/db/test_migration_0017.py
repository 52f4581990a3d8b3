"""Migration 0017: the pending_changes table of four-eyes approvals comes with its keys to
users and clients (a change goes with its user or client), and goes on a downgrade without
touching anyone's roles."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text

from idp.db.engine import make_engine
from idp.db.migrate import upgrade
from tests.conftest import make_settings
from tests.db.test_migration_0011 import _to

ROW = (
    "INSERT INTO pending_changes (id, kind, status, user_id, role, requested_by, requested_at,"
    " expires_at) VALUES ('c1', 'role_grant', 'pending', 'u1', 'admin', 'cli', 1, 86401)"
)


def test_pending_changes_come_and_go(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(make_settings(database_url, tmp_path))
    try:
        upgrade(engine)
        _to(engine, "0016")
        assert "pending_changes" not in inspect(engine).get_table_names()
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, email_verified, disabled,"
                    " created_at, updated_at) VALUES ('u1', 'u1@example.com', 'x', false, false,"
                    " 0, 0)"
                )
            )
            conn.execute(
                text("INSERT INTO user_roles (user_id, role, granted_at) VALUES ('u1', 'ops', 0)")
            )
        _to(engine, "0017", up=True)
        with engine.begin() as conn:
            conn.execute(text(ROW))
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM users WHERE id = 'u1'"))
            assert conn.execute(text("SELECT count(*) FROM pending_changes")).scalar_one() == 0
            conn.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, email_verified, disabled,"
                    " created_at, updated_at) VALUES ('u1', 'u1@example.com', 'x', false, false,"
                    " 0, 0)"
                )
            )
            conn.execute(
                text("INSERT INTO user_roles (user_id, role, granted_at) VALUES ('u1', 'ops', 0)")
            )
            conn.execute(text(ROW))
        _to(engine, "0016")
        assert "pending_changes" not in inspect(engine).get_table_names()
        with engine.connect() as conn:
            held = conn.execute(text("SELECT user_id, role FROM user_roles")).all()
        assert [tuple(r) for r in held] == [("u1", "ops")]
        _to(engine, "head", up=True)
    finally:
        engine.dispose()
