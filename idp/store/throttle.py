"""Throttle counters: failed attempts per key, shared by every worker and node.

Each row is one bucket (an account, an address, an account from one address, a device, a
client from one address). `count` holds the attempts of the current round that are in flight
or failed; a round allows `limit` attempts while the bucket has no strikes, one after that.
When a failure uses up the round, the bucket is blocked for a delay that doubles with each
strike, and a new round starts when the block ends. A bucket nobody touched for the window
is forgotten.

Every decision is one statement, so parallel attempts on any number of workers cannot pass
more than the limit: the reservation is an upsert whose update applies only while a slot is
free (`... DO UPDATE SET count = count + 1 WHERE count < allowance RETURNING`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    case,
    delete,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from idp.store.base import Base
from idp.store.driver import Sql, execute, fetch_one
from idp.store.upsert import insert_ignore

# 2**SHIFT_CAP times the base delay is far past any maximum delay: the shift stays small.
SHIFT_CAP = 30


class ThrottleCounter(Base):
    __tablename__ = "throttle_counters"

    # SHA-256 of the bucket's kind and identifiers: no email address or client id is stored.
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    # SHA-256 of the account identifier as submitted, so an unlock finds every bucket of it.
    account: Mapped[str | None] = mapped_column(String(64), index=True)
    count: Mapped[int] = mapped_column(Integer)
    strikes: Mapped[int] = mapped_column(Integer)
    blocked_until: Mapped[int]
    expires_at: Mapped[int] = mapped_column(index=True)


class SprayMark(Base):
    """One account that failed to sign in from one network in one window (password spraying
    is many accounts, few guesses each); the row with account "" says the window's burst was
    reported."""

    __tablename__ = "sign_in_spray_marks"

    network: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256, as above
    window: Mapped[int] = mapped_column(primary_key=True)  # its start, Unix seconds
    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(index=True)


@dataclass(frozen=True)
class Bucket:
    key: str
    account: str | None
    limit: int  # attempts in the first round


@dataclass(frozen=True)
class Backoff:
    base: int  # seconds of the first block
    maximum: int  # no block is longer
    window: int  # a bucket untouched this long (after its block) is forgotten


def _allowance(limit: int):  # type: ignore[no-untyped-def]
    t = ThrottleCounter
    return case((t.strikes == 0, literal(limit)), else_=literal(1))


# The reservation, on the driver's cursor (idp.store.driver): every sign-in runs it once per
# budget, and through the ORM's DML path it cost about 300 µs against 15 µs for the statement.
# SQLite and PostgreSQL share the upsert's syntax. A bucket with strikes gets one attempt per
# round; a fresh one its whole limit; a forgotten one (expired) starts afresh.
_RESERVE = Sql(
    'INSERT INTO throttle_counters ("key", account, count, strikes, blocked_until, expires_at)'
    " VALUES (?, ?, 1, 0, 0, ?)"
    ' ON CONFLICT ("key") DO UPDATE SET'
    " count = CASE WHEN throttle_counters.expires_at <= ? THEN 1"
    " ELSE throttle_counters.count + 1 END,"
    " strikes = CASE WHEN throttle_counters.expires_at <= ? THEN 0"
    " ELSE throttle_counters.strikes END,"
    " blocked_until = CASE WHEN throttle_counters.expires_at <= ? THEN 0"
    " ELSE throttle_counters.blocked_until END,"
    " expires_at = CASE WHEN throttle_counters.expires_at > ? THEN throttle_counters.expires_at"
    " ELSE ? END"
    " WHERE throttle_counters.expires_at <= ?"
    " OR (throttle_counters.blocked_until <= ? AND throttle_counters.count <"
    " CASE WHEN throttle_counters.strikes = 0 THEN ? ELSE 1 END)"
    " RETURNING throttle_counters.count"
)


def reserve(db: Session, bucket: Bucket, ts: int, backoff: Backoff) -> bool:
    """Take one attempt's slot in the bucket; False when it is blocked or its slots are taken."""
    end = ts + backoff.window  # the window's end: the row's new expires_at
    # In the order of the placeholders: the new row, the SET, the WHERE.
    params = (bucket.key, bucket.account, end, ts, ts, ts, end, end, ts, ts, bucket.limit)
    return fetch_one(db, _RESERVE, params) is not None


def retry_after(db: Session, key: str, ts: int) -> int:
    """Seconds until the bucket's block ends; 0 when it is not blocked (its slots are busy)."""
    t = ThrottleCounter
    blocked_until = db.scalar(select(t.blocked_until).where(t.key == key))
    return max(0, (blocked_until or 0) - ts)


def fail(db: Session, bucket: Bucket, ts: int, backoff: Backoff) -> int | None:
    """A reserved attempt failed. When it used up the round, the bucket is blocked (the delay
    doubles with each strike) and a new round is readied; returns the new strike count then."""
    t = ThrottleCounter
    # The first block is `base`; the shift is capped before it can overflow.
    shift = case((t.strikes >= SHIFT_CAP, literal(SHIFT_CAP)), else_=t.strikes)
    delay = literal(backoff.base, BigInteger) * (literal(1, BigInteger).op("<<")(shift))
    capped = case((delay > backoff.maximum, literal(backoff.maximum, BigInteger)), else_=delay)
    stmt = (
        update(t)
        .where(t.key == bucket.key, t.count >= _allowance(bucket.limit))
        .values(
            strikes=t.strikes + 1,
            count=0,
            blocked_until=ts + capped,
            expires_at=ts + capped + backoff.window,
        )
        .returning(t.strikes)
    )
    return db.execute(stmt).scalar()


_RELEASE = Sql('UPDATE throttle_counters SET count = count - 1 WHERE "key" = ? AND count > 0')
_FORGET = Sql('DELETE FROM throttle_counters WHERE "key" = ?')


def release(db: Session, key: str) -> None:
    """Give back a reserved slot whose attempt was not judged, or that succeeded."""
    execute(db, _RELEASE, (key,))


def forget(db: Session, key: str) -> None:
    """Reset a bucket: its owner proved who they are."""
    execute(db, _FORGET, (key,))


def forget_account(db: Session, account: str) -> int:
    """Reset every bucket of one account identifier; how many there were."""
    result = db.execute(
        delete(ThrottleCounter).where(ThrottleCounter.account == account),
        execution_options={"preserve_rowcount": True},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# --- password spraying ---------------------------------------------------------------------------

# The account of the row that marks a window's burst as reported.
REPORTED = ""


def mark_spray(db: Session, network: str, window: int, account: str, expires_at: int) -> bool:
    """Note that `account` failed from `network` in `window`; True the first time."""
    return insert_ignore(
        db, SprayMark, network=network, window=window, account=account, expires_at=expires_at
    )


def spray_accounts(db: Session, network: str, window: int) -> int:
    m = SprayMark
    found = db.scalar(
        select(func.count()).where(m.network == network, m.window == window, m.account != REPORTED)
    )
    return int(found or 0)
