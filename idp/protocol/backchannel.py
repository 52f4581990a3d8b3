"""OpenID Connect Back-Channel Logout 1.0: tell relying parties that a session ended.

Ending a session only queues notifications (store.logout_deliveries); they are sent after the
response, and retried by each worker's ticker with a timeout per attempt and bounded, growing
delays. A relying party that stays down gets `logout.delivery_failed` on the audit trail.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.audit import AuditEvent, record
from idp.security.secrets import new_id
from idp.services import Services
from idp.store import logout_deliveries
from idp.store.base import now
from idp.store.clients import Client
from idp.store.codes import AuthorizationCode
from idp.store.sessions import BrowserSession

log = logging.getLogger("idp.backchannel")

EVENT = "http://schemas.openid.net/event/backchannel-logout"
TIMEOUT_SECONDS = 5.0
MAX_ATTEMPTS = 5
LOGOUT_TOKEN_TTL = 120


def queue_session_end(db: Session, session: BrowserSession) -> int:
    """Queue a logout token for every client this session signed in to that asked for them."""
    client_ids = select(AuthorizationCode.client_id).where(AuthorizationCode.sid == session.sid)
    targets = db.scalars(
        select(Client).where(
            Client.client_id.in_(client_ids), Client.backchannel_logout_uri.is_not(None)
        )
    ).all()
    for client in targets:
        assert client.backchannel_logout_uri is not None
        logout_deliveries.enqueue(
            db,
            client.client_id,
            client.backchannel_logout_uri,
            {"sub": session.user_id, "sid": session.sid},
        )
    return len(targets)


def logout_token(services: Services, client_id: str, claims: dict[str, Any]) -> str:
    """Back-Channel Logout §2.4: iss, aud, iat, exp, jti, events, sub and sid; never a nonce."""
    return services.tokens.logout_token(
        {
            "aud": client_id,
            "jti": new_id(),
            "events": {EVENT: {}},
            **claims,
        },
        LOGOUT_TOKEN_TTL,
    )


def _post(uri: str, token: str) -> str | None:
    """Send one logout token; None on success, else a short reason."""
    try:
        with httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False) as http:
            response = http.post(uri, data={"logout_token": token})
    except httpx.HTTPError as exc:
        return type(exc).__name__
    # §2.8: the RP answers 200 (204 is accepted too); anything else is a failed attempt.
    return None if response.status_code in (200, 204) else f"HTTP {response.status_code}"


def deliver_due(services: Services, limit: int = 50) -> dict[str, int]:
    """Send what is due; called after a logout response and by the ticker."""
    sent = failed = 0
    with services.sessions.begin() as db:
        ids = logout_deliveries.due(db, limit)
    for delivery_id in ids:
        with services.sessions.begin() as db:
            delivery = logout_deliveries.claim(db, delivery_id, lease=int(TIMEOUT_SECONDS) * 2)
            if delivery is None:
                continue  # another worker took it
            uri, client_id, claims = delivery.uri, delivery.client_id, dict(delivery.claims)
            attempts = delivery.attempts
        error = _post(uri, logout_token(services, client_id, claims))
        with services.sessions.begin() as db:
            row = db.get(logout_deliveries.LogoutDelivery, delivery_id)
            if row is None:
                continue
            if error is None:
                row.delivered_at = now()
                sent += 1
                continue
            row.last_error = error[:200]
            if attempts >= MAX_ATTEMPTS:
                row.failed_at = now()
                failed += 1
                record(
                    db,
                    AuditEvent.LOGOUT_DELIVERY_FAILED,
                    client_id=client_id,
                    user_id=str(claims.get("sub")),
                    reason=error[:200],
                )
            else:
                row.next_attempt_at = now() + 2**attempts  # 2, 4, 8, 16 s
            log.warning("back-channel logout to %s failed: %s", client_id, error)
    return {"sent": sent, "failed": failed}


def deliver_soon(services: Services) -> None:
    """Run after a response has been sent: the user never waits for a relying party."""
    started = time.monotonic()
    try:
        deliver_due(services)
    except Exception:  # the ticker retries
        log.exception("back-channel logout delivery failed")
    log.debug("back-channel delivery took %.3f s", time.monotonic() - started)
