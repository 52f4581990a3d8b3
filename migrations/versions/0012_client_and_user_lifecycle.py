"""client and user lifecycle: disabled clients, secret rotation with an overlap, token
revocation epochs, a client's last day of use

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 13:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
CLIENT_TIMES = (
    "secret_created_at",
    "previous_secret_expires_at",
    "tokens_revoked_before",
    "last_used_day",
)


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch_op:
        batch_op.add_column(
            sa.Column("disabled", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("previous_secret_hash", sa.String(length=64), nullable=True))
        for name in CLIENT_TIMES:
            batch_op.add_column(sa.Column(name, TIMESTAMP, nullable=True))
    # Existing secrets are as old as their clients.
    op.execute("UPDATE clients SET secret_created_at = created_at WHERE secret_hash IS NOT NULL")
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("tokens_revoked_before", TIMESTAMP, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("tokens_revoked_before")
    with op.batch_alter_table("clients") as batch_op:
        for name in (*reversed(CLIENT_TIMES), "previous_secret_hash", "disabled"):
            batch_op.drop_column(name)
