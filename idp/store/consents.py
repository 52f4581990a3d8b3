"""What each user has allowed each client, remembered so consent is asked once."""

from __future__ import annotations

import json

from sqlalchemy import JSON, ForeignKey, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from idp.store.base import Base, now
from idp.store.driver import Sql, fetch_one
from idp.store.upsert import insert_ignore


class Consent(Base):
    __tablename__ = "consents"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    client_id: Mapped[str] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), primary_key=True
    )
    scopes: Mapped[list[str]] = mapped_column(JSON)
    granted_at: Mapped[int]


# Asked at every authorization of a signed-in user: on the driver's cursor (idp.store.driver).
_SCOPES = Sql("SELECT scopes FROM consents WHERE user_id = ? AND client_id = ?")


def covers(db: Session, user_id: str, client_id: str, scopes: list[str]) -> bool:
    row = fetch_one(db, _SCOPES, (user_id, client_id))
    if row is None:
        return False
    granted = json.loads(row[0]) if isinstance(row[0], str | bytes) else row[0]
    return set(scopes) <= set(granted)


def grant(db: Session, user_id: str, client_id: str, scopes: list[str]) -> None:
    """Remember the decision; earlier grants stay (a later, narrower request asks nothing new).

    Two sign-ins of one user to one client may decide at once (two tabs, two devices): on
    PostgreSQL both would find no row and the second INSERT would fail on the primary key. So
    the row is inserted unless it exists (the second waits for the first to commit, then
    inserts nothing), and an existing row is locked before its scopes are merged, so neither
    decision is lost."""
    wanted = sorted(set(scopes))
    if insert_ignore(
        db, Consent, user_id=user_id, client_id=client_id, scopes=wanted, granted_at=now()
    ):
        return
    row = db.scalars(
        select(Consent)
        .where(Consent.user_id == user_id, Consent.client_id == client_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if row is None:  # withdrawn between the two statements: this decision stands alone
        insert_ignore(
            db, Consent, user_id=user_id, client_id=client_id, scopes=wanted, granted_at=now()
        )
        return
    row.scopes = sorted(set(row.scopes) | set(scopes))
    row.granted_at = now()
    db.flush()


def of_user(db: Session, user_id: str) -> list[Consent]:
    return list(
        db.scalars(
            select(Consent).where(Consent.user_id == user_id).order_by(Consent.granted_at.desc())
        )
    )


def withdraw(db: Session, user_id: str, client_id: str) -> bool:
    """Forget the consent; the next authorization request asks again. False if there was none."""
    result = db.execute(
        delete(Consent).where(Consent.user_id == user_id, Consent.client_id == client_id)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
