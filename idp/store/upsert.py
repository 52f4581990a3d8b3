"""INSERT ... ON CONFLICT for both dialects.

A plain INSERT that hits a unique key aborts a PostgreSQL transaction; these forms do not, and
they tell the caller what happened in one round trip.
"""

from __future__ import annotations

import importlib
from typing import Any

from sqlalchemy.orm import Session


def dialect_insert(dialect: str) -> Any:
    """The `insert` construct of the dialect (`postgresql` or `sqlite`), imported on first use:
    the PostgreSQL dialect is 2 to 4 MiB resident that a SQLite deployment never needs."""
    return importlib.import_module(f"sqlalchemy.dialects.{dialect}").insert


def insert(db: Session, model: type[Any]) -> Any:
    """The dialect's INSERT, which has `on_conflict_do_update` and `on_conflict_do_nothing`
    (SQLite and PostgreSQL spell the upsert the same way)."""
    return dialect_insert(db.get_bind().dialect.name)(model)


def insert_ignore(db: Session, model: type[Any], **values: Any) -> bool:
    """Insert a row unless its primary key exists; True if it was inserted."""
    stmt = insert(db, model).values(**values).on_conflict_do_nothing()
    # psycopg reports rowcount -1 for this statement unless asked to keep it.
    result = db.execute(stmt, execution_options={"preserve_rowcount": True})
    return int(result.rowcount) > 0  # type: ignore[attr-defined]
