"""audit trail: who acted (actor) in a column of its own, and indexes to search by actor and
subject (user, client)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 19:30:00.000000
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

events = sa.table(
    "audit_events",
    sa.column("id", sa.Integer),
    sa.column("actor", sa.String),
    sa.column("detail", sa.JSON),
)


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.add_column(sa.Column("actor", sa.String(length=128), nullable=True))
        batch_op.create_index("ix_audit_events_actor", ["actor"])
        batch_op.create_index("ix_audit_events_user_id", ["user_id"])
        batch_op.create_index("ix_audit_events_client_id", ["client_id"])
    # Events written before this kept the actor in their detail: move it to the column, so a
    # search by actor finds them too.
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(events.c.id, events.c.detail).where(
            sa.cast(events.c.detail, sa.Text).like('%"actor"%')
        )
    ).all()
    for row_id, detail in rows:
        detail = json.loads(detail) if isinstance(detail, str) else dict(detail or {})
        actor = detail.pop("actor", None)
        if actor is None:
            continue
        conn.execute(
            events.update()
            .where(events.c.id == row_id)
            .values(actor=str(actor)[:128], detail=detail)
        )


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(events.c.id, events.c.actor, events.c.detail).where(events.c.actor.is_not(None))
    ).all()
    for row_id, actor, detail in rows:
        detail = json.loads(detail) if isinstance(detail, str) else dict(detail or {})
        conn.execute(
            events.update().where(events.c.id == row_id).values(detail={**detail, "actor": actor})
        )
    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.drop_index("ix_audit_events_client_id")
        batch_op.drop_index("ix_audit_events_user_id")
        batch_op.drop_index("ix_audit_events_actor")
        batch_op.drop_column("actor")
