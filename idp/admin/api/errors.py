"""How the admin API answers what went wrong, as JSON in the protocol's own forms:

- 401 `invalid_token` / 403 `insufficient_scope` with a Bearer challenge (RFC 6750 §3);
- 422 `invalid_request` with `fields`, each field named as the client metadata names it
  (`redirect_uris[1]`), for a body or a query that cannot be accepted; nothing was written;
- 403 `forbidden` for a caller the request is not for (an approval by the one who asked);
- 404 `not_found`, 409 `conflict`; and 500 `server_error`, with no detail, for the unexpected.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from authlib.oauth2.rfc6749.errors import OAuth2Error
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from idp.errors import NO_STORE, bearer_challenge

log = logging.getLogger("idp.admin.api")


class Invalid(Exception):
    """Input the admin services refused: 422 with the reason of each field."""

    def __init__(self, fields: dict[str, str], description: str | None = None) -> None:
        super().__init__(description or "; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields
        self.description = description


class NotFound(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(f"no such {what}")


class Conflict(Exception):
    """The request is valid, but not for the thing as it is now."""


class Forbidden(Exception):
    """The caller's token may do this kind of thing, but not this one (four eyes)."""


def problem(status: int, error: str, description: str | None, **extra: object) -> JSONResponse:
    body: dict[str, object] = {"error": error}
    if description:
        body["error_description"] = description
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, headers=NO_STORE)


def field_name(loc: Sequence[str | int]) -> str:
    """("body", "redirect_uris", 1) → "redirect_uris[1]"; ("query", "limit") → "limit"."""
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "path") else list(loc)
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def install(api: FastAPI) -> None:
    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        fields: dict[str, str] = {}
        for err in exc.errors():
            fields.setdefault(field_name(err.get("loc", ())), str(err.get("msg", "not valid")))
        return problem(422, "invalid_request", "the request has fields in error", fields=fields)

    async def on_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Invalid)
        return problem(422, "invalid_request", exc.description, fields=exc.fields)

    async def on_oauth(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OAuth2Error)
        if exc.error in ("invalid_token", "insufficient_scope"):
            return bearer_challenge(exc)
        return problem(exc.status_code or 400, exc.error, exc.description)

    async def on_not_found(request: Request, exc: Exception) -> Response:
        return problem(404, "not_found", str(exc))

    async def on_conflict(request: Request, exc: Exception) -> Response:
        return problem(409, "conflict", str(exc))

    async def on_forbidden(request: Request, exc: Exception) -> Response:
        return problem(403, "forbidden", str(exc))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        error = "not_found" if exc.status_code == 404 else "invalid_request"
        return problem(exc.status_code, error, str(exc.detail))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.error("unexpected error on %s", request.scope.get("path", ""), exc_info=exc)
        return problem(500, "server_error", "The server could not answer.")

    api.add_exception_handler(RequestValidationError, on_validation)
    api.add_exception_handler(Invalid, on_invalid)
    api.add_exception_handler(OAuth2Error, on_oauth)
    api.add_exception_handler(NotFound, on_not_found)
    api.add_exception_handler(Conflict, on_conflict)
    api.add_exception_handler(Forbidden, on_forbidden)
    api.add_exception_handler(HTTPException, on_http)
    api.add_exception_handler(Exception, on_unexpected)
