"""Migration 0020: the webhook_cursor table comes, empty (the first server with a webhook
starts it), and goes on a downgrade with nothing else."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text

from idp.db.engine import make_engine
from idp.db.migrate import upgrade
from tests.conftest import make_settings
from tests.db.test_migration_0011 import _to


def test_webhook_cursor_comes_and_goes(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(make_settings(database_url, tmp_path))
    try:
        upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM webhook_cursor")).scalar_one() == 0
        _to(engine, "0019")
        assert "webhook_cursor" not in inspect(engine).get_table_names()
        _to(engine, "0020", up=True)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO webhook_cursor (id, last_id, missing, attempts, next_attempt_at,"
                    " lease_until, updated_at) VALUES (1, 7, '{}', 0, 0, 0, 0)"
                )
            )
        _to(engine, "head", up=True)
    finally:
        engine.dispose()
