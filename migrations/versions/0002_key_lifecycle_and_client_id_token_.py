"""key lifecycle and client id token algorithm

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 11:28:48.160213
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("id_token_signed_response_alg", sa.String(length=16), nullable=True)
        )

    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("activates_at", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("remove_after", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("revoked_at", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("remove_after")
        batch_op.drop_column("activates_at")

    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("id_token_signed_response_alg")
