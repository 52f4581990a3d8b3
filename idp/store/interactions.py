"""Sign-in interactions: what /authorize validated, kept while the person signs in and consents.

The row is found by the SHA-256 of a random id (the id itself only travels in the browser's
URL) and only together with the SHA-256 of the browser's own interaction cookie: an id copied
to another browser opens nothing. Its outcome is taken once, by one conditional UPDATE, so two
workers (or two tabs) cannot both turn one interaction into a code.
"""

from __future__ import annotations

import json

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    String,
    func,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from idp.security.secrets import new_secret, sha256_hex
from idp.store.base import Base, now
from idp.store.driver import Columns, Sql, Target, execute, fetch_one

# The steps an interaction records as done: the person signed in (a session, with every factor
# owed), only the password was checked (a second factor is owed before a session starts),
# the person consented.
LOGIN = "login"
PASSWORD = "password"  # noqa: S105 (a step name)
CONSENT = "consent"


class Interaction(Base):
    __tablename__ = "interactions"
    # The creation cap counts one address's recent interactions; pruning goes by expiry.
    __table_args__ = (Index("ix_interactions_ip_created_at", "ip", "created_at"),)

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    browser_hash: Mapped[str] = mapped_column(String(64))
    # None for an interaction of the IdP's own (account pages, admin step-up).
    client_id: Mapped[str | None] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE")
    )
    # The authorization request as validated: its parameters, in order, repeated ones refused.
    params: Mapped[list[list[str]]] = mapped_column(JSON)
    # A sign-in is owed within this interaction (prompt=login, select_account, max_age passed).
    login_required: Mapped[bool] = mapped_column(default=False)
    acr_values: Mapped[str | None] = mapped_column(String(256))
    # The user id_token_hint names, if any: nobody else may complete this interaction.
    hinted_sub: Mapped[str | None] = mapped_column(String(64))
    steps: Mapped[list[str]] = mapped_column(JSON, default=list)
    user_id: Mapped[str | None] = mapped_column(String(36))
    ip: Mapped[str | None] = mapped_column(String(45))
    # Wrong second-factor answers so far: five end the interaction.
    factor_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A WebAuthn challenge (base64url) issued within this interaction: single use, short-lived.
    challenge: Mapped[str | None] = mapped_column(String(128))
    challenge_expires_at: Mapped[int | None]
    created_at: Mapped[int]
    expires_at: Mapped[int] = mapped_column(index=True)
    completed_at: Mapped[int | None]


# An interaction's statements, on the driver's cursor (idp.store.driver): every page of a
# sign-in reads its interaction, some twice, and through the ORM a read cost 150-200 µs against
# 10 µs. A live interaction: this browser's, not completed, not expired.
_ROWS = Columns(Interaction)
_LIVE = Sql(
    _ROWS.select
    + " WHERE id_hash = ? AND browser_hash = ? AND completed_at IS NULL AND expires_at > ?"
)
_STEPS = Sql("UPDATE interactions SET steps = ?, user_id = ? WHERE id_hash = ?")


def start(
    db: Session,
    browser: str,
    client_id: str | None,
    params: list[tuple[str, str]],
    ttl: int,
    ip: str | None,
    login_required: bool = False,
    acr_values: str | None = None,
    hinted_sub: str | None = None,
    user_id: str | None = None,
) -> str:
    """Store a new interaction for this browser; returns its id (shown once, stored hashed)."""
    interaction_id = new_secret()
    ts = now()
    _ROWS.insert(
        db,
        id_hash=sha256_hex(interaction_id),
        browser_hash=sha256_hex(browser),
        client_id=client_id,
        params=[[k, v] for k, v in params],
        login_required=login_required,
        acr_values=acr_values,
        hinted_sub=hinted_sub,
        steps=[],
        user_id=user_id,
        ip=ip,
        factor_failures=0,
        created_at=ts,
        expires_at=ts + ttl,
    )
    return interaction_id


def get(db: Target, interaction_id: str | None, browser: str | None) -> Interaction | None:
    """The interaction, if it exists, belongs to this browser, has not expired nor ended: a
    read-only copy (store.driver.Columns.instance); the changes below are statements."""
    if not interaction_id or not browser or len(interaction_id) > 64 or len(browser) > 128:
        return None
    found = fetch_one(db, _LIVE, (sha256_hex(interaction_id), sha256_hex(browser), now()))
    return _ROWS.instance(found) if found is not None else None


def step_done(db: Target, row: Interaction, step: str, user_id: str | None = None) -> None:
    """Record a step (a sign-in names its user; a sign-in as another user resets consent).
    `row` is the copy read in this transaction, which is not changed: read again to see it."""
    steps = [s for s in row.steps if s != step]
    if user_id is not None and row.user_id not in (None, user_id):
        steps = []
    execute(
        db,
        _STEPS,
        (json.dumps([*steps, step]), user_id if user_id is not None else row.user_id, row.id_hash),
    )


def factor_failed(db: Session, row: Interaction) -> int:
    """Count one wrong second-factor answer; returns how many there have been (one UPDATE, so
    parallel wrong answers are all counted)."""
    db.execute(
        update(Interaction)
        .where(Interaction.id_hash == row.id_hash)
        .values(factor_failures=Interaction.factor_failures + 1),
        execution_options={"synchronize_session": False},
    )
    return int(
        db.scalar(select(Interaction.factor_failures).where(Interaction.id_hash == row.id_hash))
        or 0
    )


_COMPLETE = Sql(
    "UPDATE interactions SET completed_at = ?"  # noqa: S608 (names from the table)
    " WHERE id_hash = ? AND browser_hash = ? AND completed_at IS NULL AND expires_at > ?"
    " RETURNING " + ", ".join(_ROWS.names)
)


def complete(db: Target, interaction_id: str, browser: str) -> Interaction | None:
    """Finish the interaction once: None if unknown, expired, another browser's or already done
    (one conditional UPDATE, on the conditions of _LIVE: of two parallel calls, one gets it)."""
    ts = now()
    found = fetch_one(
        db, _COMPLETE, (ts, sha256_hex(interaction_id), sha256_hex(browser or ""), ts)
    )
    return _ROWS.instance(found) if found is not None else None


def started_since(db: Session, ip: str, since: int) -> int:
    """How many interactions this client address started since `since` (the creation cap)."""
    return int(
        db.scalar(
            select(func.count())
            .select_from(Interaction)
            .where(Interaction.ip == ip, Interaction.created_at >= since)
        )
        or 0
    )
