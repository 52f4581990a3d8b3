"""A protected API (a "resource server") that trusts nothing but a valid access token.

Every request, wherever it comes from, must carry a JWT access token (RFC 9068) that:
  - is signed by a key in the IdP's JWKS (PyJWT's PyJWKClient, cached, refetched for a new kid),
  - is typed `at+jwt`, so an ID token or a logout token can never pass for one (RFC 9068 §4),
  - names this IdP as `iss`, this API as (one of) its `aud`, and has not expired,
  - grants the scope the route needs, and for some routes the user holds a role.
Errors follow RFC 6750 §3: 401 with `WWW-Authenticate: Bearer error="invalid_token"` for a bad
or missing token, 403 `insufficient_scope` for a missing scope, 403 for a missing role.

Settings (environment): EXAMPLE_ISSUER (http://localhost:8000), EXAMPLE_API_URL
(http://localhost:8001; it is also the audience this API expects).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

REALM = "notes"
# Asymmetric algorithms only: never let a token choose HS256 with our public key as secret.
ALGORITHMS = ["RS256", "PS256", "ES256", "EdDSA"]
NOTES = [
    {"id": 1, "text": "Tokens are checked on every request."},
    {"id": 2, "text": "Nothing is trusted for coming from localhost."},
]


@dataclass(frozen=True)
class Config:
    issuer: str
    audience: str

    @classmethod
    def from_env(cls) -> Config:
        return cls(
            issuer=os.environ.get("EXAMPLE_ISSUER", "http://localhost:8000").rstrip("/"),
            audience=os.environ.get("EXAMPLE_API_URL", "http://localhost:8001").rstrip("/"),
        )


@dataclass(frozen=True)
class Caller:
    """Who is calling, as the token says: a user through an app, or a service on its own."""

    subject: str
    client_id: str
    scopes: frozenset[str]
    roles: frozenset[str]


class TokenVerifier:
    def __init__(self, config: Config) -> None:
        self.config = config
        # Discovery once at start: where the keys are. The keys themselves are cached by
        # PyJWKClient and refetched when a token names a kid it has not seen (key rotation).
        metadata = httpx.get(f"{config.issuer}/.well-known/openid-configuration").json()
        if metadata["issuer"] != config.issuer:
            raise RuntimeError(f"discovery names issuer {metadata['issuer']}, not {config.issuer}")
        self.jwks = jwt.PyJWKClient(metadata["jwks_uri"], cache_keys=True, lifespan=300)

    def verify(self, token: str) -> Caller:
        try:
            header = jwt.get_unverified_header(token)
            if str(header.get("typ", "")).lower() not in ("at+jwt", "application/at+jwt"):
                raise jwt.InvalidTokenError("not an access token (typ is not at+jwt)")
            key = self.jwks.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                issuer=self.config.issuer,
                audience=self.config.audience,
                leeway=5,
                options={"require": ["iss", "aud", "exp", "iat", "sub", "client_id", "jti"]},
            )
        except jwt.PyJWKClientError as exc:
            raise invalid_token(f"signing key not found: {exc}") from None
        except jwt.InvalidTokenError as exc:
            raise invalid_token(str(exc)) from None
        return Caller(
            subject=claims["sub"],
            client_id=claims["client_id"],
            scopes=frozenset(str(claims.get("scope", "")).split()),
            roles=frozenset(claims.get("roles", [])),
        )


def invalid_token(description: str) -> HTTPException:
    return HTTPException(
        status_code=401,
        detail={"error": "invalid_token", "error_description": description},
        headers={
            "WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token", '
            f'error_description="{description.replace(chr(34), chr(39))}"'
        },
    )


def require(scope: str, role: str | None = None) -> Callable[[Request], Caller]:
    """A dependency: the request's token is valid, grants `scope`, and (if given) the user holds
    `role`."""

    def check(request: Request) -> Caller:
        authorization = request.headers.get("authorization", "")
        kind, _, token = authorization.partition(" ")
        if kind.lower() != "bearer" or not token:
            # RFC 6750 §3.1: no error code when the request carried no credentials at all.
            raise HTTPException(
                status_code=401,
                detail={"error": "unauthorized", "error_description": "Bearer token required"},
                headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'},
            )
        caller: Caller = request.app.state.verifier.verify(token.strip())
        if scope not in caller.scopes:
            raise HTTPException(
                status_code=403,
                detail={"error": "insufficient_scope", "error_description": f"needs {scope}"},
                headers={
                    "WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope", '
                    f'scope="{scope}"'
                },
            )
        if role is not None and role not in caller.roles:
            raise HTTPException(
                status_code=403,
                detail={"error": "insufficient_role", "error_description": f"needs role {role}"},
            )
        return caller

    return check


def create_app(config: Config | None = None) -> FastAPI:
    config = config or Config.from_env()
    app = FastAPI(title="Example notes API", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.verifier = TokenVerifier(config)

    @app.exception_handler(StarletteHTTPException)
    async def error_body(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # The OAuth error object itself as the body, not wrapped in FastAPI's {"detail": ...}.
        body = exc.detail if isinstance(exc.detail, dict) else {"error": exc.detail}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.get("/notes")
    def list_notes(caller: Caller = Depends(require("notes.read"))) -> dict[str, Any]:  # noqa: B008
        return {"notes": NOTES, "subject": caller.subject, "client_id": caller.client_id}

    @app.get("/reports")
    def reports(
        caller: Caller = Depends(require("notes.read", role="auditor")),  # noqa: B008
    ) -> dict[str, Any]:
        return {"notes": len(NOTES), "subject": caller.subject, "roles": sorted(caller.roles)}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    config = Config.from_env()
    url = urlsplit(config.audience)
    uvicorn.run(create_app(config), host=url.hostname or "localhost", port=url.port or 8001)
