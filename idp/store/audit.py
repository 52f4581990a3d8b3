"""Audit trail rows, append-only; and the per-minute tallies of unauthenticated failures."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import (
    JSON,
    BigInteger,
    Integer,
    Select,
    String,
    delete,
    func,
    or_,
    select,
    tuple_,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from idp.store.base import Base
from idp.store.driver import Sql, fetch_all, fetch_one
from idp.store.upsert import insert


class AuditRecord(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[int] = mapped_column(index=True)
    event: Mapped[str] = mapped_column(String(64), index=True)
    # The subject: the user and/or client the event is about.
    user_id: Mapped[str | None] = mapped_column(String(36), index=True)
    client_id: Mapped[str | None] = mapped_column(String(64), index=True)
    ip: Mapped[str | None] = mapped_column(String(64))
    # Who made the change, when it was not the subject itself: "cli", "user:<id>" (an
    # administrator, from the admin pages or a user token), "client:<id>" (an admin service).
    actor: Mapped[str | None] = mapped_column(String(128), index=True)
    detail: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    # The row's place in the hash chain and its HMAC (idp.store.audit_chain), set as its
    # transaction commits; NULL only for a row written around the chain.
    seq: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), index=True, unique=True
    )
    mac: Mapped[str | None] = mapped_column(String(64))


class FailureTally(Base):
    """Failures of unauthenticated requests, counted per minute, address, client and event
    until the minute closes; then one audit event carries the count. An attacker's requests
    grow a counter, not the audit trail, and no audit row is ever changed in place."""

    __tablename__ = "failure_tallies"

    minute: Mapped[int] = mapped_column(primary_key=True)  # Unix time of the minute's start
    event: Mapped[str] = mapped_column(String(64), primary_key=True)
    ip: Mapped[str] = mapped_column(String(64), primary_key=True)  # "" when unknown
    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)  # "" when none
    count: Mapped[int] = mapped_column(Integer)
    # The minute's first event's user and detail, as an example of what was counted.
    user_id: Mapped[str | None] = mapped_column(String(36))
    detail: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)


def tally(
    db: Session,
    minute: int,
    event: str,
    ip: str | None,
    client_id: str | None,
    user_id: str | None,
    detail: dict[str, object],
) -> None:
    """Count one failure in its minute: one upsert, as cheap as the row it replaces."""
    t = FailureTally
    stmt = (
        insert(db, t)
        .values(
            minute=minute,
            event=event,
            ip=(ip or "")[:64],
            client_id=(client_id or "")[:64],
            count=1,
            user_id=user_id,
            detail=detail,
        )
        .on_conflict_do_update(
            index_elements=[t.minute, t.event, t.ip, t.client_id], set_={"count": t.count + 1}
        )
    )
    db.execute(stmt)


def any_closed(db: Session, before: int) -> bool:
    t = FailureTally
    return db.scalar(select(t.minute).where(t.minute < before).limit(1)) is not None


@dataclass(frozen=True)
class ClosedTally:
    minute: int
    event: str
    ip: str
    client_id: str
    count: int
    user_id: str | None
    detail: dict[str, object]


def take_closed(db: Session, before: int, limit: int) -> list[ClosedTally]:
    """Remove and return up to `limit` tallies of minutes before `before`. A DELETE ...
    RETURNING: two workers closing at once never both get one row."""
    t = FailureTally
    # Oldest first, so the trail stays in time order; the subquery bounds the batch.
    chosen = (
        select(t.minute, t.event, t.ip, t.client_id)
        .where(t.minute < before)
        .order_by(t.minute, t.event, t.ip, t.client_id)
        .limit(limit)
    )
    keys = db.execute(chosen).all()
    if not keys:
        return []
    rows = db.execute(
        delete(t)
        .where(tuple_(t.minute, t.event, t.ip, t.client_id).in_(keys))
        .returning(t.minute, t.event, t.ip, t.client_id, t.count, t.user_id, t.detail)
    ).all()
    return sorted(
        (ClosedTally(*row) for row in rows), key=lambda r: (r.minute, r.event, r.ip, r.client_id)
    )


# Every sign-in asks these (idp.authn.new_device), on the driver's cursor (idp.store.driver):
# built through the ORM at each call they cost 500-600 µs, against 5-7 µs for the first two
# statements themselves. The user's newest sign-ins since a time, newest first, at most N:
_NEWEST = (
    "SELECT ip FROM audit_events WHERE user_id = ? AND event = 'login.succeeded' AND at >= ?"
    " ORDER BY id DESC LIMIT ?"
)
# The read stops at the first match: the newest rows are read first.
_FROM_ADDRESS = Sql(f"SELECT newest.ip FROM ({_NEWEST}) newest WHERE newest.ip = ? LIMIT 1")  # noqa: S608 (constant)
_ADDRESSES = Sql(f"SELECT DISTINCT newest.ip FROM ({_NEWEST}) newest")  # noqa: S608 (constant)
_ANY_SIGN_IN = Sql(
    "SELECT id FROM audit_events WHERE user_id = ? AND event = 'login.succeeded' LIMIT 1"
)


def signed_in_from(db: Session, user_id: str, ip: str, since: int, limit: int) -> bool:
    """Whether one of the user's newest `limit` sign-ins since `since` came from this very
    address: a person usually signs in from an address they used last time."""
    return fetch_one(db, _FROM_ADDRESS, (user_id, since, limit, ip)) is not None


def sign_in_addresses_of(db: Session, user_id: str, since: int, limit: int) -> set[str | None]:
    """The distinct addresses among the user's newest `limit` sign-ins since `since`. DISTINCT
    runs in the database: a person signs in from a handful of addresses, and turning each of
    500 rows into a Python object cost more than the rest of the sign-in."""
    return {row[0] for row in fetch_all(db, _ADDRESSES, (user_id, since, limit))}


def signed_in_before(db: Session, user_id: str) -> bool:
    """Whether the trail holds any sign-in of the user (within its retention)."""
    return fetch_one(db, _ANY_SIGN_IN, (user_id,)) is not None


def activity_of(
    db: Session, user_id: str, events: Collection[str], limit: int = 10
) -> list[AuditRecord]:
    """The user's newest audit events of the kinds given, newest first. A failed sign-in that
    was tallied appears once per minute with its count (the first attempt's user_id), as the
    trail holds it; one still in an open minute's tally is not in the trail yet."""
    return list(
        db.scalars(
            select(AuditRecord)
            .where(AuditRecord.user_id == user_id, AuditRecord.event.in_(list(events)))
            .order_by(AuditRecord.at.desc(), AuditRecord.id.desc())
            .limit(limit)
        )
    )


@dataclass(frozen=True)
class AuditQuery:
    """What to look for in the trail; every field given narrows it."""

    actor: str | None = None
    subject: str | None = None  # a user id or a client id: the event is about it
    events: Collection[str] | None = None
    since: int | None = None  # inclusive
    until: int | None = None  # exclusive


def search(db: Session, query: AuditQuery, before_id: int | None, limit: int) -> list[AuditRecord]:
    """Events newest first (by id: the order they were written in) matching the query, older
    than the previous page's last one; `limit` rows at most."""
    r = AuditRecord
    stmt = _matching(query)
    if before_id is not None:
        stmt = stmt.where(r.id < before_id)
    return list(db.scalars(stmt.order_by(r.id.desc()).limit(limit)))


def _matching(query: AuditQuery) -> Select[AuditRecord]:
    r = AuditRecord
    stmt = select(r)
    if query.actor is not None:
        stmt = stmt.where(r.actor == query.actor)
    if query.subject is not None:
        stmt = stmt.where(or_(r.user_id == query.subject, r.client_id == query.subject))
    if query.events is not None:
        stmt = stmt.where(r.event.in_(list(query.events)))
    if query.since is not None:
        stmt = stmt.where(r.at >= query.since)
    if query.until is not None:
        stmt = stmt.where(r.at < query.until)
    return stmt


def search_after(
    db: Session, query: AuditQuery, after_id: int, limit: int, up_to_id: int | None = None
) -> list[AuditRecord]:
    """Events oldest first (by id) matching the query, newer than `after_id` and at most
    `up_to_id`; `limit` rows at most: a keyset page, for exports and for following the trail."""
    r = AuditRecord
    stmt = _matching(query).where(r.id > after_id)
    if up_to_id is not None:
        stmt = stmt.where(r.id <= up_to_id)
    return list(db.scalars(stmt.order_by(r.id).limit(limit)))


def last_id(db: Session) -> int:
    """The newest event's id (0 when the trail is empty): where following the trail starts."""
    return db.scalar(select(func.max(AuditRecord.id))) or 0


def ids_between(db: Session, after_id: int, up_to_id: int) -> list[int]:
    """The ids in (after_id, up_to_id] that are committed, whatever their event: a missing one
    may be a transaction still open (on PostgreSQL an id is taken at insert, not at commit)."""
    r = AuditRecord
    return list(db.scalars(select(r.id).where(r.id > after_id, r.id <= up_to_id).order_by(r.id)))


def ids_after(db: Session, after_id: int, limit: int) -> list[int]:
    """The first `limit` committed ids after `after_id`, whatever their event, oldest first."""
    r = AuditRecord
    return list(db.scalars(select(r.id).where(r.id > after_id).order_by(r.id).limit(limit)))


def search_among(db: Session, query: AuditQuery, ids: Collection[int]) -> list[AuditRecord]:
    """The events among `ids` matching the query, oldest first."""
    if not ids:
        return []
    return list(
        db.scalars(_matching(query).where(AuditRecord.id.in_(list(ids))).order_by(AuditRecord.id))
    )


def ids_among(db: Session, ids: Collection[int]) -> list[int]:
    """Which of `ids` are committed now."""
    if not ids:
        return []
    r = AuditRecord
    return list(db.scalars(select(r.id).where(r.id.in_(list(ids)))))
