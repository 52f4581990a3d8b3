"""RFC 8707 resource indicators: clients.audiences (the audiences a client may ask for, the first
being its default; NULL: the server-wide default) replaces clients.access_token_audience, and
authorization codes and refresh-token families keep the resources their grant was asked for
(NULL: none named)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 23:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_clients = sa.table(
    "clients",
    sa.column("client_id", sa.String),
    sa.column("access_token_audience", sa.String),
    sa.column("audiences", sa.JSON),
)


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch_op:
        batch_op.add_column(sa.Column("audiences", sa.JSON(), nullable=True))
    conn = op.get_bind()
    registered = conn.execute(
        sa.select(_clients.c.client_id, _clients.c.access_token_audience).where(
            _clients.c.access_token_audience.is_not(None)
        )
    ).all()
    for client_id, audience in registered:
        conn.execute(
            _clients.update()
            .where(_clients.c.client_id == client_id)
            .values(audiences=[audience])
        )
    with op.batch_alter_table("clients") as batch_op:
        batch_op.drop_column("access_token_audience")
    for table in ("authorization_codes", "token_families"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("resources", sa.JSON(), nullable=True))


def downgrade() -> None:
    for table in ("token_families", "authorization_codes"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("resources")
    with op.batch_alter_table("clients") as batch_op:
        batch_op.add_column(sa.Column("access_token_audience", sa.String(2000), nullable=True))
    conn = op.get_bind()
    registered = conn.execute(
        sa.select(_clients.c.client_id, _clients.c.audiences).where(
            _clients.c.audiences.is_not(None)
        )
    ).all()
    for client_id, audiences in registered:
        # The default audience survives; the others had no column before this revision.
        first = audiences[0] if isinstance(audiences, list) and audiences else None
        conn.execute(
            _clients.update()
            .where(_clients.c.client_id == client_id)
            .values(access_token_audience=first)
        )
    with op.batch_alter_table("clients") as batch_op:
        batch_op.drop_column("audiences")
