"""64-bit timestamps

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 12:03:52.218088
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# (table, column, nullable): every Unix-seconds timestamp. SQLite's INTEGER is already 64-bit.
COLUMNS = [
    ("audit_events", "at", False),
    ("authorization_codes", "auth_time", False),
    ("authorization_codes", "created_at", False),
    ("authorization_codes", "expires_at", False),
    ("authorization_codes", "token_expires_at", True),
    ("authorization_codes", "used_at", True),
    ("clients", "access_token_ttl", True),
    ("clients", "created_at", False),
    ("clients", "refresh_token_absolute_ttl", True),
    ("clients", "refresh_token_idle_ttl", True),
    ("consents", "granted_at", False),
    ("family_access_tokens", "expires_at", False),
    ("refresh_tokens", "created_at", False),
    ("refresh_tokens", "expires_at", False),
    ("refresh_tokens", "used_at", True),
    ("revoked_tokens", "expires_at", False),
    ("revoked_tokens", "revoked_at", False),
    ("sessions", "auth_time", False),
    ("sessions", "created_at", False),
    ("sessions", "expires_at", False),
    ("sessions", "last_seen_at", False),
    ("signing_keys", "activated_at", True),
    ("signing_keys", "activates_at", True),
    ("signing_keys", "created_at", False),
    ("signing_keys", "remove_after", True),
    ("signing_keys", "retired_at", True),
    ("signing_keys", "revoked_at", True),
    ("signing_keys", "updated_at", False),
    ("token_families", "auth_time", False),
    ("token_families", "created_at", False),
    ("token_families", "expires_at", False),
    ("token_families", "revoked_at", True),
    ("used_client_assertions", "expires_at", False),
    ("users", "created_at", False),
    ("users", "updated_at", False),
]


def _alter(to: sa.types.TypeEngine[int], existing: sa.types.TypeEngine[int]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, column, nullable in COLUMNS:
        op.alter_column(table, column, existing_type=existing, type_=to, existing_nullable=nullable)


def upgrade() -> None:
    _alter(sa.BigInteger(), sa.Integer())


def downgrade() -> None:
    _alter(sa.Integer(), sa.BigInteger())
