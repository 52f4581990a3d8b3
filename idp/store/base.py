"""Declarative base with a constraint naming convention (Alembic needs stable names)."""

from __future__ import annotations

import time

from sqlalchemy import JSON, MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {list[str]: JSON, dict[str, object]: JSON}


def now() -> int:
    """Timestamps are integer Unix seconds: portable across SQLite and PostgreSQL, no time zones."""
    return int(time.time())
