"""client metadata (OIDC Registration §2 URIs) and client logos

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 10:12:31.402117
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

URI_COLUMNS = ("logo_uri", "client_uri", "policy_uri", "tos_uri")


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        for name in URI_COLUMNS:
            batch_op.add_column(sa.Column(name, sa.String(length=2000), nullable=True))
        batch_op.add_column(sa.Column("logo_sha256", sa.String(length=64), nullable=True))

    op.create_table(
        "client_logos",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("image", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "fetched_at", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.client_id"],
            name=op.f("fk_client_logos_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_client_logos")),
    )


def downgrade() -> None:
    op.drop_table("client_logos")

    # recreate="never": SQLite (3.35 and later) drops a plain column in place. A batch copy
    # would drop the clients table, and with foreign keys on, SQLite's implicit DELETE of its
    # rows would cascade to every table that references a client.
    with op.batch_alter_table("clients", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("logo_sha256")
        for name in reversed(URI_COLUMNS):
            batch_op.drop_column(name)
