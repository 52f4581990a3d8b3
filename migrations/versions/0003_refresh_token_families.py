"""refresh token families

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 11:56:31.319201
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "token_families",
        sa.Column("id", sa.String(length=43), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("sid", sa.String(length=43), nullable=True),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("auth_time", sa.Integer(), nullable=False),
        sa.Column("amr", sa.JSON(), nullable=False),
        sa.Column("acr", sa.String(length=64), nullable=False),
        sa.Column("offline", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.Integer(), nullable=False),
        sa.Column("revoked_at", sa.Integer(), nullable=True),
        sa.Column("revoke_reason", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.client_id"],
            name=op.f("fk_token_families_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_token_families_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_token_families")),
    )
    with op.batch_alter_table("token_families", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_token_families_client_id"), ["client_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_token_families_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_token_families_sid"), ["sid"], unique=False)
        batch_op.create_index(batch_op.f("ix_token_families_user_id"), ["user_id"], unique=False)

    op.create_table(
        "family_access_tokens",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("family_id", sa.String(length=43), nullable=False),
        sa.Column("expires_at", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["token_families.id"],
            name=op.f("fk_family_access_tokens_family_id_token_families"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_family_access_tokens")),
    )
    with op.batch_alter_table("family_access_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_family_access_tokens_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_family_access_tokens_family_id"), ["family_id"], unique=False
        )

    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("family_id", sa.String(length=43), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.Integer(), nullable=False),
        sa.Column("used_at", sa.Integer(), nullable=True),
        sa.Column("successor_hash", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["token_families.id"],
            name=op.f("fk_refresh_tokens_family_id_token_families"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_refresh_tokens")),
    )
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_refresh_tokens_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_refresh_tokens_family_id"), ["family_id"], unique=False
        )

    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("family_id", sa.String(length=43), nullable=True))

    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refresh_token_idle_ttl", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("refresh_token_absolute_ttl", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("can_introspect", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("can_introspect")
        batch_op.drop_column("refresh_token_absolute_ttl")
        batch_op.drop_column("refresh_token_idle_ttl")

    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.drop_column("family_id")

    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refresh_tokens_family_id"))
        batch_op.drop_index(batch_op.f("ix_refresh_tokens_expires_at"))

    op.drop_table("refresh_tokens")
    with op.batch_alter_table("family_access_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_family_access_tokens_family_id"))
        batch_op.drop_index(batch_op.f("ix_family_access_tokens_expires_at"))

    op.drop_table("family_access_tokens")
    with op.batch_alter_table("token_families", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_token_families_user_id"))
        batch_op.drop_index(batch_op.f("ix_token_families_sid"))
        batch_op.drop_index(batch_op.f("ix_token_families_expires_at"))
        batch_op.drop_index(batch_op.f("ix_token_families_client_id"))

    op.drop_table("token_families")
