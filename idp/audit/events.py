"""The audit trail: a closed list of events, written in the caller's transaction."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from idp.ops import logs, metrics
from idp.store import audit as store
from idp.store.audit import AuditRecord
from idp.store.base import now

log = logging.getLogger("idp.audit")

# Detail keys that could carry a credential never reach the table or the log.
_SECRETISH = re.compile(r"secret|password|token|code|assertion|cookie|otp", re.IGNORECASE)


class AuditEvent(StrEnum):
    LOGIN_SUCCEEDED = "login.succeeded"
    LOGIN_FAILED = "login.failed"
    # A sign-in from a browser whose device cookie does not name the user, who has signed in
    # before; `new_address` when no sign-in of theirs came from that network in 90 days.
    LOGIN_NEW_DEVICE = "login.new_device"
    # Failed sign-ins for IDP_LOGIN_SPRAY_ACCOUNTS accounts from one network in one window
    # (password spraying), once per window: network, accounts, window_start, window_seconds.
    LOGIN_SPRAY = "login.spray"
    THROTTLE_STARTED = "throttle.started"  # a budget of failed attempts was used up: blocked
    THROTTLE_CLEARED = "throttle.cleared"  # an account's budgets reset by an administrator
    LOGOUT = "logout"
    LOGOUT_DELIVERY_FAILED = "logout.delivery_failed"  # a back-channel logout gave up
    # The security webhook gave up on an event: event_id, event_type, attempts, reason. Not a
    # security event itself, so it is never sent (a receiver that is down cannot make a loop).
    WEBHOOK_GAVE_UP = "webhook.gave_up"
    SESSIONS_REVOKED = "sessions.revoked"  # every session and refresh token of a user
    SESSION_ENDED_BY_USER = "session.ended_by_user"  # from /account: one, or every other one
    # By the user at /account/password; every other session of theirs ends.
    PASSWORD_CHANGED = "password.changed"  # noqa: S105 (an event name)
    # The current password given at /account/password was wrong (throttled like a sign-in).
    PASSWORD_CHANGE_FAILED = "password.change_failed"  # noqa: S105 (an event name)
    CLIENT_AUTH_FAILED = "client_auth.failed"
    CLIENT_ASSERTION_REPLAYED = "client_assertion.replayed"
    CODE_REUSED = "code.reused"  # tokens issued from the code were revoked
    REFRESH_REUSED = "refresh.reused"  # the whole token family was revoked
    TOKEN_REVOKED = "token.revoked"  # noqa: S105 (an event name) RFC 7009, by its client
    # A revoked access token (its jti, or its user's or client's epoch) presented at userinfo
    # or introspection: a stolen copy, or a client that missed the revocation.
    REVOKED_TOKEN_USED = "token.revoked_used"  # noqa: S105 (an event name)
    CONSENT_GRANTED = "consent.granted"
    CONSENT_DENIED = "consent.denied"
    CONSENT_WITHDRAWN = "consent.withdrawn"  # by the user, from the home page: tokens revoked too
    CSRF_REJECTED = "csrf.rejected"
    USER_CREATED = "user.created"
    ROLE_GRANTED = "role.granted"  # a permission change: next tokens of the user carry it
    ROLE_REVOKED = "role.revoked"
    # idp.admin.approvals: four eyes for the admin role and the admin API scopes. Each holds
    # the approval's id, its kind, who asked, and the change's before and after.
    APPROVAL_REQUESTED = "approval.requested"  # a pending change waits for a second admin
    APPROVAL_APPROVED = "approval.approved"  # by a different administrator: it applied
    APPROVAL_REJECTED = "approval.rejected"
    APPROVAL_BREAK_GLASS = "approval.break_glass"  # applied from the CLI, with no second admin
    APPROVAL_BOOTSTRAP = "approval.bootstrap"  # applied at once: no active administrator yet
    CLIENT_CREATED = "client.created"
    CLIENT_DELETED = "client.deleted"
    # An administrator changed a client's metadata: actor, and changes {field: {before, after}}
    CLIENT_UPDATED = "client.updated"
    # idp.admin.revocation: what an administrator (actor=) did to a user or a client.
    USER_DISABLED = "user.disabled"  # sessions ended, tokens revoked, sign-in refused
    USER_ENABLED = "user.enabled"  # new sign-ins only: what was revoked stays revoked
    CLIENT_TOKENS_REVOKED = "client.tokens_revoked"  # every family, and an epoch
    CLIENT_DISABLED = "client.disabled"  # authenticates nowhere; its tokens revoked
    CLIENT_ENABLED = "client.enabled"
    CLIENT_SECRET_ROTATED = "client.secret_rotated"  # noqa: S105 (an event name) never the secret
    KEY_CREATED = "key.created"
    KEY_ACTIVATED = "key.activated"
    KEY_RETIRED = "key.retired"
    KEY_REVOKED = "key.revoked"
    KEY_REMOVED = "key.removed"
    KEYS_REWRAPPED = "keys.rewrapped"
    # The audit chain (idp.audit.chain): rows up to through_seq were pruned (reason
    # "retention") or sealed under the key-encryption key that was replaced ("rekey").
    AUDIT_CHECKPOINT = "audit.checkpoint"
    MFA_ENROLLED = "mfa.enrolled"  # a second factor was confirmed
    MFA_REMOVED = "mfa.removed"  # by the user, from /account
    MFA_RESET = "mfa.reset"  # every factor of a user removed by an administrator
    MFA_FAILED = "mfa.failed"  # a wrong second-factor answer
    MFA_REQUIRED_UNMET = "mfa.unmet"  # asked for a factor the user does not have
    RECOVERY_CODES_CREATED = "recovery_codes.created"  # the old set is void
    RECOVERY_CODE_USED = "recovery_code.used"
    WEBAUTHN_REGISTERED = "webauthn.registered"
    WEBAUTHN_REMOVED = "webauthn.removed"
    # An assertion's counter did not advance (WebAuthn L3 §6.1.1): a cloned authenticator,
    # or a replay racing the original; the sign-in was refused.
    WEBAUTHN_SIGN_COUNT_REGRESSED = "webauthn.sign_count_regressed"
    WEBAUTHN_FAILED = "webauthn.failed"  # a ceremony refused; why= its WebAuthnRefused.kind


# Security events: attacks, misuse, and changes of who may do what (the dashboard shows them,
# and the metrics count them by kind).
SECURITY_EVENTS = frozenset(
    {
        AuditEvent.LOGIN_FAILED,
        AuditEvent.LOGIN_NEW_DEVICE,
        AuditEvent.LOGIN_SPRAY,
        AuditEvent.THROTTLE_STARTED,
        AuditEvent.CLIENT_AUTH_FAILED,
        AuditEvent.CLIENT_ASSERTION_REPLAYED,
        AuditEvent.CODE_REUSED,
        AuditEvent.REFRESH_REUSED,
        AuditEvent.REVOKED_TOKEN_USED,
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
# Failures any stranger can cause: counted per minute, address, client and event, and written
# as one event with its count when the minute closes (close_minutes).
TALLIED = frozenset(
    {
        AuditEvent.LOGIN_FAILED,
        AuditEvent.CLIENT_AUTH_FAILED,
        AuditEvent.CSRF_REJECTED,
        AuditEvent.WEBAUTHN_FAILED,
        AuditEvent.REVOKED_TOKEN_USED,
    }
)
# A minute closes this long after it ends: a request counted at its last moment has committed.
CLOSE_GRACE_SECONDS = 5


def record(
    db: Session,
    event: AuditEvent,
    *,
    ip: str | None = None,
    user_id: str | None = None,
    client_id: str | None = None,
    actor: str | None = None,
    **detail: str | int | bool | dict[str, object] | None,
) -> None:
    # Only top-level keys are screened: a nested value (CLIENT_UPDATED's changes) is the
    # caller's to keep free of secrets.
    safe = {k: v for k, v in detail.items() if not _SECRETISH.search(k)}
    # A stranger's client id can hold a NUL, which PostgreSQL text columns refuse.
    client_id = client_id.replace("\x00", "\ufffd") if client_id else client_id
    at = now()
    if event in TALLIED:
        store.tally(db, at - at % 60, str(event), ip, client_id, user_id, dict(safe))
    else:
        db.add(
            AuditRecord(
                at=at,
                event=str(event),
                user_id=user_id,
                client_id=client_id,
                ip=ip,
                actor=actor[:128] if actor else None,
                detail=safe,
            )
        )
    _log(event, ip, user_id, client_id, {**({"actor": actor} if actor else {}), **safe})
    metrics.audit_event(str(event), event in SECURITY_EVENTS, safe)


def _log(
    event: str,
    ip: str | None,
    user_id: str | None,
    client_id: str | None,
    detail: Mapping[str, object],
) -> None:
    """Every audit event is a log line too (idp.ops.logs formats and escapes it), and tells
    the request's other lines which user and client it was about."""
    logs.note(user_id=user_id, client_id=client_id)
    fields = {"user_id": user_id, "client_id": client_id, "ip": ip, **detail}
    log.info("%s", event, extra={"fields": {k: v for k, v in fields.items() if v is not None}})


def close_minutes(db: Session, ts: int | None = None, limit: int = 1000) -> int:
    """Append one audit event per tally of every closed minute (its count, the minute, and
    the first event's detail), and remove the tallies; returns how many were appended."""
    ts = now() if ts is None else ts
    closed = store.take_closed(db, (ts - CLOSE_GRACE_SECONDS) // 60 * 60, limit)
    for tally in closed:
        detail = {**tally.detail, "count": tally.count, "minute": tally.minute}
        db.add(
            AuditRecord(
                at=tally.minute + 59,
                event=tally.event,
                user_id=tally.user_id,
                client_id=tally.client_id or None,
                ip=tally.ip or None,
                detail=detail,
            )
        )
    return len(closed)


def minutes_to_close(db: Session, ts: int | None = None) -> bool:
    """Whether a closed minute's tallies wait (a read: the worker writes only when so)."""
    ts = now() if ts is None else ts
    return store.any_closed(db, (ts - CLOSE_GRACE_SECONDS) // 60 * 60)


def record_all(db: Session, events: list[dict[str, Any]]) -> None:
    """Write events a read-only unit of work kept for later (each as `record`'s keywords)."""
    for event in events:
        record(db, **event)
