"""db/engine.py on SQLite: WAL, BEGIN IMMEDIATE for writers, deferred reads, and the in-process
queue of writers (LIBRARY-NOTES: default settings lose updates under concurrency)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from idp.db.engine import make_engine, make_sessionmaker, read_only
from tests.conftest import make_settings


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    built = make_engine(make_settings(f"sqlite:///{tmp_path}/e.db", tmp_path))
    with built.begin() as conn:
        conn.execute(text("CREATE TABLE counter (n INTEGER NOT NULL)"))
        conn.execute(text("INSERT INTO counter VALUES (0)"))
    yield built
    built.dispose()


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT n FROM counter")).scalar_one())


def test_concurrent_writers_lose_no_update(engine: Engine) -> None:
    """Read-modify-write from 8 threads at once: every increment is kept, none fails."""
    factory = make_sessionmaker(engine)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(25):
                with factory.begin() as db:
                    n = db.execute(text("SELECT n FROM counter")).scalar_one()
                    db.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert count(engine) == 200


def test_a_failed_transaction_gives_up_its_turn(engine: Engine) -> None:
    """A writer whose transaction raises leaves the queue at its rollback: the next writer
    starts at once, not after the busy timeout."""
    factory = make_sessionmaker(engine)
    with pytest.raises(RuntimeError), factory.begin() as db:
        db.execute(text("UPDATE counter SET n = 1"))
        raise RuntimeError("boom")
    started = time.monotonic()
    with factory.begin() as db:
        db.execute(text("UPDATE counter SET n = 2"))
    assert time.monotonic() - started < 1.0
    assert count(engine) == 2


def test_an_invalidated_connection_gives_up_its_turn(engine: Engine) -> None:
    """A connection thrown away in the middle of its transaction holds no turn afterwards."""
    conn = engine.connect()
    conn.begin()
    conn.execute(text("UPDATE counter SET n = 5"))
    conn.invalidate()
    conn.rollback()
    conn.close()
    started = time.monotonic()
    with engine.begin() as other:
        other.execute(text("UPDATE counter SET n = 6"))
    assert time.monotonic() - started < 1.0
    assert count(engine) == 6


def test_readers_do_not_wait_for_a_writer(engine: Engine) -> None:
    """A read-only unit of work reads its snapshot while a writer holds the write lock."""
    writer = engine.connect()
    writer.begin()
    writer.execute(text("UPDATE counter SET n = 7"))
    try:
        started = time.monotonic()
        with read_only(engine).connect() as reader:
            seen = reader.execute(text("SELECT n FROM counter")).scalar_one()
        assert seen == 0  # the committed state, not the writer's
        assert time.monotonic() - started < 0.5
    finally:
        writer.rollback()
        writer.close()
