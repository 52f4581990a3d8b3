"""Back-channel logout notifications waiting to be delivered (OIDC Back-Channel Logout 1.0).

An outbox: ending a session only adds rows here, in its own transaction, and returns; workers
deliver them afterwards, each attempt claimed by one conditional UPDATE so two workers never
send the same attempt. The attempt is counted when it is claimed, not when it ends, and no
delivery is claimed past its attempt limit: a POST that hangs past its lease cannot earn the
delivery extra attempts, and its late outcome cannot reschedule the attempt claimed after it.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Integer,
    String,
    Text,
    func,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from idp.store.base import Base, now
from idp.store.clients import Client
from idp.store.codes import AuthorizationCode


class LogoutDelivery(Base):
    __tablename__ = "logout_deliveries"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    client_id: Mapped[str] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), index=True
    )
    uri: Mapped[str] = mapped_column(Text)
    # The claims of the logout token; it is signed when sent, so no token sits in the table.
    claims: Mapped[dict[str, object]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[int] = mapped_column(index=True)
    delivered_at: Mapped[int | None]
    failed_at: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[int]


def enqueue(db: Session, client_id: str, uri: str, claims: dict[str, object]) -> None:
    ts = now()
    db.add(
        LogoutDelivery(
            client_id=client_id, uri=uri, claims=claims, next_attempt_at=ts, created_at=ts
        )
    )


def pending(db: Session) -> int:
    """Deliveries neither delivered nor given up on (for the metrics)."""
    return int(
        db.scalar(
            select(func.count())
            .select_from(LogoutDelivery)
            .where(LogoutDelivery.delivered_at.is_(None), LogoutDelivery.failed_at.is_(None))
        )
        or 0
    )


def due(db: Session, limit: int, max_attempts: int) -> list[int]:
    ts = now()
    return list(
        db.scalars(
            select(LogoutDelivery.id)
            .where(
                LogoutDelivery.delivered_at.is_(None),
                LogoutDelivery.failed_at.is_(None),
                LogoutDelivery.next_attempt_at <= ts,
                LogoutDelivery.attempts < max_attempts,
            )
            .order_by(LogoutDelivery.id)
            .limit(limit)
        )
    )


def claim(db: Session, delivery_id: int, lease: int, max_attempts: int) -> LogoutDelivery | None:
    """Take one attempt of a due delivery, counted now: no other worker can take it until the
    lease ends, and nobody can once `max_attempts` have been taken."""
    ts = now()
    return db.scalars(
        update(LogoutDelivery)
        .where(
            LogoutDelivery.id == delivery_id,
            LogoutDelivery.delivered_at.is_(None),
            LogoutDelivery.failed_at.is_(None),
            LogoutDelivery.next_attempt_at <= ts,
            LogoutDelivery.attempts < max_attempts,
        )
        .values(next_attempt_at=ts + lease, attempts=LogoutDelivery.attempts + 1)
        .returning(LogoutDelivery),
        execution_options={"synchronize_session": False},
    ).one_or_none()


def backchannel_targets(db: Session, sid: str) -> list[tuple[str, str]]:
    """(client_id, backchannel_logout_uri) of every client the session `sid` signed in to."""
    client_ids = select(AuthorizationCode.client_id).where(AuthorizationCode.sid == sid)
    rows = db.execute(
        select(Client.client_id, Client.backchannel_logout_uri).where(
            Client.client_id.in_(client_ids), Client.backchannel_logout_uri.is_not(None)
        )
    ).all()
    return [(client_id, uri) for client_id, uri in rows if uri]


def delivered(db: Session, delivery_id: int) -> None:
    db.execute(
        update(LogoutDelivery).where(LogoutDelivery.id == delivery_id).values(delivered_at=now())
    )


def failed_attempt(
    db: Session, delivery_id: int, attempt: int, error: str, gave_up: bool, retry_in: int
) -> bool:
    """Record how attempt number `attempt` failed; False (nothing changed) when it is no longer
    the delivery's latest attempt (its lease lapsed and another was claimed) or the delivery
    already ended."""
    ts = now()
    values: dict[str, object] = {"last_error": error}
    if gave_up:
        values["failed_at"] = ts
    else:
        values["next_attempt_at"] = ts + retry_in
    result = db.execute(
        update(LogoutDelivery)
        .where(
            LogoutDelivery.id == delivery_id,
            LogoutDelivery.attempts == attempt,
            LogoutDelivery.delivered_at.is_(None),
            LogoutDelivery.failed_at.is_(None),
        )
        .values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def exhausted(db: Session, max_attempts: int) -> list[LogoutDelivery]:
    """End, as failed, the deliveries whose last attempt's lease lapsed with no outcome (the
    worker sending it stopped): they can never be claimed again. Returns them."""
    ts = now()
    return list(
        db.scalars(
            update(LogoutDelivery)
            .where(
                LogoutDelivery.delivered_at.is_(None),
                LogoutDelivery.failed_at.is_(None),
                LogoutDelivery.attempts >= max_attempts,
                LogoutDelivery.next_attempt_at <= ts,
            )
            .values(failed_at=ts, last_error="no outcome before the lease ended")
            .returning(LogoutDelivery),
            execution_options={"synchronize_session": False},
        )
    )


def queue_session_end(db: Session, sid: str, user_id: str) -> int:
    """Queue a logout token for every client the session `sid` signed in to that asked for
    them; returns how many."""
    targets = backchannel_targets(db, sid)
    for client_id, uri in targets:
        enqueue(db, client_id, uri, {"sub": user_id, "sid": sid})
    return len(targets)
