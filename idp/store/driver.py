"""Statements run on the driver's cursor, for the hot paths where SQLAlchemy's own cost is most
of the request: about 40 µs a statement through Core's cached compilation and 150 µs or more
through the ORM, against 5 to 10 µs for the statement itself on SQLite (measured on the refresh
grant, whose ten statements cost 4 ms through the ORM). The SQL is written here once, with the
column names taken from the mapped table so that it cannot drift from the schema, and runs in
the caller's transaction: on a Session's connection it joins the Session's transaction,
savepoints included.

What these statements change is not in the Session's identity map: a caller works with the
rows they return (`Columns.instance` builds a transient, never-attached ORM object from one)
and does not mix them with ORM objects of the same rows in one unit of work.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import JSON, Boolean, Connection
from sqlalchemy.orm import Session

from idp.store.base import Base

M = TypeVar("M", bound=Base)


class Sql:
    """One statement, written with `?` placeholders, in each driver's parameter style (sqlite3
    takes `?`, psycopg `%s`)."""

    def __init__(self, sql: str) -> None:
        escaped = sql.replace("%", "%%")
        self._by_style = {
            "qmark": sql,
            "format": escaped.replace("?", "%s"),
            "pyformat": escaped.replace("?", "%s"),
        }

    def of(self, conn: Connection) -> str:
        return self._by_style[conn.dialect.paramstyle]

    def of_style(self, paramstyle: str) -> str:
        return self._by_style[paramstyle]


# Where a statement runs: a Session's transaction, a Connection, or a bare sqlite3 connection
# (idp.db.engine.loop_reader), which is in autocommit mode.
Target = Session | Connection | sqlite3.Connection


def connection_of(db: Session | Connection) -> Connection:
    """The connection of the caller's transaction. A Session's pending ORM changes are flushed
    first, so the statements see them (as the ORM's own autoflush would)."""
    if isinstance(db, Session):
        db.flush()
        return db.connection()
    return db


def _cursor(db: Target, sql: Sql) -> tuple[Any, str]:
    if isinstance(db, sqlite3.Connection):
        return db.cursor(), sql.of_style("qmark")
    conn = connection_of(db)
    return conn.connection.dbapi_connection.cursor(), sql.of(conn)  # type: ignore[union-attr]


class AwaitedReads(Protocol):
    """Reads awaited on the event loop, in psycopg's parameter style (idp.db.loop_reads)."""

    async def fetch_one(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None: ...


def fetch_one(db: Target, sql: Sql, params: Sequence[Any]) -> tuple[Any, ...] | None:
    cursor, text = _cursor(db, sql)
    try:
        cursor.execute(text, tuple(params))
        row = cursor.fetchone()
    finally:
        cursor.close()
    return tuple(row) if row is not None else None


def fetch_all(db: Target, sql: Sql, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    cursor, text = _cursor(db, sql)
    try:
        cursor.execute(text, tuple(params))
        return [tuple(row) for row in cursor.fetchall()]
    finally:
        cursor.close()


def execute(db: Target, sql: Sql, params: Sequence[Any]) -> int:
    """Runs a statement that returns no rows; the number of rows it changed."""
    cursor, text = _cursor(db, sql)
    try:
        cursor.execute(text, tuple(params))
        return int(cursor.rowcount)
    finally:
        cursor.close()


class Columns(Generic[M]):
    """A mapped table's columns, in order, and how a driver's row becomes Python values: SQLite
    hands JSON back as text and booleans as integers, where psycopg has converted both."""

    def __init__(self, model: type[M]) -> None:
        self.model = model
        table = model.__table__
        self.table: str = table.name  # type: ignore[attr-defined]
        self.names = tuple(c.name for c in table.c)
        self._json = frozenset(c.name for c in table.c if isinstance(c.type, JSON))
        self._bool = frozenset(c.name for c in table.c if isinstance(c.type, Boolean))
        self.select = f"SELECT {', '.join(self.names)} FROM {self.table}"  # noqa: S608 (names from the table)
        self._insert = Sql(
            f"INSERT INTO {self.table} ({', '.join(self.names)})"  # noqa: S608 (names from the table)
            f" VALUES ({', '.join('?' for _ in self.names)})"
        )

    def insert(self, db: Target, **values: Any) -> M:
        """INSERT one row (columns not given are NULL: give every column that has a default)
        and return it as instance() would. JSON goes as text, which both drivers take."""
        unknown = values.keys() - set(self.names)
        if unknown:
            raise TypeError(f"{self.table} has no column {', '.join(sorted(unknown))}")
        row = {name: values.get(name) for name in self.names}
        encoded = [
            json.dumps(value) if name in self._json and value is not None else value
            for name, value in row.items()
        ]
        execute(db, self._insert, encoded)
        found = self.model.__new__(self.model)
        found.__dict__.update(row)
        return found

    def values(self, row: Sequence[Any]) -> dict[str, Any]:
        values = dict(zip(self.names, row, strict=True))
        for name in self._json:
            if isinstance(values[name], str | bytes):
                values[name] = json.loads(values[name])
        for name in self._bool:
            if values[name] is not None:
                values[name] = bool(values[name])
        return values

    def instance(self, row: Sequence[Any]) -> M:
        """The row as an object of the model, for reading its attributes only. It is made
        without the ORM's instrumentation (0.3-0.5 µs, against 17-26 µs through the model's
        constructor, measured per object): mapped attributes read from its __dict__ as on a
        loaded object, while setting one, adding it to a Session or a lazy load raises."""
        found = self.model.__new__(self.model)
        found.__dict__.update(self.values(row))
        return found


class Recent(Generic[M]):
    """The copies (Columns.instance) last made from a table's rows, by primary key: a row read
    again unchanged, as a client's is at each of its token requests, gives back the copy made
    before instead of a new one. Parsing a client's eight JSON columns is most of a copy's cost
    (40-50 µs, against 1 µs to compare the row with the one the copy was made from).

    Only the row just read decides: a changed row makes a new copy, so a copy is never stale,
    whatever other processes write. Copies are shared between requests and threads, so callers
    must treat them, and the lists and dicts they hold, as read-only, as for any copy."""

    def __init__(self, columns: Columns[M], size: int = 1024) -> None:
        self._columns = columns
        self._size = size
        self._copies: dict[Any, tuple[tuple[Any, ...], M]] = {}

    def instance(self, key: Any, row: Sequence[Any]) -> M:
        row = tuple(row)
        known = self._copies.get(key)
        if known is not None and known[0] == row:
            return known[1]
        found = self._columns.instance(row)
        if len(self._copies) >= self._size:
            self._copies.clear()  # rarely: more live keys than that (one step, thread-safe)
        self._copies[key] = (row, found)
        return found
