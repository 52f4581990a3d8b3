"""The engine and session factory, built from Settings.

SQLite (the embedded default) runs in WAL mode with BEGIN IMMEDIATE transactions: with Python's
default deferred transactions, concurrent workers lose updates (see LIBRARY-NOTES). PostgreSQL is
the choice for several nodes.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from idp.settings import Settings

SQLITE_BUSY_TIMEOUT_MS = 10_000
READ_ONLY = "idp_read_only"


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
        writers.enter(conn, conn.connection.dbapi_connection)
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            writers.leave(conn)
            raise

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _on_end(conn: Any) -> None:
        # By the Connection itself: an invalidated one can no longer reach its DBAPI connection.
        writers.leave(conn)

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

    def leave(self, either: object) -> None:
        with self._guard:
            holder = self._holder
            if holder is not None and (holder[0] is either or holder[1] is either):
                self._holder = None
                self._lock.release()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False, autoflush=True)


def read_only(engine: Engine) -> Engine:
    """The same pool, for units of work that only read: on SQLite they take no write lock, and
    on PostgreSQL their transactions are READ ONLY (a write fails instead of slipping through)."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(postgresql_readonly=True)
    return engine.execution_options(**{READ_ONLY: True})
