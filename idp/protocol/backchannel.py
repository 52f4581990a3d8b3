"""OpenID Connect Back-Channel Logout 1.0: tell relying parties that a session ended.

Ending a session only queues notifications (store.logout_deliveries); each server's worker
sends them from a bounded pool of its own, with an overall deadline per attempt and bounded,
growing delays between attempts. A relying party that stays down gets `logout.delivery_failed`
on the audit trail; one that never answers holds one pool thread for one deadline, never the
worker's maintenance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from idp import outbound
from idp.audit.events import AuditEvent, record
from idp.protocol.tokens import token_service
from idp.runtime import Runtime
from idp.security.secrets import new_id
from idp.store import logout_deliveries

log = logging.getLogger("idp.backchannel")

EVENT = "http://schemas.openid.net/event/backchannel-logout"
DEADLINE_SECONDS = outbound.LOGOUT_DEADLINE  # the whole attempt, not each read
MAX_ATTEMPTS = 5
LOGOUT_TOKEN_TTL = 120


def logout_token(runtime: Runtime, client_id: str, claims: dict[str, Any]) -> str:
    """Back-Channel Logout §2.4: iss, aud, iat, exp, jti, events, sub and sid; never a nonce."""
    return token_service(runtime).logout_token(
        {
            "aud": client_id,
            "jti": new_id(),
            "events": {EVENT: {}},
            **claims,
        },
        LOGOUT_TOKEN_TTL,
    )


@dataclass(frozen=True)
class Claimed:
    """One attempt of one delivery, taken by this worker until its lease ends."""

    id: int
    uri: str
    client_id: str
    claims: dict[str, Any]
    attempts: int


def claim_due(runtime: Runtime, limit: int) -> list[Claimed]:
    """Take up to `limit` due deliveries; each is one conditional UPDATE, so two workers never
    send the same attempt, and it counts the attempt as it takes it: however long a POST
    hangs, a delivery is sent at most MAX_ATTEMPTS times. The lease outlives one attempt's
    whole deadline."""
    with runtime.sessions.begin() as db:
        for ended in logout_deliveries.exhausted(db, MAX_ATTEMPTS):
            _gave_up(db, ended.client_id, ended.claims, ended.last_error or "")
    claimed: list[Claimed] = []
    with runtime.reads.begin() as db:
        ids = logout_deliveries.due(db, limit, MAX_ATTEMPTS)
    for delivery_id in ids:
        with runtime.sessions.begin() as db:
            # The lease outlives one attempt's whole deadline: nobody else sends it meanwhile.
            lease = int(DEADLINE_SECONDS * 2) + 1
            row = logout_deliveries.claim(db, delivery_id, lease, MAX_ATTEMPTS)
            if row is not None:  # else another worker took it
                claimed.append(
                    Claimed(row.id, row.uri, row.client_id, dict(row.claims), row.attempts)
                )
    return claimed


def _post(uri: str, token: str, policy: outbound.OutboundPolicy) -> str | None:
    """Send one logout token; None on success, else a short reason."""
    try:
        form = {"logout_token": token}
        response = outbound.post_form(uri, form, policy, deadline=DEADLINE_SECONDS)
    except outbound.OutboundError as exc:
        return str(exc)
    # §2.8: the RP answers 200 (204 is accepted too); anything else is a failed attempt.
    return None if response.status in (200, 204) else f"HTTP {response.status}"


def send(runtime: Runtime, delivery: Claimed) -> bool:
    """One attempt, with no transaction open while the relying party answers; then its
    outcome: delivered, retried later (2, 4, 8, 16 s) or given up and recorded."""
    token = logout_token(runtime, delivery.client_id, delivery.claims)
    error = _post(delivery.uri, token, runtime.outbound)
    with runtime.sessions.begin() as db:
        if error is None:
            logout_deliveries.delivered(db, delivery.id)
            return True
        gave_up = delivery.attempts >= MAX_ATTEMPTS
        # A late outcome (the lease lapsed and a later attempt was claimed) changes nothing.
        latest = logout_deliveries.failed_attempt(
            db, delivery.id, delivery.attempts, error[:200], gave_up, 2**delivery.attempts
        )
        if gave_up and latest:
            _gave_up(db, delivery.client_id, delivery.claims, error)
    log.warning("back-channel logout to %s failed: %s", delivery.client_id, error)
    return False


def _gave_up(db: Session, client_id: str, claims: dict[str, Any], error: str) -> None:
    record(
        db,
        AuditEvent.LOGOUT_DELIVERY_FAILED,
        client_id=client_id,
        user_id=str(claims.get("sub")),
        reason=error[:200],
    )


def deliver_due(runtime: Runtime, limit: int = 50) -> dict[str, int]:
    """Claim and send what is due, one after the other (for tests and `idp` commands; servers
    send through the worker's delivery pool)."""
    sent = failed = 0
    for delivery in claim_due(runtime, limit):
        if send(runtime, delivery):
            sent += 1
        elif delivery.attempts >= MAX_ATTEMPTS:
            failed += 1
    return {"sent": sent, "failed": failed}
