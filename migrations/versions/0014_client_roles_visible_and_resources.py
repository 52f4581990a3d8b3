"""clients.roles_visible: the roles a client's access tokens may list; clients.resources: the
audiences an introspecting resource server serves (NULL: the server-wide default audience, what
every existing --introspect client served)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 20:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch_op:
        batch_op.add_column(sa.Column("roles_visible", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("resources", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch_op:
        batch_op.drop_column("resources")
        batch_op.drop_column("roles_visible")
