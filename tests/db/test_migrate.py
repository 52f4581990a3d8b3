"""The schema comes from alembic migrations, and only from them (the issue's "Storage").

The models and the migrations describe the same schema (what `alembic check` verifies), several
processes may migrate one database at once, and nothing calls `metadata.create_all`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from idp.app import create_app
from idp.db.engine import make_engine
from idp.db.migrate import alembic_config, head_revisions, upgrade
from idp.resources import PACKAGE_DIR
from idp.runtime import NotMigrated
from idp.store import metadata
from tests.conftest import make_settings

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_models_and_migrations_agree(database_url: str, tmp_path: Path) -> None:
    """`alembic check`: after `upgrade head`, autogenerate finds no difference between the
    migrated database and the SQLAlchemy models (types included)."""
    engine = make_engine(make_settings(database_url, tmp_path))
    try:
        upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "compare_server_default": True,
                    "render_as_batch": conn.dialect.name == "sqlite",
                },
            )
            diffs = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert diffs == []


def test_migrations_reach_every_model_table(database_url: str, tmp_path: Path) -> None:
    """Every table the models declare exists after `upgrade head`, at the head revision."""
    engine = make_engine(make_settings(database_url, tmp_path))
    try:
        upgrade(engine)
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    assert set(metadata.tables) <= tables
    assert current == HEAD


def test_four_processes_migrate_one_fresh_database(database_url: str, tmp_path: Path) -> None:
    """Several workers or containers start at once, each running `idp migrate`: all of them
    succeed and the database ends at the head revision (the others wait, then find nothing)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env["IDP_DATABASE_URL"] = database_url
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "idp", "migrate"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        for _ in range(4)
    ]
    results = [(p.wait(timeout=120), *p.communicate()) for p in processes]
    for returncode, _, stderr in results:
        assert returncode == 0, stderr
    engine = make_engine(make_settings(database_url, tmp_path))
    try:
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == HEAD
        assert set(metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_app_does_not_create_the_schema(database_url: str, tmp_path: Path) -> None:
    """The schema is made by migrations only: an app started on an empty database refuses
    (NotMigrated: run `idp migrate`) and leaves it empty."""
    settings = make_settings(database_url, tmp_path)
    with pytest.raises(NotMigrated, match="idp migrate"):
        create_app(settings)
    engine = make_engine(settings)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_no_create_all_in_the_source() -> None:
    """The schema is made by migrations only: nothing in idp/ calls `create_all` (which would
    build tables the migrations do not know, and hide a missing migration)."""
    sources = sorted(PACKAGE_DIR.rglob("*.py"))
    assert sources
    offenders = [
        str(path.relative_to(PACKAGE_DIR))
        for path in sources
        if re.search(r"create_all|\.create\(\s*(bind|engine|conn)", path.read_text())
    ]
    assert offenders == []


def test_the_readiness_probe_knows_alembics_heads_without_alembic() -> None:
    """The server's head revisions (read from the migration files, without loading alembic)
    are alembic's own."""
    assert head_revisions() == set(ScriptDirectory.from_config(alembic_config()).get_heads())


def test_head_revisions_follow_branches_and_merges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two branches from one revision have two heads; a merge revision (a tuple of
    down_revisions) leaves one."""
    versions = tmp_path / "versions"
    versions.mkdir()

    def write(name: str, revision: str, down: str) -> None:
        (versions / f"{name}.py").write_text(
            f'"""{name}"""\nrevision: str = "{revision}"\ndown_revision = {down}\n'
        )

    write("a", "a", "None")
    write("b", "b", '"a"')
    write("c", "c", '"a"')
    monkeypatch.setattr("idp.db.migrate.migrations_dir", lambda: tmp_path)
    head_revisions.cache_clear()
    try:
        assert head_revisions() == {"b", "c"}
        write("m", "m", '("b", "c")')
        head_revisions.cache_clear()
        assert head_revisions() == {"m"}
    finally:
        head_revisions.cache_clear()
