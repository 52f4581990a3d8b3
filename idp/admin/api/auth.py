"""Who may call the admin API: a bearer access token of this IdP, checked on every request as
any resource server checks one (RFC 9068 §4, RFC 6750 §3), then against the database.

- The JWT: signature by a current key, `typ` at+jwt, `iss`, `aud` the admin API's own resource
  URI (an ID token, a logout token, or a token for userinfo or another API never passes), `exp`.
- In the request's own transaction: the token is not revoked (its jti, its user's and its
  client's epochs), its client is not disabled and still registered with the scope, and a
  person's token belongs to an admin (the role, checked now) whose sign-in used two factors.
- `idp:admin` may do everything, `idp:admin.read` only read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends
from sqlalchemy.orm import Session
from starlette.requests import Request

from idp import deps
from idp.authn import mfa
from idp.errors import InsufficientScope, InvalidToken
from idp.protocol.epochs import client_of, client_refuses, user_refuses
from idp.protocol.tokens import ADMIN_READ_SCOPE, ADMIN_SCOPE, ADMIN_SCOPES, BadToken, token_service
from idp.store import revocations, roles, users
from idp.store.roles import ADMIN


@dataclass(frozen=True)
class AdminToken:
    """A token whose JWT checks passed; authorize() still has to check it in the database."""

    claims: dict[str, Any]
    scopes: frozenset[str]


@dataclass(frozen=True)
class Caller:
    """Who is calling, for the audit trail's actor: "user:<id>" or "client:<id>"."""

    actor: str
    scopes: frozenset[str]


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("a Bearer access token of this server is required")
    return token.strip()


async def admin_token(request: Request, runtime: deps.Rt) -> AdminToken:
    """The JWT checks, without the database (no transaction is open yet)."""
    try:
        claims = token_service(runtime).verify_access_token(
            _bearer(request), audience=runtime.settings.admin_api_audience
        )
    except BadToken:
        raise InvalidToken("the access token is not valid for the admin API") from None
    scopes = ADMIN_SCOPES.intersection(str(claims.get("scope", "")).split())
    if not scopes:
        raise InsufficientScope(
            f"the admin API needs the {ADMIN_READ_SCOPE} or {ADMIN_SCOPE} scope"
        )
    return AdminToken(claims, frozenset(scopes))


Token = Annotated[AdminToken, Depends(admin_token)]


def authorize(db: Session, token: AdminToken, *, write: bool) -> Caller:
    """The database's part of the checks, in the caller's transaction: InvalidToken for a
    token no longer valid, InsufficientScope for one that may not do this."""
    claims = token.claims
    iat = claims.get("iat")
    if revocations.is_revoked(db, claims["jti"]):
        raise InvalidToken("the access token was revoked")
    client = client_of(db, claims)
    if client_refuses(client, iat):
        raise InvalidToken("the access token is not valid")
    # The client's registration now, not when the token was issued: an admin scope taken off
    # a client ends its access at once.
    scopes = token.scopes.intersection(client.scopes)
    subject = claims["sub"]
    if subject == client.client_id:  # RFC 9068 §2.2: a client_credentials token
        actor = f"client:{client.client_id}"
    else:
        user = users.get(db, subject)
        if user is None or user_refuses(user, iat):
            raise InvalidToken("the access token is not valid")
        if not roles.holds(db, user.id, ADMIN):
            raise InsufficientScope("the token's user is not an administrator")
        if mfa.rank(claims.get("acr")) < mfa.rank(mfa.AAL2):
            raise InsufficientScope("the admin API needs a sign-in with two factors")
        actor = f"user:{user.id}"
    needed = {ADMIN_SCOPE} if write else ADMIN_SCOPES
    if not needed.intersection(scopes):
        raise InsufficientScope(
            f"this needs the {ADMIN_SCOPE} scope"
            if write
            else f"this needs the {ADMIN_READ_SCOPE} or {ADMIN_SCOPE} scope"
        )
    return Caller(actor, frozenset(scopes))
