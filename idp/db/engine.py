"""The engine and session factory, built from Settings.

SQLite (the embedded default) runs in WAL mode with BEGIN IMMEDIATE transactions: with Python's
default deferred transactions, concurrent workers lose updates (see LIBRARY-NOTES). PostgreSQL is
the choice for several nodes.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from idp.settings import Settings

SQLITE_BUSY_TIMEOUT_MS = 10_000
READ_ONLY = "idp_read_only"
T = TypeVar("T")


class WriterBusy(Exception):
    """Raised at BEGIN of a write transaction begun on the event loop (`on_the_loop`) when the
    SQLite write lock is taken: the loop must never wait for it, since the holder may be a
    thread whose unit of work needs the loop to end (a page's transaction spans awaits).
    Nothing has been done yet, so the caller can run the same work in a thread instead."""


class _Turn:
    """How write transactions begun in one `on_the_loop` block take the write lock: now or not
    at all, or from a turn a thread already waited for (`handed`)."""

    def __init__(self, writers: _WriterQueue, handed: bool, connection: Connection) -> None:
        self.writers = writers
        self.handed = handed
        self.begun = False
        self.connection = connection  # the loop's own (_LoopWriter): the pool is never waited on


_TURN: ContextVar[_Turn | None] = ContextVar("idp_write_turn", default=None)


def normalize_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 here."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(settings: Settings) -> Engine:
    url = make_url(normalize_url(settings.database_url))
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url.render_as_string(hide_password=False))
    return create_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        pool_recycle=1800,
    )


def pool_capacity(engine: Engine) -> int:
    """How many connections the engine's pool lends at most (its size and its overflow)."""
    pool = engine.pool
    if isinstance(pool, QueuePool):
        return pool.size() + max(pool._max_overflow, 0)
    return pool.size() if hasattr(pool, "size") else 1


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.close()

    # Writers of this process queue here, in order, before they ask SQLite for its write lock:
    # SQLite's busy handler makes waiters sleep in growing steps (up to 100 ms each) and wakes
    # them in no order, which gave refresh grants a p99 near one second under load. Other
    # processes still meet at SQLite's own lock (busy_timeout).
    writers = _WriterQueue(SQLITE_BUSY_TIMEOUT_MS / 1000)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Take the write lock up front: a deferred transaction that reads then writes can fail
        # with SQLITE_BUSY or lose the race; IMMEDIATE waits its turn instead. A read-only unit
        # of work takes a deferred transaction: in WAL mode it reads one consistent snapshot
        # and never queues behind writers.
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
            return
        dbapi_conn = conn.connection.dbapi_connection
        turn = _TURN.get()
        if turn is not None and turn.writers is writers:
            _begin_now(conn, dbapi_conn, turn)
            return
        writers.enter(conn, dbapi_conn)
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            writers.leave(conn)
            raise

    def _begin_now(conn: Any, dbapi_conn: Any, turn: _Turn) -> None:
        if turn.begun:
            # A second transaction could meet WriterBusy after the first committed, and the
            # work would then run again in a thread, repeating the first: refused outright.
            raise RuntimeError("work run on_the_loop may begin one write transaction only")
        turn.begun = True
        handed, turn.handed = turn.handed, False  # a handed turn serves the first transaction
        if not (writers.claim(conn, dbapi_conn) if handed else writers.try_enter(conn, dbapi_conn)):
            raise WriterBusy
        # Another process may hold SQLite's own lock: fail at once rather than sleep on the loop.
        dbapi_conn.execute("PRAGMA busy_timeout=0")
        try:
            # On the driver: through SQLAlchemy's execution machinery this BEGIN cost ~20 µs of
            # every write transaction on the loop, against ~2 µs here.
            dbapi_conn.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            writers.leave(conn)
            if isinstance(exc, sqlite3.Error):
                # Locked by another process, or any other failure to begin: the work runs in a
                # thread instead, whose BEGIN waits for the lock, or raises SQLAlchemy's error.
                raise WriterBusy from exc
            raise
        finally:
            # Taken or not, the lock is settled: in WAL mode no later statement of this
            # transaction waits for it, and the connection goes back to the pool as it came.
            dbapi_conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")

    _WRITERS[engine] = writers
    reader = _LOOP_READERS[engine] = _LoopReader(engine)
    event.listen(engine, "engine_disposed", lambda _engine: reader.close())

    # The turn passes on once SQLite has committed or rolled back, not at SQLAlchemy's
    # "commit" event, which comes before the DBAPI call: the next writer's BEGIN IMMEDIATE
    # then met the lock still held. On the loop that was WriterBusy (the work went to a
    # thread); in a thread, SQLite's busy handler sleeping in steps of up to 100 ms.
    dialect: Any = engine.dialect

    def then_leave(end: Callable[[Any], None]) -> Callable[[Any], None]:
        def ended(dbapi_conn: Any) -> None:
            try:
                end(dbapi_conn)
            finally:
                writers.leave(getattr(dbapi_conn, "dbapi_connection", dbapi_conn))

        return ended

    dialect.do_commit = then_leave(dialect.do_commit)
    dialect.do_rollback = then_leave(dialect.do_rollback)

    @event.listens_for(engine, "checkin")
    @event.listens_for(engine, "invalidate")
    def _on_release(dbapi_conn: Any, *_: Any) -> None:
        # Whatever happened to the transaction, a connection back in the pool holds no turn.
        writers.leave(dbapi_conn)

    return engine


class _WriterQueue:
    """One writer at a time per process, held by the connection whose transaction it is (known
    both as a SQLAlchemy Connection and as its DBAPI connection, which the pool's events see)."""

    def __init__(self, timeout: float) -> None:
        self._lock = threading.Lock()
        self._guard = threading.Lock()  # makes "is it mine? then release" one step
        self._holder: tuple[object, object] | None = None
        self._timeout = timeout

    def enter(self, conn: object, dbapi_conn: object) -> None:
        # After the timeout, go on anyway: SQLite's own lock still serialises, so a lost turn
        # can cost time but never correctness.
        if self._lock.acquire(timeout=self._timeout):
            self._holder = (conn, dbapi_conn)

    def try_enter(self, conn: object, dbapi_conn: object) -> bool:
        if not self._lock.acquire(blocking=False):
            return False
        self._holder = (conn, dbapi_conn)
        return True

    def wait_for_turn(self) -> _Handed | None:
        """Wait (in a thread) for the lock, and hold it for a transaction yet to begin."""
        if not self._lock.acquire(timeout=self._timeout):
            return None
        handed = _Handed()
        self._holder = (handed, handed)
        return handed

    def claim(self, conn: object, dbapi_conn: object) -> bool:
        """The transaction a turn was waited for begins: it holds the lock now."""
        with self._guard:
            holder = self._holder
            if holder is None or not isinstance(holder[0], _Handed):
                return False
            self._holder = (conn, dbapi_conn)
            return True

    def leave(self, either: object) -> None:
        with self._guard:
            holder = self._holder
            if holder is not None and (holder[0] is either or holder[1] is either):
                self._holder = None
                self._lock.release()


class _Handed:
    """Holds the write lock between a thread's wait for it and the transaction it is for."""


_WRITERS: weakref.WeakKeyDictionary[Engine, _WriterQueue] = weakref.WeakKeyDictionary()


class _LoopWriter:
    """The connection write work on the event loop runs on, made when the server starts: taken
    from the pool there, a checkout could wait for a connection that threads hold while their
    transactions wait for the loop (measured: 32 concurrent sign-ins exhausted the pool)."""

    def __init__(self, engine: Engine) -> None:
        self.connection = engine.connect()
        self.lock = threading.Lock()  # one event loop at a time (tests run several)
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def queue(self) -> asyncio.Lock:
        """Where the running loop's units of work wait for this connection, in order. Waiting
        here costs nothing; sending them to threads instead (as before) made every grant that
        came while one waited for a thread's turn a thread of its own: under 32 concurrent
        refresh grants, 30 threads queued on the pool and the write lock, and stayed so."""
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = asyncio.Lock()
        return queue


_LOOP_WRITERS: weakref.WeakKeyDictionary[Engine, _LoopWriter] = weakref.WeakKeyDictionary()


def prepare_loop_writes(engine: Engine) -> None:
    """At server start, on SQLite: the connection on_the_loop's work runs on. Without it (the
    CLI, PostgreSQL, or after the engine's dispose()) on_the_loop runs its work in a thread."""
    if engine in _WRITERS and engine not in _LOOP_WRITERS:
        writer = _LOOP_WRITERS[engine] = _LoopWriter(engine)

        def disposed(disposed_engine: Engine) -> None:
            # Its connection closes with the pool; the work that comes after (the app used
            # past its shutdown, as tests do) runs in threads, on connections of the new pool.
            _LOOP_WRITERS.pop(disposed_engine, None)
            writer.connection.close()

        event.listen(engine, "engine_disposed", disposed)


def loop_connection(engine: Engine) -> Connection | None:
    """Inside on_the_loop's work: the connection its write transaction must use."""
    turn = _TURN.get()
    return turn.connection if turn is not None and turn.writers is _WRITERS.get(engine) else None


@contextmanager
def _turn(writers: _WriterQueue, handed: _Handed | None, connection: Connection) -> Iterator[None]:
    token = _TURN.set(_Turn(writers, handed is not None, connection))
    try:
        yield
    finally:
        _TURN.reset(token)
        if handed is not None:
            writers.leave(handed)  # the turn was never used: an error before the first BEGIN


async def on_the_loop(engine: Engine, work: Callable[[], T]) -> T:
    """Run a short unit of work that writes on the event loop, where SQLite allows it.

    On SQLite a write transaction of a few local statements is CPU-bound work, which threads
    only slow down: they queue on the write lock and hand the GIL back and forth. So `work`
    runs on the loop, taking the write lock only when it is free; when a thread holds it, a
    thread waits for the next turn and hands it to the loop. Units of work of one loop wait for
    each other on the loop, in order, never in threads. On PostgreSQL, and when another
    process holds SQLite's lock, `work` runs in a thread, where waiting is harmless. `work` is
    synchronous, begins one write transaction at most, and may be run twice: it must do nothing
    before its first statement that it could not repeat (WriterBusy is raised at that BEGIN)."""
    writers, writer = _WRITERS.get(engine), _LOOP_WRITERS.get(engine)
    if writers is None or writer is None:
        return await anyio.to_thread.run_sync(work)
    async with writer.queue():
        if writer.lock.acquire(blocking=False):  # not: another loop (thread) has it now
            try:
                try:
                    with _turn(writers, None, writer.connection):
                        return work()
                except WriterBusy:
                    pass
                handed = await anyio.to_thread.run_sync(writers.wait_for_turn)
                if handed is not None:
                    try:
                        with _turn(writers, handed, writer.connection):
                            return work()
                    except WriterBusy:
                        pass
            finally:
                writer.lock.release()
    return await anyio.to_thread.run_sync(work)


class _LoopReader:
    """One DBAPI connection of the process's own, used by the event loop's thread only."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._thread: int | None = None
        self._dbapi: sqlite3.Connection | None = None
        self._guard = threading.Lock()

    def get(self) -> sqlite3.Connection | None:
        thread = threading.get_ident()
        if self._thread is None:
            with self._guard:
                if self._thread is None:
                    fairy = self._engine.raw_connection()
                    fairy.detach()  # never back in the pool: this thread's, for the process's life
                    self._dbapi = fairy.dbapi_connection  # type: ignore[assignment]
                    self._thread = thread
        return self._dbapi if self._thread == thread else None

    def close(self) -> None:
        """At the engine's dispose(): the connection closes, and the next read makes a new one."""
        with self._guard:
            dbapi, self._dbapi, self._thread = self._dbapi, None, None
        if dbapi is not None:
            dbapi.close()


_LOOP_READERS: weakref.WeakKeyDictionary[Engine, _LoopReader] = weakref.WeakKeyDictionary()


def loop_reader(engine: Engine) -> sqlite3.Connection | None:
    """On SQLite, a DBAPI connection for single-statement reads on the event loop, without the
    pool's checkout and checkin (30 µs of a client_credentials grant's 600, measured). It is in
    autocommit mode, so each statement reads one consistent snapshot of its own (WAL) and no
    transaction is ever left open on it. The first thread to ask owns it; any other thread
    gets None (and uses the pool). None on PostgreSQL."""
    reader = _LOOP_READERS.get(engine)
    return reader.get() if reader is not None else None


def loop_connections_made(engine: Engine) -> list[Any]:
    """The DBAPI connections of the loop's reader and writer that have been made, whichever
    thread asks (for tests that watch what a request sends to the database)."""
    made: list[Any] = []
    reader, writer = _LOOP_READERS.get(engine), _LOOP_WRITERS.get(engine)
    if reader is not None and reader._dbapi is not None:
        made.append(reader._dbapi)
    if writer is not None:
        made.append(writer.connection.connection.dbapi_connection)
    return made


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False, autoflush=True)


def read_only(engine: Engine) -> Engine:
    """The same pool, for units of work that only read: on SQLite they take no write lock, and
    on PostgreSQL their transactions are READ ONLY (a write fails instead of slipping through)."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(postgresql_readonly=True)
    return engine.execution_options(**{READ_ONLY: True})
