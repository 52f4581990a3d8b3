"""Browser sessions. The cookie holds a random id; the table holds only its SHA-256."""

from __future__ import annotations

from sqlalchemy import JSON, ForeignKey, String, bindparam, delete, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from idp.security.secrets import new_id, new_secret, sha256_hex
from idp.store.base import Base, now
from idp.store.driver import Columns, Sql, execute, fetch_one

# Writing last_seen_at on every request would turn each page view into a write; a minute is
# precise enough for an idle timeout measured in tens of minutes.
TOUCH_GRANULARITY = 60


class BrowserSession(Base):
    __tablename__ = "sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Public session id for the `sid` claim (OIDC Front/Back-Channel Logout); not the cookie value.
    sid: Mapped[str] = mapped_column(String(43), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[int]
    last_seen_at: Mapped[int]
    expires_at: Mapped[int]
    auth_time: Mapped[int]
    amr: Mapped[list[str]] = mapped_column(JSON)
    acr: Mapped[str] = mapped_column(String(64))
    # Where and with what the session signed in, for the person's own list of sessions.
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(256))
    # A WebAuthn registration challenge from /account (base64url): single use, short-lived.
    challenge: Mapped[str | None] = mapped_column(String(128))
    challenge_expires_at: Mapped[int | None]


# The statements of the sign-in path, on the driver's cursor (idp.store.driver).
_SESSIONS = Columns(BrowserSession)


def start(
    db: Session,
    user_id: str,
    amr: list[str],
    acr: str,
    absolute_timeout: int,
    *,
    ip: str | None = None,
    user_agent: str | None = None,
) -> tuple[str, BrowserSession]:
    """Create a session and return (cookie value, row). A new id at every login (no fixation)."""
    cookie = new_secret()
    ts = now()
    row = _SESSIONS.insert(
        db,
        id_hash=sha256_hex(cookie),
        sid=new_id(),
        user_id=user_id,
        created_at=ts,
        last_seen_at=ts,
        expires_at=ts + absolute_timeout,
        auth_time=ts,
        amr=amr,
        acr=acr,
        ip=ip[:45] if ip else None,
        user_agent=user_agent[:256] if user_agent else None,
    )
    return cookie, row


# Read at nearly every page and code exchange: built once, as constructing them cost more than
# running them (see idp.store.interactions).
_CURRENT = select(BrowserSession).where(
    BrowserSession.id_hash == bindparam("id_hash"),
    BrowserSession.expires_at > bindparam("ts"),
    BrowserSession.last_seen_at > bindparam("seen_after"),
)
_LIVE_SID = select(BrowserSession.sid).where(
    BrowserSession.sid == bindparam("sid"),
    BrowserSession.expires_at > bindparam("ts"),
    BrowserSession.last_seen_at > bindparam("seen_after"),
)


def current(
    db: Session, cookie: str | None, idle_timeout: int, touch: bool = True
) -> BrowserSession | None:
    """The live session for this cookie (touched, unless `touch` is False); None if unknown,
    idle too long or expired."""
    if not cookie:
        return None
    ts = now()
    params = {"id_hash": sha256_hex(cookie), "ts": ts, "seen_after": ts - idle_timeout}
    row = db.scalars(_CURRENT, params).one_or_none()
    if touch and row is not None and ts - row.last_seen_at >= TOUCH_GRANULARITY:
        row.last_seen_at = ts
    return row


_READ_CURRENT = Sql(_SESSIONS.select + " WHERE id_hash = ? AND expires_at > ? AND last_seen_at > ?")
_TOUCH = Sql("UPDATE sessions SET last_seen_at = ? WHERE id_hash = ?")


def read_current(
    db: Session, cookie: str | None, idle_timeout: int, touch: bool = True
) -> BrowserSession | None:
    """As current(), as a read-only copy (store.driver.Columns.instance) and on the driver's
    cursor, for the protocol's question at every page of a sign-in: who is signed in here. The
    touch is an UPDATE; the copy shows the time it wrote."""
    if not cookie:
        return None
    ts = now()
    id_hash = sha256_hex(cookie)
    row = fetch_one(db, _READ_CURRENT, (id_hash, ts, ts - idle_timeout))
    if row is None:
        return None
    found = _SESSIONS.instance(row)
    if touch and ts - found.last_seen_at >= TOUCH_GRANULARITY:
        execute(db, _TOUCH, (ts, id_hash))
        found.__dict__["last_seen_at"] = ts  # the copy is no ORM object: set what was written
    return found


def by_sid(db: Session, sid: str) -> BrowserSession | None:
    ts = now()
    return db.scalars(
        select(BrowserSession).where(BrowserSession.sid == sid, BrowserSession.expires_at > ts)
    ).one_or_none()


def end(db: Session, cookie: str) -> None:
    db.execute(delete(BrowserSession).where(BrowserSession.id_hash == sha256_hex(cookie)))


def is_live(db: Session, sid: str, idle_timeout: int) -> bool:
    """True if the session with this public sid has neither ended nor timed out."""
    ts = now()
    return db.scalar(_LIVE_SID, {"sid": sid, "ts": ts, "seen_after": ts - idle_timeout}) is not None


def end_by_sid(db: Session, sid: str) -> bool:
    """End the session with this sid; False if no row was there to end (already ended, by a
    concurrent sign-out, or never existed)."""
    result = db.execute(delete(BrowserSession).where(BrowserSession.sid == sid))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def of_user(db: Session, user_id: str) -> list[BrowserSession]:
    return list(db.scalars(select(BrowserSession).where(BrowserSession.user_id == user_id)))


def live_count(db: Session, user_id: str, idle_timeout: int) -> int:
    """How many browsers this user is signed in on now."""
    ts = now()
    return int(
        db.scalar(
            select(func.count()).where(
                BrowserSession.user_id == user_id,
                BrowserSession.expires_at > ts,
                BrowserSession.last_seen_at > ts - idle_timeout,
            )
        )
        or 0
    )


def step_up(db: Session, session: BrowserSession, amr: list[str], acr: str) -> None:
    """The session signed in again with a stronger factor: its amr gains the new methods, its
    acr and auth_time move (OIDC Core §2: auth_time is when the user last authenticated)."""
    session.amr = list(dict.fromkeys([*session.amr, *amr]))
    session.acr = acr
    session.auth_time = session.last_seen_at = now()
    db.flush()


def live_of_user(db: Session, user_id: str, idle_timeout: int) -> list[BrowserSession]:
    """The user's live sessions, the most recently used first."""
    ts = now()
    return list(
        db.scalars(
            select(BrowserSession)
            .where(
                BrowserSession.user_id == user_id,
                BrowserSession.expires_at > ts,
                BrowserSession.last_seen_at > ts - idle_timeout,
            )
            .order_by(BrowserSession.last_seen_at.desc(), BrowserSession.created_at.desc())
        )
    )
