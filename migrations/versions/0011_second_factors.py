"""second factors (TOTP, recovery codes, WebAuthn), the admin role, MFA-only clients

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 12:00:00.000000

`users.is_admin`, which nothing read, becomes the reserved `admin` role.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name=op.f(f"fk_{table}_user_id_users"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "totp_factors",
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("sealed_seed", sa.LargeBinary(), nullable=False),
        sa.Column("confirmed_at", TIMESTAMP, nullable=True),
        sa.Column("last_step", TIMESTAMP, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        _user_fk("totp_factors"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_totp_factors")),
    )
    op.create_table(
        "recovery_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        _user_fk("recovery_codes"),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_recovery_codes")),
    )
    op.create_index(op.f("ix_recovery_codes_user_id"), "recovery_codes", ["user_id"])
    op.create_table(
        "webauthn_credentials",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("credential_id", sa.Text(), nullable=False),
        sa.Column("credential_id_hash", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("sign_count", TIMESTAMP, nullable=False),
        sa.Column("transports", sa.JSON(), nullable=False),
        sa.Column("aaguid", sa.String(length=36), nullable=True),
        sa.Column("backup_eligible", sa.Boolean(), nullable=False),
        sa.Column("backed_up", sa.Boolean(), nullable=False),
        sa.Column("discoverable", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("last_used_at", TIMESTAMP, nullable=True),
        _user_fk("webauthn_credentials"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webauthn_credentials")),
        sa.UniqueConstraint(
            "credential_id_hash", name=op.f("uq_webauthn_credentials_credential_id_hash")
        ),
    )
    op.create_index(op.f("ix_webauthn_credentials_user_id"), "webauthn_credentials", ["user_id"])
    with op.batch_alter_table("interactions") as batch_op:
        batch_op.add_column(
            sa.Column("factor_failures", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("challenge", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("challenge_expires_at", TIMESTAMP, nullable=True))
    with op.batch_alter_table("sessions") as batch_op:
        batch_op.add_column(sa.Column("ip", sa.String(length=45), nullable=True))
        batch_op.add_column(sa.Column("user_agent", sa.String(length=256), nullable=True))
        batch_op.add_column(sa.Column("challenge", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("challenge_expires_at", TIMESTAMP, nullable=True))
    with op.batch_alter_table("clients") as batch_op:
        batch_op.add_column(
            sa.Column("require_mfa", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.execute(
        "INSERT INTO user_roles (user_id, role, granted_at) "
        "SELECT id, 'admin', updated_at FROM users WHERE is_admin "
        "AND id NOT IN (SELECT user_id FROM user_roles WHERE role = 'admin')"
    )
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(
            sa.Column(
                "password_change_required", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
        batch_op.drop_column("is_admin")


def downgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(
            sa.Column("is_admin", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.drop_column("password_change_required")
    op.execute(
        "UPDATE users SET is_admin = (id IN (SELECT user_id FROM user_roles WHERE role = 'admin'))"
    )
    with op.batch_alter_table("clients") as batch_op:
        batch_op.drop_column("require_mfa")
    with op.batch_alter_table("sessions") as batch_op:
        for name in ("challenge_expires_at", "challenge", "user_agent", "ip"):
            batch_op.drop_column(name)
    with op.batch_alter_table("interactions") as batch_op:
        for name in ("challenge_expires_at", "challenge", "factor_failures"):
            batch_op.drop_column(name)
    op.drop_index(op.f("ix_webauthn_credentials_user_id"), table_name="webauthn_credentials")
    op.drop_table("webauthn_credentials")
    op.drop_index(op.f("ix_recovery_codes_user_id"), table_name="recovery_codes")
    op.drop_table("recovery_codes")
    op.drop_table("totp_factors")
