"""Alembic environment: the URL comes from Settings, the connection may be handed in by idp."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from idp.store import metadata


def _run(connection: Connection) -> None:
    if connection.dialect.name != "sqlite" or connection.in_transaction():
        _migrate(connection)
        return
    # SQLite alters a table in batch mode by copying it and dropping the old one; with foreign
    # keys enforced, that drop deletes every row that references it ON DELETE CASCADE (a users
    # rebuild took every consent with it). The pragma only applies outside a transaction.
    raw = connection.connection.dbapi_connection
    assert raw is not None
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        _migrate(connection)
    finally:
        if connection.in_transaction():
            connection.commit()
        raw.execute("PRAGMA foreign_keys=ON")


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from idp.db.engine import make_engine
    from idp.settings import load_settings

    engine = make_engine(load_settings())
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `idp migrate`")
run_migrations_online()
