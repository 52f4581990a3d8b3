"""The back-channel endpoints that answer before FastAPI's own stack: POST /token.

FastAPI puts its ServerErrorMiddleware, exception telemetry and body-limit middleware, then its
ExceptionMiddleware and AsyncExitStackMiddleware, its router (which walks the included routers
twice) and Starlette's request-response wrapper between a request and its endpoint. The token
endpoint needs none of them: it takes no dependencies, reads and limits its own body, and every
error it meets is an OAuth2Error it answers in RFC 6749 §5.2 form. Here it is called directly,
inside the request id, metrics and security headers that every request gets.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from idp.errors import OAuth2Error, ServerError, oauth_json

Endpoint = Callable[[Request], Awaitable[Response]]
log = logging.getLogger("idp.errors")


class DirectRoutes:
    """Calls the endpoint of a (method, path) in `routes` itself; anything else goes on."""

    def __init__(self, app: ASGIApp, routes: Mapping[tuple[str, str], Endpoint]) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = (
            self.routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        )
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        scope["endpoint"] = endpoint  # the metrics and the access log name the route by its path
        response = await answer(endpoint, Request(scope, receive), scope["path"])
        await response(scope, receive, send)


async def answer(endpoint: Endpoint, request: Request, path: str) -> Response:
    """The endpoint's response, or its error as RFC 6749 §5.2 JSON: what the app's exception
    handlers answer on a back-channel path (idp.errors.install)."""
    try:
        return await endpoint(request)
    except OAuth2Error as exc:
        return oauth_json(exc)
    except Exception as exc:
        log.error("unexpected error on %s", path, exc_info=exc)
        return oauth_json(ServerError("The server could not answer."))
