"""Back-channel logout notifications waiting to be delivered (OIDC Back-Channel Logout 1.0).

An outbox: ending a session only adds rows here, in its own transaction, and returns; workers
deliver them afterwards, each attempt claimed by one conditional UPDATE so two workers never
send the same attempt.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from idp.store.base import Base, now


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


def due(db: Session, limit: int) -> list[int]:
    ts = now()
    return list(
        db.scalars(
            select(LogoutDelivery.id)
            .where(
                LogoutDelivery.delivered_at.is_(None),
                LogoutDelivery.failed_at.is_(None),
                LogoutDelivery.next_attempt_at <= ts,
            )
            .order_by(LogoutDelivery.id)
            .limit(limit)
        )
    )


def claim(db: Session, delivery_id: int, lease: int) -> LogoutDelivery | None:
    """Take one attempt of a due delivery: no other worker can take it until the lease ends."""
    ts = now()
    return db.scalars(
        update(LogoutDelivery)
        .where(
            LogoutDelivery.id == delivery_id,
            LogoutDelivery.delivered_at.is_(None),
            LogoutDelivery.failed_at.is_(None),
            LogoutDelivery.next_attempt_at <= ts,
        )
        .values(next_attempt_at=ts + lease, attempts=LogoutDelivery.attempts + 1)
        .returning(LogoutDelivery),
        execution_options={"synchronize_session": False},
    ).one_or_none()
