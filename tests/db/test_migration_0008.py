"""Migration 0008 (client metadata and client logos) goes down and up again without touching
what was there before it, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import Engine, inspect, text

from idp.db.engine import make_engine
from idp.db.migrate import alembic_config, upgrade
from tests.conftest import make_settings

NEW_COLUMNS = {"logo_uri", "client_uri", "policy_uri", "tos_uri", "logo_sha256"}


def _to(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)
        conn.commit()


def _seed(engine: Engine) -> None:
    """A client with a logo, and a row in a table that references the client (ON DELETE
    CASCADE): what a downgrade that rebuilt the clients table would take with it."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, email, password_hash, email_verified, is_admin, disabled,"
                " created_at, updated_at) VALUES ('u1', 'a@example.com', 'x', false, false,"
                " false, 0, 0)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO clients (client_id, name, is_public, auth_method, redirect_uris,"
                " post_logout_redirect_uris, grant_types, scopes, require_pkce, trusted,"
                " can_introspect, created_at, logo_uri, logo_sha256) VALUES ('c1', 'App', false,"
                " 'none', '[]', '[]', '[]', '[]', true, false, false, 0,"
                " 'https://rp.example/logo.png', 'ab')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO client_logos (client_id, content_type, image, sha256, fetched_at)"
                " VALUES ('c1', 'image/png', :image, 'ab', 0)"
            ),
            {"image": b"\x89PNG"},
        )
        conn.execute(
            text(
                "INSERT INTO consents (user_id, client_id, scopes, granted_at)"
                " VALUES ('u1', 'c1', '[]', 0)"
            )
        )


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608


def test_downgrade_drops_only_what_0008_added(database_url: str, tmp_path: Path) -> None:
    """Down to 0007: client_logos and the five client columns are gone; the client and the
    consent that references it are still there. Up again: the columns are back, empty."""
    engine = make_engine(make_settings(database_url, tmp_path))
    try:
        upgrade(engine)
        _to(engine, "0008")  # the schema this test's rows were written for
        _seed(engine)
        _to(engine, "0007")
        schema = inspect(engine)
        assert "client_logos" not in schema.get_table_names()
        assert not NEW_COLUMNS & {c["name"] for c in schema.get_columns("clients")}
        assert (_count(engine, "clients"), _count(engine, "consents")) == (1, 1)
        upgrade(engine)
        with engine.connect() as conn:
            row = conn.execute(text("SELECT logo_uri, logo_sha256 FROM clients")).one()
        assert tuple(row) == (None, None)
        assert (_count(engine, "consents"), _count(engine, "client_logos")) == (1, 0)
    finally:
        engine.dispose()
