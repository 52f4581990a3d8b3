"""What a client may learn about and do to tokens after issuance: revoke (RFC 7009) and
introspect (RFC 7662). Both answer from the token itself plus the revocation records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from idp.audit.events import AuditEvent, record
from idp.protocol.epochs import (
    admin_right_lapsed,
    client_of,
    client_refuses,
    revoked_use_event,
    user_refuses,
)
from idp.protocol.tokens import BadToken, token_service
from idp.runtime import Runtime
from idp.security.secrets import sha256_hex
from idp.store import refresh_tokens, revocations, users
from idp.store.base import now
from idp.store.clients import ClientProtocol
from idp.store.refresh_tokens import TokenFamily

INACTIVE: dict[str, Any] = {"active": False}


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


@dataclass(frozen=True)
class Revocation:
    """What revoking a presented token will do: revoke one access token, or a refresh family."""

    client_id: str
    jti: str | None = None
    expires_at: int = 0
    family_id: str | None = None


def find_revocable(
    db: Session, runtime: Runtime, client: ClientProtocol, token: str
) -> Revocation | None:
    """RFC 7009 §2.1: the token to revoke, if it is this client's; anything else is silently
    ignored (§2.2). Only reads, so an unknown token never takes the write lock."""
    if _looks_like_jwt(token):
        try:
            claims = token_service(runtime).verify_access_token(token, any_audience=True)
        except BadToken:
            return None  # unknown, foreign or already expired: nothing left to revoke
        if claims.get("client_id") != client.client_id:
            return None
        return Revocation(client.client_id, jti=claims["jti"], expires_at=int(claims["exp"]))
    row = refresh_tokens.get(db, sha256_hex(token))
    if row is None or row.client_id != client.client_id:
        return None
    # Revoking a refresh token revokes its family: the grant ends, with its access tokens.
    return Revocation(client.client_id, family_id=row.family_id)


def revoke(db: Session, revocation: Revocation, ip: str | None) -> None:
    if revocation.jti is not None:
        revocations.revoke(db, revocation.jti, revocation.expires_at, "revoked_by_client")
        record(db, AuditEvent.TOKEN_REVOKED, ip=ip, client_id=revocation.client_id, kind="access")
    elif revocation.family_id is not None and refresh_tokens.revoke_family(
        db, revocation.family_id, "revoked_by_client"
    ):
        record(db, AuditEvent.TOKEN_REVOKED, ip=ip, client_id=revocation.client_id, kind="refresh")


def introspect(
    db: Session,
    runtime: Runtime,
    caller: ClientProtocol,
    token: str,
    noticed: list[dict[str, Any]] | None = None,
    ip: str | None = None,
) -> dict[str, Any]:
    """RFC 7662 §2.2: the token's state, for the client it was issued to, or (an access token)
    a resource server registered to introspect tokens for its resources; `{"active": false}`
    for anything else (§2.2: no reason given)."""
    if _looks_like_jwt(token):
        answer, why, claims = _introspect_access_token(db, runtime, caller, token)
        if why is not None and noticed is not None:
            # A security event the caller writes after its read (a revoked token in use).
            noticed.append(revoked_use_event(claims, ip, "introspection", why))
        return answer
    row = refresh_tokens.get(db, sha256_hex(token))
    if row is None or row.used_at is not None or row.expires_at <= now():
        return INACTIVE
    if caller.client_id != row.client_id:
        return INACTIVE  # a refresh token is its client's business alone
    family = refresh_tokens.live_family(db, row.family_id)
    if family is None or _family_refused(db, caller, family):
        return INACTIVE
    return {
        "active": True,
        "scope": row.scope,
        "client_id": row.client_id,
        "sub": family.user_id,
        "iss": runtime.settings.issuer,
        "iat": row.created_at,
        "exp": row.expires_at,
    }


def _introspect_access_token(
    db: Session, runtime: Runtime, caller: ClientProtocol, token: str
) -> tuple[dict[str, Any], str | None, dict[str, Any]]:
    """The answer, why a valid token of this caller's was refused as revoked (None when it
    was not), and its claims."""
    try:
        claims = token_service(runtime).verify_access_token(token, any_audience=True)
    except BadToken:
        return INACTIVE, None, {}
    if not _may_see(caller, claims, runtime.settings.audience):
        return INACTIVE, None, claims
    if revocations.is_revoked(db, claims["jti"]):
        return INACTIVE, "revoked", claims
    iat = claims.get("iat")
    # The token's client: the caller's record when it is the caller's own token (read already
    # at authentication), else one read. A deleted client's tokens die with its row.
    if client_refuses(client_of(db, claims, known=caller.row), iat):
        return INACTIVE, "client", claims
    if claims["sub"] != claims.get("client_id") and user_refuses(users.get(db, claims["sub"]), iat):
        return INACTIVE, "user", claims  # the token outlived its user's access
    if admin_right_lapsed(db, claims):
        return INACTIVE, None, claims
    fields = ("scope", "client_id", "sub", "iss", "aud", "exp", "iat", "jti", "auth_time", "roles")
    answer = {k: claims[k] for k in fields if k in claims}
    return {"active": True, "token_type": "Bearer", **answer}, None, claims


def _family_refused(db: Session, caller: ClientProtocol, family: TokenFamily) -> bool:
    """The family's user is gone or disabled, or it began before its user's or its client's
    (the caller's) revocation epoch: the refresh grant refuses it too."""
    created = family.created_at
    return user_refuses(users.get(db, family.user_id), created) or client_refuses(
        caller.row, created
    )


def _may_see(caller: ClientProtocol, claims: dict[str, Any], default_audience: str) -> bool:
    """The token's own client, or a resource server introspecting a token meant for one of
    the resources it serves (RFC 7662 §4: a resource server learns nothing of other APIs')."""
    if caller.client_id == claims.get("client_id"):
        return True
    if not caller.row.can_introspect:
        return False
    aud = claims.get("aud")
    audiences = {aud} if isinstance(aud, str) else set(aud) if isinstance(aud, list) else set()
    return bool(audiences.intersection(caller.row.resources or [default_audience]))
