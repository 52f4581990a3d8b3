"""Single-statement reads awaited on the event loop, on PostgreSQL.

The client_credentials hot path reads one row (the client's). On SQLite that read runs on the
loop itself (idp.db.engine.loop_reader), a local statement of a few microseconds. On PostgreSQL
it is a network round trip, which must never block the loop, so it ran in a thread: each grant
cost a hop to a thread and back, and under 32 concurrent grants the server's 40 threads made
~20,000 context switches a second (25 a grant) handing the GIL around, half of the server's CPU
per grant. Here the read is awaited instead, on psycopg's asyncio connections (psycopg_pool,
the pool psycopg's authors keep), so the loop serves other requests while PostgreSQL answers.

These connections are in autocommit mode: a single SELECT reads one consistent snapshot of its
own, and no transaction is ever left open. They are a small pool of their own beside the
engine's (IDP_DATABASE_LOOP_READ_CONNECTIONS per worker): one round trip at a time per
connection is enough, since each read takes well under a millisecond. A pool is bound to the
loop that opened it; any other loop (tests, the CLI) gets None and reads in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

if TYPE_CHECKING:
    import psycopg_pool

log = logging.getLogger("idp.db")

# Waiting longer than this for one of the pool's connections means the database is away or
# saturated: the caller falls back to its thread path, whose errors are the usual ones.
CHECKOUT_TIMEOUT_SECONDS = 5.0


class ReadFailed(Exception):
    """The read could not be made here (no connection in time, or the driver failed): nothing
    was changed, so the caller can make it again the ordinary way."""


class LoopReads:
    """A pool of asyncio connections to the engine's PostgreSQL database, for one event loop."""

    def __init__(self, engine: Engine, size: int) -> None:
        # Imported here: psycopg and its libpq are ~10 MiB resident that SQLite never needs.
        import psycopg
        import psycopg_pool

        # What a read that could not be made raises: the driver's errors, or no connection.
        self._failures: tuple[type[Exception], ...] = (psycopg.Error, psycopg_pool.PoolTimeout)

        # The very parameters SQLAlchemy connects with (host, port, user, database, TLS
        # options from the URL), so both pools reach the same server the same way.
        _, params = engine.dialect.create_connect_args(engine.url)
        self._pool: psycopg_pool.AsyncConnectionPool = psycopg_pool.AsyncConnectionPool(
            kwargs={**params, "autocommit": True},
            min_size=1,
            max_size=size,
            open=False,
            timeout=CHECKOUT_TIMEOUT_SECONDS,
            name="idp-loop-reads",
        )
        self.loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    async def fetch_one(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        """One statement (psycopg's `%s` placeholders) and its first row; ReadFailed if the
        read could not be made."""
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(sql, tuple(params))
                row = await cursor.fetchone()
        except self._failures as exc:
            log.warning("a read on the event loop failed, made again in a thread: %s", exc)
            raise ReadFailed(str(exc)) from exc
        return tuple(row) if row is not None else None


_LOOP_READS: weakref.WeakKeyDictionary[Engine, LoopReads] = weakref.WeakKeyDictionary()


async def open_loop_reads(engine: Engine, size: int) -> None:
    """At server start, on the server's loop: the pool, on PostgreSQL when `size` > 0."""
    if engine.dialect.name != "postgresql" or size <= 0 or engine in _LOOP_READS:
        return
    reads = LoopReads(engine, size)
    await reads.open()
    _LOOP_READS[engine] = reads


async def close_loop_reads(engine: Engine) -> None:
    """At server stop: its connections close, and reads that come after run in threads."""
    reads = _LOOP_READS.pop(engine, None)
    if reads is not None:
        await reads.close()


def loop_reads(engine: Engine) -> LoopReads | None:
    """The engine's pool for reads awaited on this loop; None where there is none (SQLite, the
    CLI, a loop other than the server's)."""
    reads = _LOOP_READS.get(engine)
    if reads is None:
        return None
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return reads if reads.loop is running else None
