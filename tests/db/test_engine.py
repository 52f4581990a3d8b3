"""db/engine.py on SQLite: WAL, BEGIN IMMEDIATE for writers, deferred reads, and the in-process
queue of writers (LIBRARY-NOTES: default settings lose updates under concurrency)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, text

from idp.db.engine import (
    loop_connection,
    loop_connections_made,
    loop_reader,
    make_engine,
    make_sessionmaker,
    on_the_loop,
    pool_capacity,
    prepare_loop_writes,
    read_only,
)
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


# --- units of work on the event loop (on_the_loop) ------------------------------------------------


def bump(engine: Engine, ran_on: list[int]) -> int:
    """One write transaction (as idp.deps.transaction opens it: on the loop's own connection
    inside on_the_loop); records the thread it ran on."""
    ran_on.append(threading.get_ident())
    connection = loop_connection(engine)
    factory = make_sessionmaker(engine)
    with factory(bind=connection) if connection is not None else factory() as db, db.begin():
        n = int(db.execute(text("SELECT n FROM counter")).scalar_one()) + 1
        db.execute(text("UPDATE counter SET n = :n"), {"n": n})
    return n


@pytest.fixture
def loop_engine(engine: Engine) -> Engine:
    """The engine as the server prepares it (idp.runtime): with the loop's write connection."""
    prepare_loop_writes(engine)
    return engine


def page_holding_the_write_lock(engine: Engine, n: int) -> tuple[threading.Thread, threading.Event]:
    """A thread whose transaction (as a page's unit of work, which spans awaits) has written
    `n` and holds the write lock until the returned event is set; started, and holding it."""
    held, release = threading.Event(), threading.Event()

    def page() -> None:
        with make_sessionmaker(engine).begin() as db:
            db.execute(text("UPDATE counter SET n = :n"), {"n": n})
            held.set()
            release.wait(10)

    thread = threading.Thread(target=page)
    thread.start()
    assert held.wait(5)
    return thread, release


def test_a_free_write_lock_runs_the_work_on_the_loop(loop_engine: Engine) -> None:
    engine = loop_engine
    """No thread hop when no one else writes: the work runs on the loop's own thread."""
    ran_on: list[int] = []

    async def main() -> int:
        assert await on_the_loop(engine, lambda: bump(engine, ran_on)) == 1
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert ran_on == [loop_thread]


def test_the_loop_never_waits_for_a_thread_that_holds_the_write_lock(loop_engine: Engine) -> None:
    engine = loop_engine
    """A thread's transaction that can only end when the loop runs (as a page's unit of work,
    which spans awaits) holds the lock: the loop's write waits for its turn without blocking
    the loop, then runs on the loop. A loop that blocked would never release the thread."""
    ran_on: list[int] = []

    async def main() -> tuple[int, int]:
        thread, release = page_holding_the_write_lock(engine, 10)
        asyncio.get_running_loop().call_later(0.05, release.set)  # runs only if the loop does
        started = time.monotonic()
        n = await asyncio.wait_for(on_the_loop(engine, lambda: bump(engine, ran_on)), 5)
        assert time.monotonic() - started < 2.0
        thread.join(5)
        return n, threading.get_ident()

    n, loop_thread = asyncio.run(main())
    assert n == 11  # after the thread's commit, in order
    assert ran_on[-1] == loop_thread  # the turn was handed to the loop
    assert count(engine) == 11


def test_the_turn_passes_on_only_once_sqlite_has_committed(loop_engine: Engine) -> None:
    """SQLAlchemy's "commit" event comes before the DBAPI commit. A page thread slow between
    the two (here: 0.2 s) must still hold the turn, so the loop's BEGIN IMMEDIATE never meets
    SQLite's lock still taken; it did, under load, and the work then went to a thread."""
    engine = loop_engine
    main_thread = threading.get_ident()

    def slow_between_event_and_commit(_conn: object) -> None:
        if threading.get_ident() != main_thread:
            time.sleep(0.2)

    event.listen(engine, "commit", slow_between_event_and_commit)
    ran_on: list[int] = []

    async def main() -> tuple[int, int]:
        thread, release = page_holding_the_write_lock(engine, 10)
        asyncio.get_running_loop().call_later(0.05, release.set)
        n = await asyncio.wait_for(on_the_loop(engine, lambda: bump(engine, ran_on)), 5)
        await asyncio.to_thread(thread.join, 5)
        return n, threading.get_ident()

    n, loop_thread = asyncio.run(main())
    assert n == 11
    assert ran_on[-1] == loop_thread


def test_units_of_work_that_come_while_one_waits_for_a_thread_wait_on_the_loop(
    loop_engine: Engine,
) -> None:
    """While one unit of work waits for the turn a page's thread holds, the next ones queue on
    the loop behind it and then run there, in order: none becomes a thread of its own (under
    concurrent refresh grants that made 30 threads queue on the pool and the write lock)."""
    engine = loop_engine
    ran_on: list[int] = []

    async def main() -> tuple[list[int], int]:
        thread, release = page_holding_the_write_lock(engine, 10)
        asyncio.get_running_loop().call_later(0.05, release.set)
        works = [on_the_loop(engine, lambda: bump(engine, ran_on)) for _ in range(5)]
        results = await asyncio.wait_for(asyncio.gather(*works), 5)
        await asyncio.to_thread(thread.join, 5)
        return list(results), threading.get_ident()

    results, loop_thread = asyncio.run(main())
    assert results == [11, 12, 13, 14, 15]
    # Six runs: the first found the lock taken (WriterBusy at BEGIN) and ran again when handed
    # the turn; every run on the loop's thread.
    assert ran_on == [loop_thread] * 6
    assert count(engine) == 15


