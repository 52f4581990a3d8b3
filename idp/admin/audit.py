"""The audit trail for administrators: search it, and the dashboard's counts and recent
security events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from sqlalchemy.orm import Session

from idp.admin.listing import DEFAULT_LIMIT, Page, check_limit, decode_cursor, page_of
from idp.audit.events import AuditEvent
from idp.store import audit, clients, keys, roles, users
from idp.store.audit import AuditQuery, AuditRecord
from idp.store.keys import PUBLISHED_STATES

# What the dashboard calls security events: attacks, misuse, and changes of who may do what.
SECURITY_EVENTS = frozenset(
    {
        AuditEvent.LOGIN_FAILED,
        AuditEvent.THROTTLE_STARTED,
        AuditEvent.CLIENT_AUTH_FAILED,
        AuditEvent.CLIENT_ASSERTION_REPLAYED,
        AuditEvent.CODE_REUSED,
        AuditEvent.REFRESH_REUSED,
        AuditEvent.CSRF_REJECTED,
        AuditEvent.MFA_FAILED,
        AuditEvent.MFA_RESET,
        AuditEvent.WEBAUTHN_SIGN_COUNT_REGRESSED,
        AuditEvent.ROLE_GRANTED,
        AuditEvent.ROLE_REVOKED,
        AuditEvent.APPROVAL_REQUESTED,
        AuditEvent.APPROVAL_APPROVED,
        AuditEvent.APPROVAL_BREAK_GLASS,
        AuditEvent.APPROVAL_BOOTSTRAP,
        AuditEvent.USER_DISABLED,
        AuditEvent.CLIENT_DISABLED,
        AuditEvent.CLIENT_SECRET_ROTATED,
        AuditEvent.SESSIONS_REVOKED,
        AuditEvent.KEY_REVOKED,
    }
)
EVENT_NAMES = frozenset(str(e) for e in AuditEvent)


class UnknownEvent(ValueError):
    """Not an event the trail records."""


def search_events(
    db: Session,
    *,
    actor: str | None = None,
    subject: str | None = None,
    event: str | None = None,
    since: int | None = None,
    until: int | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Page[AuditRecord]:
    """Events newest first; each argument given narrows the search (`subject`: a user id or a
    client id; `since` inclusive and `until` exclusive, Unix times). Raises UnknownEvent,
    InvalidCursor, or ValueError for a bad limit."""
    if event is not None and event not in EVENT_NAMES:
        raise UnknownEvent(f"{event!r} is not an audit event")
    after = decode_cursor(cursor, (int,))
    query = AuditQuery(
        actor=actor or None,
        subject=subject or None,
        events=[event] if event else None,
        since=since,
        until=until,
    )
    before_id = cast(int, after[0]) if after else None
    rows = audit.search(db, query, before_id, check_limit(limit) + 1)
    return page_of(rows, limit, lambda r: (r.id,))


def recent_security_events(db: Session, limit: int = 20) -> list[AuditRecord]:
    return audit.search(db, AuditQuery(events=SECURITY_EVENTS), None, limit)


def describe_event(record: AuditRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "at": record.at,
        "event": record.event,
        "actor": record.actor,
        "user_id": record.user_id,
        "client_id": record.client_id,
        "ip": record.ip,
        "detail": record.detail,
    }


@dataclass(frozen=True)
class Counts:
    clients: int
    disabled_clients: int
    users: int
    disabled_users: int
    admins: int
    published_keys: int


def counts(db: Session) -> Counts:
    client_total, clients_disabled = clients.count(db)
    user_total, users_disabled = users.count(db)
    admins = dict(roles.counts(db)).get(roles.ADMIN, 0)
    published = sum(1 for k in keys.all_keys(db) if k.state in PUBLISHED_STATES)
    return Counts(client_total, clients_disabled, user_total, users_disabled, admins, published)
