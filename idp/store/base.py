"""Declarative base with a constraint naming convention (Alembic needs stable names)."""

from __future__ import annotations

import time

from sqlalchemy import JSON, BigInteger, Integer, MetaData
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
    # Timestamps are Unix seconds: 64-bit, or PostgreSQL's INTEGER would end in January 2038.
    type_annotation_map = {
        list[str]: JSON,
        dict[str, object]: JSON,
        int: BigInteger().with_variant(Integer(), "sqlite"),
    }


def now() -> int:
    """Timestamps are integer Unix seconds: portable across SQLite and PostgreSQL, no time zones."""
    return int(time.time())