def test_another_process_holding_the_lock_sends_the_work_to_a_thread(
    loop_engine: Engine, tmp_path: Path
) -> None:
    """SQLite's own lock, held by another connection (as another worker process would): the
    loop does not sleep on busy_timeout; the work runs in a thread, which waits for it."""
    engine = loop_engine
    other = sqlite3.connect(tmp_path / "e.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE counter SET n = 20")
    ran_on: list[int] = []

    async def main() -> tuple[int, int]:
        asyncio.get_running_loop().call_later(0.05, other.commit)
        n = await asyncio.wait_for(on_the_loop(engine, lambda: bump(engine, ran_on)), 5)
        return n, threading.get_ident()

    try:
        n, loop_thread = asyncio.run(main())
    finally:
        other.close()
    assert n == 21
    assert ran_on[-1] != loop_thread


def test_work_that_fails_before_writing_gives_back_a_handed_turn(loop_engine: Engine) -> None:
    engine = loop_engine
    """A turn handed to the loop and never used (the work raised before its first statement)
    is released: the next writer starts at once, not after the 10 s timeout."""
    calls: list[int] = []

    def fails() -> int:
        calls.append(1)
        if len(calls) == 1:
            return bump(engine, [])  # finds the lock taken: WriterBusy, then a handed turn
        raise ValueError("before any statement")

    async def main() -> None:
        thread, release = page_holding_the_write_lock(engine, 30)
        asyncio.get_running_loop().call_later(0.05, release.set)
        with pytest.raises(ValueError):
            await asyncio.wait_for(on_the_loop(engine, fails), 5)
        await asyncio.to_thread(thread.join, 5)

    asyncio.run(main())
    assert len(calls) == 2
    started = time.monotonic()
    assert bump(engine, []) == 31
    assert time.monotonic() - started < 1.0


def test_the_loop_reader_is_one_threads_and_holds_no_transaction(engine: Engine) -> None:
    """The event loop's own read connection: the first thread to ask owns it, any other gets
    None (and uses the pool); a read on it leaves no transaction open, so it never pins an
    old snapshot (WAL) nor blocks a checkpoint; dispose() closes it."""
    reader = loop_reader(engine)
    assert reader is not None and loop_reader(engine) is reader
    others: list[object] = []
    thread = threading.Thread(target=lambda: others.append(loop_reader(engine)))
    thread.start()
    thread.join(5)
    assert others == [None]
    assert reader.execute("SELECT n FROM counter").fetchone() == (0,)
    assert not reader.in_transaction
    bump(engine, [])
    assert reader.execute("SELECT n FROM counter").fetchone() == (1,)  # the new snapshot
    engine.dispose()
    assert loop_connections_made(engine) == []
    with pytest.raises(sqlite3.ProgrammingError):
        reader.execute("SELECT 1")


def test_work_on_the_loop_may_begin_one_write_transaction(loop_engine: Engine) -> None:
    engine = loop_engine
    """A second write transaction in one unit of work on the loop is refused: had it met a
    taken lock, the work would have run again in a thread and repeated the first."""

    def twice() -> int:
        bump(engine, [])
        return bump(engine, [])

    with pytest.raises(RuntimeError, match="one write transaction"):
        asyncio.run(on_the_loop(engine, twice))
    assert count(engine) == 1  # the first committed; the second never began


def test_the_loop_never_waits_for_the_pool(loop_engine: Engine) -> None:
    """Threads hold every connection of the pool, each until the loop runs (as pages' units of
    work do): the loop's write runs on its own connection, not after a 30 s pool timeout."""
    engine = loop_engine
    pool = engine.pool
    # What is left once the loop's own connection is out.
    capacity = pool.size() + pool._max_overflow - pool.checkedout()  # type: ignore[attr-defined]
    release = threading.Event()
    held = threading.Barrier(capacity + 1)

    def hold() -> None:
        with engine.connect():
            held.wait(5)
            release.wait(10)

    threads = [threading.Thread(target=hold) for _ in range(capacity)]

    async def main() -> int:
        for thread in threads:
            thread.start()
        await asyncio.to_thread(held.wait, 5)
        asyncio.get_running_loop().call_later(0.2, release.set)
        started = time.monotonic()
        n = await asyncio.wait_for(on_the_loop(engine, lambda: bump(engine, [])), 5)
        assert time.monotonic() - started < 0.2  # done before the holders let go
        return n

    try:
        assert asyncio.run(main()) == 1
    finally:
        release.set()
        for thread in threads:
            thread.join(5)


def test_pool_capacity_is_the_pools_size_and_overflow(tmp_path: Path) -> None:
    """What the server sizes anyio's thread limiter by (idp.app): SQLAlchemy's QueuePool lends
    5 + 10 connections on SQLite, IDP_DATABASE_POOL_SIZE twice over on PostgreSQL."""
    sqlite = make_engine(make_settings(f"sqlite:///{tmp_path}/p.db", tmp_path))
    settings = make_settings("postgresql://nobody@127.0.0.1:1/none", tmp_path)
    postgres = make_engine(settings.model_copy(update={"database_pool_size": 7}))
    try:
        assert pool_capacity(sqlite) == 15
        assert pool_capacity(postgres) == 14
    finally:
        sqlite.dispose()
        postgres.dispose()


def test_after_dispose_the_work_runs_in_a_thread(loop_engine: Engine) -> None:
    """dispose() closes the loop's own connection with the pool: the work that still comes (an
    app used past its shutdown) runs in a thread, on a connection of the new pool, instead of
    failing on a closed connection."""
    engine = loop_engine
    ran_on: list[int] = []
    engine.dispose()

    async def main() -> int:
        assert await on_the_loop(engine, lambda: bump(engine, ran_on)) == 1
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert len(ran_on) == 1 and ran_on != [loop_thread]
