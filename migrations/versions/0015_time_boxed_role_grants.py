"""user_roles.expires_at: time-boxed role grants (`idp users roles EMAIL --add admin --for 8h`)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 20:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("user_roles") as batch_op:
        batch_op.add_column(sa.Column("expires_at", TIMESTAMP, nullable=True))


def downgrade() -> None:
    # A time-boxed grant cannot be kept without its end, and keeping it for ever would widen
    # it: every time-boxed grant goes.
    op.execute("DELETE FROM user_roles WHERE expires_at IS NOT NULL")
    with op.batch_alter_table("user_roles") as batch_op:
        batch_op.drop_column("expires_at")
