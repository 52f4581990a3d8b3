"""Four eyes for the changes that make an administrator: the admin role for a user, an admin
API scope for a client. The gate turns such a change into a pending change, which takes effect
only when a different administrator approves it within a day.

- `gate()` is the one gate: grant_role(), register() and update_client() call it, so the admin
  pages, the admin API and the CLI all go through it. Taking a privilege away is never gated.
- Bootstrap: while no enabled user holds a live admin grant, nobody could approve, so the
  change applies at once and is audited as a bootstrap (a fresh install gets its first admin).
- `approve()` takes a person who holds the admin role now (actor `user:<id>`), neither the
  requester nor the user the change is for; or the CLI's break-glass, audited as such.

HTTP-free: every function works in the caller's transaction and never commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from sqlalchemy.orm import Session

from idp.admin.listing import DEFAULT_LIMIT, Page, check_limit, decode_cursor, page_of
from idp.audit.events import AuditEvent, record
from idp.protocol.tokens import ADMIN_SCOPES
from idp.security.secrets import new_id
from idp.store import approvals as store, clients, roles, users
from idp.store.approvals import CLIENT_SCOPES, ROLE_GRANT, PendingChange
from idp.store.base import now
from idp.store.roles import ADMIN

CLI = "cli"


class UnknownChange(LookupError):
    """No pending change has this id."""


class NotAllowed(PermissionError):
    """This actor may not decide this change (not a person who is an admin, or their own)."""


class NotPending(ValueError):
    """The change was decided already, has expired, or can no longer apply."""


@dataclass(frozen=True)
class Wanted:
    """A change the gate is asked about: the admin role for a user, or scopes for a client."""

    kind: str
    user_id: str | None = None
    client_id: str | None = None
    role: str | None = None
    scopes: tuple[str, ...] = ()
    grant_until: int | None = None


def admin_scopes(scopes: list[str]) -> list[str]:
    return [s for s in scopes if s in ADMIN_SCOPES]


def gate(db: Session, wanted: Wanted, *, actor: str | None) -> PendingChange | None:
    """None when the change may apply now: it is not sensitive, or it bootstraps the first
    admin (audited as a security event); else the pending change it became (audited)."""
    if wanted.kind == ROLE_GRANT and wanted.role != ADMIN:
        return None
    if wanted.kind == CLIENT_SCOPES and not admin_scopes(list(wanted.scopes)):
        return None
    before, after = _before_after(db, wanted)
    if not store.any_active_admin(db):
        record(
            db,
            AuditEvent.APPROVAL_BOOTSTRAP,
            user_id=wanted.user_id,
            client_id=wanted.client_id,
            actor=actor,
            kind=wanted.kind,
            change={"before": before, "after": after},
            until=wanted.grant_until,
        )
        return None
    at = now()
    change = PendingChange(
        id=new_id(18),
        kind=wanted.kind,
        status=store.PENDING,
        user_id=wanted.user_id,
        client_id=wanted.client_id,
        role=wanted.role,
        scopes=list(wanted.scopes) if wanted.kind == CLIENT_SCOPES else None,
        grant_until=wanted.grant_until,
        requested_by=(actor or CLI)[:128],
        requested_at=at,
        expires_at=at + store.LIFETIME,
    )
    same = store.same_pending(db, change)
    if same is not None and (same.scopes or []) == (change.scopes or []):
        return same
    store.add(db, change)
    _audit(db, AuditEvent.APPROVAL_REQUESTED, change, actor, before, after)
    return change


def _before_after(db: Session, wanted: Wanted | PendingChange) -> tuple[list[str], list[str]]:
    """The roles (or the client's scopes) before the change, and after it would apply."""
    if wanted.kind == ROLE_GRANT:
        assert wanted.user_id is not None and wanted.role is not None
        held = roles.of(db, wanted.user_id)
        return held, sorted({*held, wanted.role})
    client = clients.get(db, wanted.client_id or "")
    current = list(client.scopes) if client else []
    added = [s for s in (wanted.scopes or ()) if s not in current]
    return current, current + added


def _audit(
    db: Session,
    event: AuditEvent,
    change: PendingChange,
    actor: str | None,
    before: list[str],
    after: list[str],
) -> None:
    record(
        db,
        event,
        user_id=change.user_id,
        client_id=change.client_id,
        actor=actor,
        approval=change.id,
        kind=change.kind,
        requested_by=change.requested_by,
        change={"before": before, "after": after},
        until=change.grant_until,
        expires_at=change.expires_at,
    )


def _check_approver(db: Session, change: PendingChange, actor: str) -> None:
    """A person who holds the admin role now and is neither the requester nor the target."""
    kind, _, user_id = actor.partition(":")
    if kind != "user" or not user_id:
        raise NotAllowed("only an administrator signed in as a person may decide this")
    user = users.get(db, user_id)
    if user is None or user.disabled or not roles.holds(db, user_id, ADMIN):
        raise NotAllowed("only an administrator may decide this")
    if actor == change.requested_by:
        raise NotAllowed("a change needs a different administrator than the one who asked")
    if user_id == change.user_id:
        raise NotAllowed("nobody may approve a change that makes themselves an administrator")


def _load(db: Session, change_id: str) -> PendingChange:
    change = store.get(db, change_id)
    if change is None:
        raise UnknownChange(change_id)
    return change


def _check_live(change: PendingChange) -> None:
    if change.status != store.PENDING:
        raise NotPending(f"this change was {change.status} already")
    if change.expires_at <= now():
        raise NotPending("this change has expired (a request waits 24 hours); ask again")
    if change.grant_until is not None and change.grant_until <= now():
        raise NotPending("the time box of this grant has ended; ask again")


def approve(db: Session, change_id: str, *, actor: str, break_glass: bool = False) -> PendingChange:
    """Apply a pending change approved by `actor`. Raises UnknownChange, NotAllowed (the
    actor may not), NotPending (decided, expired, or its target is gone). `break_glass` is the
    CLI's: no second person, audited as a security event."""
    change = _load(db, change_id)
    if not break_glass:
        _check_approver(db, change, actor)
    _check_live(change)
    before, after = _before_after(db, change)
    decided = store.decide(db, change.id, store.APPROVED, actor)
    if decided is None:
        raise NotPending("this change was decided meanwhile")
    _apply(db, decided, actor)
    event = AuditEvent.APPROVAL_BREAK_GLASS if break_glass else AuditEvent.APPROVAL_APPROVED
    _audit(db, event, decided, actor, before, after)
    return decided


def _apply(db: Session, change: PendingChange, actor: str) -> None:
    if change.kind == ROLE_GRANT:
        assert change.user_id is not None and change.role is not None
        if users.get(db, change.user_id) is None:
            raise NotPending("the user is gone")
        held = roles.of(db, change.user_id)
        roles.add(db, change.user_id, change.role, change.grant_until)
        record(
            db,
            AuditEvent.ROLE_GRANTED,
            user_id=change.user_id,
            actor=actor,
            role=change.role,
            until=change.grant_until,
            approval=change.id,
            requested_by=change.requested_by,
            roles={"before": held, "after": roles.of(db, change.user_id)},
        )
        return
    client = clients.get(db, change.client_id or "")
    if client is None:
        raise NotPending("the client is gone")
    before = " ".join(client.scopes)
    client.scopes = list(dict.fromkeys([*client.scopes, *(change.scopes or [])]))
    db.flush()
    scope = {"before": before, "after": " ".join(client.scopes)}
    changes: dict[str, object] = {"scope": scope}
    record(
        db,
        AuditEvent.CLIENT_UPDATED,
        client_id=client.client_id,
        actor=actor,
        changes=changes,
        approval=change.id,
        requested_by=change.requested_by,
    )


def reject(db: Session, change_id: str, *, actor: str) -> PendingChange:
    """Refuse a pending change: any administrator who is a person (the requester too, who
    withdraws it), or the CLI. Raises UnknownChange, NotAllowed, NotPending."""
    change = _load(db, change_id)
    if actor != CLI:
        kind, _, user_id = actor.partition(":")
        if kind != "user" or not roles.holds(db, user_id, ADMIN):
            raise NotAllowed("only an administrator signed in as a person may decide this")
    if change.status != store.PENDING:
        raise NotPending(f"this change was {change.status} already")
    before, after = _before_after(db, change)
    decided = store.decide(db, change.id, store.REJECTED, actor)
    if decided is None:
        raise NotPending("this change was decided meanwhile, or has expired")
    _audit(db, AuditEvent.APPROVAL_REJECTED, decided, actor, before, after)
    return decided


def get_change(db: Session, change_id: str) -> PendingChange:
    return _load(db, change_id)


def list_pending(
    db: Session, *, cursor: str | None = None, limit: int = DEFAULT_LIMIT
) -> Page[PendingChange]:
    """Live pending changes, oldest first. Raises InvalidCursor, or ValueError for a bad
    limit."""
    after = decode_cursor(cursor, (int, str))
    key = (cast(int, after[0]), cast(str, after[1])) if after else None
    rows = store.pending(db, key, check_limit(limit) + 1)
    return page_of(rows, limit, lambda c: (c.requested_at, c.id))


def pending_count(db: Session) -> int:
    return store.pending_count(db)


def pending_for_user(db: Session, user_id: str) -> list[PendingChange]:
    return store.pending_for_user(db, user_id)


def status_of(change: PendingChange) -> str:
    """pending, approved, rejected, or expired (pending past its day)."""
    if change.status == store.PENDING and change.expires_at <= now():
        return "expired"
    return change.status


def summary(change: PendingChange) -> str:
    """What the change does, in a few words."""
    if change.kind == ROLE_GRANT:
        return f"grant role {change.role} to user {change.user_id}"
    return f"add scope {' '.join(change.scopes or [])} to client {change.client_id}"


def describe(change: PendingChange) -> dict[str, object]:
    return {
        "id": change.id,
        "kind": change.kind,
        "status": status_of(change),
        "summary": summary(change),
        "user_id": change.user_id,
        "client_id": change.client_id,
        "role": change.role,
        "scopes": change.scopes,
        "grant_until": change.grant_until,
        "requested_by": change.requested_by,
        "requested_at": change.requested_at,
        "expires_at": change.expires_at,
        "decided_by": change.decided_by,
        "decided_at": change.decided_at,
    }
