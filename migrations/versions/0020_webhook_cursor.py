"""webhook_cursor: where the security webhook is in the audit trail (one row)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every int column, as the models map int (idp.store.base): 64-bit, INTEGER on SQLite.
INT64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # No row yet: the first server with a webhook starts it at the end of the trail.
    op.create_table(
        "webhook_cursor",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_id", INT64, nullable=False),
        sa.Column("missing", sa.JSON(), nullable=False),
        sa.Column("failing_id", INT64, nullable=True),
        sa.Column("attempts", INT64, nullable=False),
        sa.Column("next_attempt_at", INT64, nullable=False),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.Column("lease", sa.String(length=64), nullable=True),
        sa.Column("lease_until", INT64, nullable=False),
        sa.Column("updated_at", INT64, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_cursor")),
    )


def downgrade() -> None:
    # Only a position in the trail goes: a webhook set again starts at the trail's end.
    op.drop_table("webhook_cursor")
