"""Revocation epochs: an access token is refused once its user or its client says "everything
issued before this time is void" (`tokens_revoked_before`).

A JWT cannot be recalled, and a denylist holds only the jtis the server knew of; an epoch on the
row that the validating request reads anyway revokes every token of a user or a client, on every
worker at once, with one comparison. An epoch is set one second past the revocation (see
idp.admin.revocation.epoch), so `iat < epoch` also covers a token issued in that same second.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from idp.audit.events import AuditEvent
from idp.protocol.tokens import ADMIN_SCOPES
from idp.store import clients, roles


def issued_before(iat: object, epoch: int | None) -> bool:
    """The token was issued before the epoch (a token without a usable iat counts as before)."""
    if epoch is None:
        return False
    return not isinstance(iat, int) or iat < epoch


def user_refuses(user: Any, iat: object) -> bool:
    """The user is gone, disabled, or revoked everything issued at iat."""
    return user is None or bool(user.disabled) or issued_before(iat, user.tokens_revoked_before)


def client_refuses(client: Any, iat: object) -> bool:
    """The client is gone (deleted: its epoch went with its row), disabled, or revoked
    everything issued at iat."""
    return (
        client is None or bool(client.disabled) or issued_before(iat, client.tokens_revoked_before)
    )


def client_of(db: Session | Connection, claims: dict[str, Any], known: Any = None) -> Any:
    """The record of the token's client: `known` when it is that client (already read, so no
    second read), else one read; None when the claim is missing or the client was deleted."""
    client_id = claims.get("client_id")
    if not isinstance(client_id, str) or not 0 < len(client_id) <= 64:
        return None
    if known is not None and known.client_id == client_id:
        return known
    return clients.get_record(db, client_id)


def revoked_use_event(
    claims: dict[str, Any], ip: str | None, endpoint: str, why: str
) -> dict[str, Any]:
    """The audit event (record()'s keywords) of a revoked access token presented at
    `endpoint`: `why` says what revoked it (its jti, its user, its client)."""
    client_id = claims.get("client_id")
    sub = claims.get("sub")
    user_id = sub if isinstance(sub, str) and sub != client_id and len(sub) <= 36 else None
    return {
        "event": AuditEvent.REVOKED_TOKEN_USED,
        "ip": ip,
        "user_id": user_id,
        "client_id": client_id[:64] if isinstance(client_id, str) else None,
        "at_endpoint": endpoint,
        "why": why,
    }


def admin_right_lapsed(db: Session, claims: dict[str, Any]) -> bool:
    """A person's token with an admin scope whose admin role has since been revoked or has
    run out (a time-boxed grant): it stops working at once, not when it expires. One read,
    for admin tokens only."""
    if claims.get("sub") == claims.get("client_id"):
        return False  # a service's own token: its client's registration decides
    if not ADMIN_SCOPES.intersection(str(claims.get("scope", "")).split()):
        return False
    return not roles.holds(db, str(claims["sub"]), roles.ADMIN)
