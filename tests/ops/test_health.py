"""/health/live and /health/ready (issue 15): live holds while the database is down; ready
names the check that fails (database, migrations, signing keys), answers 503, and never
reveals more than that."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

from idp.keys.ring import KeyRing
from tests.db.test_migration_0011 import _to
from tests.helpers import Harness

ALL_OK = {"database": "ok", "migrations": "ok", "signing_keys": "ok"}


def test_live_answers_without_looking_at_anything(idp: Harness) -> None:
    response = idp.http.get("/health/live")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert response.headers["cache-control"] == "no-store"


def test_ready_when_database_schema_and_keys_are(idp: Harness) -> None:
    response = idp.http.get("/health/ready")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "checks": ALL_OK}
    assert response.headers["cache-control"] == "no-store"


def test_a_schema_behind_the_code_is_not_ready(idp: Harness) -> None:
    """A node whose database was not migrated to this code's head must not take traffic."""
    _to(idp.runtime.engine, "0015")
    response = idp.http.get("/health/ready")
    assert response.status_code == 503
    assert response.json() == {
        "status": "not_ready",
        "checks": {**ALL_OK, "migrations": "not_current"},
    }
    _to(idp.runtime.engine, "head", up=True)
    assert idp.http.get("/health/ready").status_code == 200


@contextmanager
def database_down(idp: Harness) -> Iterator[None]:
    """New connections to the IdP's database fail until the block ends. SQLite: the file's
    folder goes away (a lost volume). PostgreSQL: the database refuses connections and its
    open ones are ended (what a failover does to a node)."""
    url = idp.runtime.engine.url
    idp.runtime.engine.dispose()  # pooled connections would keep the old database open
    if url.get_backend_name() == "sqlite":
        database = Path(url.database or "")
        moved = database.parent.with_name(database.parent.name + "-gone")
        database.parent.rename(moved)
        try:
            yield
        finally:
            moved.rename(database.parent)
        return
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    name = url.database
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
        admin.dispose()


def test_database_down_ready_fails_live_holds(idp: Harness) -> None:
    """The answer names the check, and nothing of the driver's message or where the
    database is; live holds throughout, and ready comes back with the database."""
    with database_down(idp):
        down = idp.http.get("/health/ready")
        assert down.status_code == 503
        assert down.json() == {
            "status": "not_ready",
            "checks": {"database": "unreachable", "migrations": "unknown", "signing_keys": "ok"},
        }
        assert idp.http.get("/health/live").status_code == 200
    assert idp.http.get("/health/ready").status_code == 200


def test_keys_count_as_loaded_once_read(idp: Harness) -> None:
    """A process that has not read its signing keys yet is not ready for tokens."""
    runtime = idp.runtime
    ring = KeyRing(runtime.reads, runtime.sessions, runtime.sealer, runtime.settings)
    assert ring.loaded() is False
    ring.load()
    assert ring.loaded() is True
