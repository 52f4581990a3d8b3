"""POST /revoke (RFC 7009) and POST /introspect (RFC 7662): client-authenticated back channel."""

from __future__ import annotations

from collections.abc import Callable

from authlib.oauth2.rfc6749.errors import InvalidClientError
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from idp import deps
from idp.protocol import token_admin
from idp.protocol.endpoints.token import invalid_request, read_oauth_form
from idp.protocol.refresh import AUTH_METHODS
from idp.protocol.requests import IdpRequest, Params, client_ip
from idp.protocol.server import NO_STORE, IdpServer
from idp.services import Services

router = APIRouter()

Action = Callable[[IdpServer, object, str, str | None], Response]


async def _back_channel(request: Request, path: str, action: Action) -> Response:
    services = deps.services(request)
    params = await read_oauth_form(request, services)
    if isinstance(params, JSONResponse):
        return params
    if request.query_params:
        return invalid_request("parameters must be sent in the body, not the query string")
    return await run_in_threadpool(_run, services, request, params, path, action)


def _run(
    services: Services, request: Request, params: Params, path: str, action: Action
) -> Response:
    # RFC 7009 §2.1 lets a public client revoke its own tokens by client_id; introspection
    # needs a client that can really authenticate (RFC 7662 §2.1, RFC 6749 §2.1).
    methods = AUTH_METHODS if path == "/revoke" else [m for m in AUTH_METHODS if m != "none"]
    oauth_request = IdpRequest("POST", services.settings.endpoint(path), request.headers, params)
    oauth_request.ip = client_ip(request)
    with services.sessions.begin() as db:
        server = IdpServer(services, db)
        try:
            client = server.authenticate_client(oauth_request, methods, path.strip("/"))
        except InvalidClientError as error:
            return server.client_auth_failed(oauth_request, error)
        token = params.get("token")
        if not token:
            return invalid_request("token is required")
        return action(server, client, token, oauth_request.ip)


def _revoke(server: IdpServer, client: object, token: str, ip: str | None) -> Response:
    token_admin.revoke(server.db, server.services, client, token, ip)  # type: ignore[arg-type]
    # RFC 7009 §2.2: 200 whether or not there was anything to revoke.
    return Response(status_code=200, headers=NO_STORE)


def _introspect(server: IdpServer, client: object, token: str, ip: str | None) -> Response:
    answer = token_admin.introspect(server.db, server.services, client, token)  # type: ignore[arg-type]
    return JSONResponse(answer, headers=NO_STORE)


@router.post("/revoke", include_in_schema=False)
async def revocation_endpoint(request: Request) -> Response:
    """RFC 7009 §2.1."""
    return await _back_channel(request, "/revoke", _revoke)


@router.post("/introspect", include_in_schema=False)
async def introspection_endpoint(request: Request) -> Response:
    """RFC 7662 §2.1."""
    return await _back_channel(request, "/introspect", _introspect)
