"""Alembic environment: the URL comes from Settings, the connection may be handed in by idp."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from idp.store import metadata


def _run(connection: Connection) -> None:
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
