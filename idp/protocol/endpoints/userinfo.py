"""GET|POST /userinfo: OIDC Core §5.3, with the Bearer token in the header only (RFC 6750 §2.1).

RFC 6750 §2.3 (token in the query string) is refused: URLs end up in logs and Referer headers.
Errors are RFC 6750 §3 challenges (errors.bearer_challenge). One read-only transaction.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from idp import deps
from idp.audit.events import record
from idp.errors import NO_STORE, InsufficientScope, InvalidRequest, InvalidToken
from idp.protocol.claims import user_claims
from idp.protocol.epochs import (
    admin_right_lapsed,
    client_of,
    client_refuses,
    revoked_use_event,
    user_refuses,
)
from idp.protocol.requests import client_ip
from idp.protocol.tokens import BadToken, token_service
from idp.runtime import Runtime
from idp.store import revocations, users

router = APIRouter()


def bearer_token(request: Request) -> str:
    """RFC 6750 §2.1: the access token from the Authorization header, and only from there."""
    if "access_token" in request.query_params:
        raise InvalidRequest("send the access token in the Authorization header", status_code=400)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidRequest("a Bearer access token is required", status_code=401)
    return token.strip()


@router.api_route("/userinfo", methods=["GET", "POST"], include_in_schema=False)
def userinfo_endpoint(request: Request, runtime: deps.Rt, db: deps.ReadDb) -> Response:
    token = bearer_token(request)
    try:
        claims = token_service(runtime).verify_access_token(token)
    except BadToken:
        raise InvalidToken("the access token is not valid") from None
    scopes = str(claims.get("scope", "")).split()
    if "openid" not in scopes:
        raise InsufficientScope("the token lacks the openid scope")
    if revocations.is_revoked(db, claims["jti"]):
        revoked_use(runtime, request, claims, "revoked")
        raise InvalidToken("the access token was revoked")
    user = users.get(db, claims["sub"])
    # Answered as for a revoked token: the user or client was disabled, deleted, or had
    # everything revoked after this token was issued (idp.admin.revocation).
    why = "user" if user is None or user_refuses(user, claims.get("iat")) else None
    if why is None and client_refuses(client_of(db, claims), claims.get("iat")):
        why = "client"
    if why is not None:
        revoked_use(runtime, request, claims, why)
        raise InvalidToken("the access token is not valid")
    if admin_right_lapsed(db, claims) or user is None:
        raise InvalidToken("the access token is not valid")
    return JSONResponse(user_claims(user, scopes), headers=NO_STORE)


def revoked_use(runtime: Runtime, request: Request, claims: dict[str, Any], why: str) -> None:
    """A security event (tallied per minute: a replayed token cannot flood the trail), in a
    short write transaction of its own after this request's read."""
    with deps.transaction(runtime) as db:
        record(db, **revoked_use_event(claims, client_ip(request), "userinfo", why))
