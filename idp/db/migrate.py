"""Apply alembic migrations, safely when several processes start at once.

PostgreSQL: a transaction-level advisory lock on alembic's own connection. SQLite: an exclusive
file lock beside the database file. Either way the second process waits, then finds nothing to do.
"""

from __future__ import annotations

import ast
import fcntl
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text

from idp.resources import migrations_dir
from idp.store import schema

if TYPE_CHECKING:
    from alembic.config import Config

# Any constant unique to this application; "idp migrate" in ASCII.
ADVISORY_LOCK_ID = 0x6964706D6967


@functools.cache
def head_revisions() -> set[str]:
    """The revisions a database migrated by this code is at (read once per process), from the
    `revision` and `down_revision` of each migration file. The server reads them for its
    readiness probe: alembic itself, 10 MiB resident, is loaded only to migrate."""
    revisions: set[str] = set()
    below: set[str] = set()
    for path in (migrations_dir() / "versions").glob("*.py"):
        names = _assignments(ast.parse(path.read_text(encoding="utf-8")))
        revision, down = names.get("revision"), names.get("down_revision")
        if isinstance(revision, str):
            revisions.add(revision)
            if isinstance(down, str):
                below.add(down)
            elif isinstance(down, tuple | list):
                below.update(str(d) for d in down)
    return revisions - below


def _assignments(module: ast.Module) -> dict[str, object]:
    """The module's top-level names bound to literals (`x = "a"` and `x: str = "a"`)."""
    found: dict[str, object] = {}
    for node in module.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name):
            try:
                found[target.id] = ast.literal_eval(value)
            except ValueError:
                continue
    return found


def alembic_config() -> Config:
    from alembic.config import Config

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
    """alembic upgrade head, serialised across processes. A database already at head is left
    alone without loading alembic: `idp serve` after `idp migrate` then runs without it."""
    with engine.connect() as conn:
        if schema.revisions(conn) == head_revisions():
            return
    from alembic import command

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
