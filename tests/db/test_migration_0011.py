"""Migration 0011: `users.is_admin` becomes the reserved `admin` role, and back again on a
downgrade, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import Engine, inspect, text

from idp.db.engine import make_engine
from idp.db.migrate import alembic_config, upgrade
from tests.conftest import make_settings


def _to(engine: Engine, revision: str, up: bool = False) -> None:
    config = alembic_config()
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        (command.upgrade if up else command.downgrade)(config, revision)
        conn.commit()


def test_is_admin_becomes_the_admin_role_and_back(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(make_settings(database_url, tmp_path))
    try:
        upgrade(engine)
        _to(engine, "0010")
        with engine.begin() as conn:
            for uid, admin in (("u1", True), ("u2", False)):
                conn.execute(
                    text(
                        "INSERT INTO users (id, email, password_hash, email_verified, is_admin,"
                        " disabled, created_at, updated_at) VALUES (:id, :email, 'x', false,"
                        " :admin, false, 0, 7)"
                    ),
                    {"id": uid, "email": f"{uid}@example.com", "admin": admin},
                )
        _to(engine, "0011", up=True)
        with engine.connect() as conn:
            held = conn.execute(text("SELECT user_id, role, granted_at FROM user_roles")).all()
        assert [tuple(r) for r in held] == [("u1", "admin", 7)]
        columns = {c["name"] for c in inspect(engine).get_columns("users")}
        assert "is_admin" not in columns and "password_change_required" in columns
        _to(engine, "0010")
        with engine.connect() as conn:
            admins = conn.execute(text("SELECT id FROM users WHERE is_admin")).scalars().all()
        assert admins == ["u1"]
    finally:
        engine.dispose()
