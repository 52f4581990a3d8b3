"""pending_changes: four eyes for the admin role and the admin API scopes (idp approvals)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 23:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pending_changes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=True),
        sa.Column("client_id", sa.String(length=64), nullable=True),
        sa.Column("role", sa.String(length=64), nullable=True),
        sa.Column("scopes", sa.JSON(), nullable=True),
        sa.Column("grant_until", TIMESTAMP, nullable=True),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("requested_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.Column("decided_by", sa.String(length=128), nullable=True),
        sa.Column("decided_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_pending_changes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.client_id"],
            name=op.f("fk_pending_changes_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_changes")),
    )
    op.create_index(
        op.f("ix_pending_changes_user_id"), "pending_changes", ["user_id"], unique=False
    )
    op.create_index(
        op.f("ix_pending_changes_client_id"), "pending_changes", ["client_id"], unique=False
    )
    op.create_index(
        op.f("ix_pending_changes_expires_at"), "pending_changes", ["expires_at"], unique=False
    )


def downgrade() -> None:
    # A pending change is a request, not a grant: nothing anyone holds goes with the table.
    op.drop_index(op.f("ix_pending_changes_expires_at"), table_name="pending_changes")
    op.drop_index(op.f("ix_pending_changes_client_id"), table_name="pending_changes")
    op.drop_index(op.f("ix_pending_changes_user_id"), table_name="pending_changes")
    op.drop_table("pending_changes")
