"""GET|POST /userinfo: OIDC Core §5.3, with the Bearer token in the header only (RFC 6750 §2.1).

RFC 6750 §2.3 (token in the query string) is refused: URLs end up in logs and Referer headers.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from idp import deps
from idp.protocol.claims import user_claims
from idp.protocol.server import NO_STORE
from idp.protocol.tokens import InvalidToken
from idp.services import Services
from idp.store import revocations, users

router = APIRouter()


def bearer_error(error: str, description: str, status: int = 401) -> JSONResponse:
    challenge = f'Bearer realm="idp", error="{error}", error_description="{description}"'
    if error == "invalid_request" and status == 401:
        challenge = 'Bearer realm="idp"'  # RFC 6750 §3.1: no error code when no token was sent
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"WWW-Authenticate": challenge, **NO_STORE},
    )


@router.api_route("/userinfo", methods=["GET", "POST"], include_in_schema=False)
async def userinfo_endpoint(request: Request) -> Response:
    if "access_token" in request.query_params:
        return bearer_error(
            "invalid_request", "send the access token in the Authorization header", status=400
        )
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return bearer_error("invalid_request", "a Bearer access token is required")
    return await run_in_threadpool(_userinfo, deps.services(request), token.strip())


def _userinfo(services: Services, token: str) -> Response:
    try:
        claims = services.tokens.verify_access_token(token)
    except InvalidToken:
        return bearer_error("invalid_token", "the access token is not valid")
    scopes = str(claims.get("scope", "")).split()
    if "openid" not in scopes:
        return bearer_error("insufficient_scope", "the token lacks the openid scope", status=403)
    with services.sessions.begin() as db:
        if revocations.is_revoked(db, claims["jti"]):
            return bearer_error("invalid_token", "the access token was revoked")
        user = users.get(db, claims["sub"])
        if user is None or user.disabled:
            return bearer_error("invalid_token", "the access token is not valid")
        return JSONResponse(user_claims(user, scopes), headers=NO_STORE)
