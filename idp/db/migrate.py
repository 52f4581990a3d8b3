"""Apply alembic migrations, safely when several processes start at once.

PostgreSQL: a transaction-level advisory lock on alembic's own connection. SQLite: an exclusive
file lock beside the database file. Either way the second process waits, then finds nothing to do.
"""

from __future__ import annotations

import fcntl
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from idp.resources import migrations_dir

# Any constant unique to this application; "idp migrate" in ASCII.
ADVISORY_LOCK_ID = 0x6964706D6967


@functools.cache
def head_revisions() -> set[str]:
    """The revisions a database migrated by this code is at (read once per process)."""
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return config


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade(engine: Engine) -> None:
    """alembic upgrade head, serialised across processes."""
    config = alembic_config()
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        lock = Path(f"{database}.migrate.lock") if database and database != ":memory:" else None
        with _file_lock(lock) if lock else _no_lock(), engine.connect() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            conn.commit()
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": ADVISORY_LOCK_ID})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        conn.commit()


@contextmanager
def _no_lock() -> Iterator[None]:
    yield
