"""sign_in_spray_marks: the accounts that failed to sign in from one network in one window, so
a burst across many accounts (password spraying) becomes the security event login.spray

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sign_in_spray_marks",
        sa.Column("network", sa.String(length=64), nullable=False),
        sa.Column("window", TIMESTAMP, nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint(
            "network", "window", "account", name=op.f("pk_sign_in_spray_marks")
        ),
    )
    op.create_index(
        op.f("ix_sign_in_spray_marks_expires_at"),
        "sign_in_spray_marks",
        ["expires_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_sign_in_spray_marks_expires_at"), table_name="sign_in_spray_marks")
    op.drop_table("sign_in_spray_marks")
