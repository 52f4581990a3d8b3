"""audit trail: a hash chain (seq, mac) that makes an edited, deleted or inserted row evident

Rows written before this carry no MAC: the first server start seals them into the chain, in id
order (idp.audit.chain.seal_legacy), since a migration holds no key-encryption key.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 02:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.add_column(
            sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True)
        )
        batch_op.add_column(sa.Column("mac", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_audit_events_seq", ["seq"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.drop_index("ix_audit_events_seq")
        batch_op.drop_column("mac")
        batch_op.drop_column("seq")
