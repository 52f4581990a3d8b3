"""The schema revision the database is at (alembic's bookkeeping table)."""

from __future__ import annotations

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError


def revisions(conn: Connection) -> set[str]:
    """The alembic revisions the database is at; empty when it was never migrated."""
    try:
        rows = conn.execute(text("SELECT version_num FROM alembic_version"))
    except DBAPIError:
        # No table yet is "not migrated"; a database that cannot be reached raises
        # OperationalError (a DBAPIError too) on connect, before this.
        return set()
    return {str(r[0]) for r in rows}
