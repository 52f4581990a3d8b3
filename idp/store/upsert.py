"""INSERT ... ON CONFLICT DO NOTHING for both dialects.

A plain INSERT that hits a unique key aborts a PostgreSQL transaction; this form does not, and it
tells the caller whether the row was new in one round trip.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignore(db: Session, model: type[Any], **values: Any) -> bool:
    """Insert a row unless its primary key exists; True if it was inserted."""
    dialect = db.get_bind().dialect.name
    builder = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = builder(model).values(**values).on_conflict_do_nothing()
    # psycopg reports rowcount -1 for this statement unless asked to keep it.
    result = db.execute(stmt, execution_options={"preserve_rowcount": True})
    return int(result.rowcount) > 0  # type: ignore[attr-defined]
