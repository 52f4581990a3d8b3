"""Where the security webhook is in the audit trail: one row for the whole cluster.

`last_id` is the audit event every event up to which has been delivered, given up on or passed
over (not a security event); `missing` holds ids passed over that were not committed yet (on
PostgreSQL an id is taken at insert, so a transaction can commit a lower id after a higher one),
with when they were first missed. Sending is leased: whoever holds `lease` (a random token,
taken by one conditional UPDATE while `lease_until` has passed) sends the next events, and
every later write of the cursor names the token, so a worker whose lease lapsed and was taken
over changes nothing. `failing_id`, `attempts`, `next_attempt_at` and `last_error` are the
event whose delivery fails, how often it has, and when the next attempt may start.
"""

from __future__ import annotations

from sqlalchemy import JSON, Integer, String, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from idp.store.base import Base, now
from idp.store.upsert import insert_ignore

ROW_ID = 1


class WebhookCursor(Base):
    __tablename__ = "webhook_cursor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_id: Mapped[int]
    missing: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)  # str(id) -> Unix time
    failing_id: Mapped[int | None]
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(200))
    lease: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[int]


def get(db: Session) -> WebhookCursor | None:
    return db.get(WebhookCursor, ROW_ID)


def start(db: Session, last_id: int) -> bool:
    """Create the cursor at `last_id` unless it exists (another worker may just have made it);
    True if this call made it."""
    return insert_ignore(
        db, WebhookCursor, id=ROW_ID, last_id=last_id, missing={}, updated_at=now()
    )


def claim(db: Session, lease: str, seconds: int) -> WebhookCursor | None:
    """Take the lease for `seconds` when nobody holds it and no retry is waiting; None if
    another worker holds it (one conditional UPDATE: two workers never both take it)."""
    ts = now()
    c = WebhookCursor
    return db.scalars(
        update(c)
        .where(c.id == ROW_ID, c.lease_until <= ts, c.next_attempt_at <= ts)
        .values(lease=lease, lease_until=ts + seconds)
        .returning(c),
        execution_options={"synchronize_session": False},
    ).one_or_none()


def save(
    db: Session,
    lease: str,
    *,
    last_id: int,
    missing: dict[str, object],
    failing_id: int | None = None,
    attempts: int = 0,
    last_error: str | None = None,
    retry_at: int = 0,
    renew: int | None = None,
) -> bool:
    """Record progress under the lease: renewed for `renew` seconds, or released (None); False
    (nothing written) when the lease is no longer this one's."""
    ts = now()
    c = WebhookCursor
    held = {"lease_until": ts + renew} if renew else {"lease": None, "lease_until": 0}
    result = db.execute(
        update(c)
        .where(c.id == ROW_ID, c.lease == lease)
        .values(
            last_id=last_id,
            missing=missing,
            failing_id=failing_id,
            attempts=attempts,
            last_error=last_error[:200] if last_error else None,
            next_attempt_at=retry_at,
            updated_at=ts,
            **held,
        ),
        execution_options={"synchronize_session": False},
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
