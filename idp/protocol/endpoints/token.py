"""POST /token: RFC 6749 §3.2, §4.1.3, §4.4; RFC 7636 §4.5; errors per §5.2."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from idp import deps
from idp.audit import record
from idp.protocol.requests import BadParameters, IdpRequest, Params, client_ip, read_form
from idp.protocol.server import NO_STORE, IdpServer
from idp.services import Services

router = APIRouter()


def invalid_request(description: str, status: int = 400) -> JSONResponse:
    return JSONResponse(
        {"error": "invalid_request", "error_description": description},
        status_code=status,
        headers=NO_STORE,
    )


def is_read_only(params: Params) -> bool:
    """client_credentials with a client secret reads one row and writes nothing."""
    return (
        params.get("grant_type") == "client_credentials" and "client_assertion" not in params.data
    )


def auth_methods_used(request: Request, params: Params) -> list[str]:
    used = []
    if request.headers.get("authorization"):
        used.append("header")
    if "client_secret" in params.data:
        used.append("client_secret")
    if "client_assertion" in params.data:
        used.append("client_assertion")
    return used


async def read_oauth_form(request: Request, services: Services) -> Params | JSONResponse:
    """The form body of a back-channel OAuth request, or the RFC 6749 §5.2 answer refusing it
    (too large, malformed, or a parameter sent twice, §3.1)."""
    settings = services.settings
    try:
        params = await read_form(request, settings.max_body_bytes, settings.max_param_bytes)
    except BadParameters as exc:
        return invalid_request(str(exc))
    if repeated := params.repeated():
        return invalid_request(f"parameter {repeated[0]} is repeated")
    return params


async def token_endpoint(request: Request) -> Response:
    services = deps.services(request)
    params = await read_oauth_form(request, services)
    if isinstance(params, JSONResponse):
        return params
    if not params.get("grant_type"):
        return invalid_request("grant_type is required")
    if len(auth_methods_used(request, params)) > 1:
        # RFC 6749 §2.3: a client MUST NOT use more than one authentication method per request.
        return invalid_request("use exactly one client authentication method")
    if request.query_params:
        # Credentials and codes belong in the body, never in a URL that logs keep.
        return invalid_request("parameters must be sent in the body, not the query string")
    read_only = is_read_only(params)
    if read_only and services.engine.dialect.name == "sqlite":
        # The hot path on the embedded database runs on the event loop: one local, lock-free
        # read (autocommit, WAL) and one signature, CPU-bound work a thread hop would only slow
        # down. A network database is never awaited on the loop: a slow server would stall it.
        response, deferred = _token(services, request, params, read_only=True)
    else:
        response, deferred = await run_in_threadpool(_token, services, request, params, read_only)
    if deferred:
        await run_in_threadpool(_write_events, services, deferred)
    return response


# A plain Starlette route: the hot path skips FastAPI's dependency resolution, which it does
# not use (the endpoint takes only the request).
router.add_route("/token", token_endpoint, methods=["POST"], include_in_schema=False)


def _token(
    services: Services, request: Request, params: Params, read_only: bool
) -> tuple[Response, list[dict[str, Any]]]:
    oauth_request = IdpRequest(
        "POST", services.settings.endpoint("/token"), request.headers, params
    )
    oauth_request.ip = client_ip(request)
    if read_only:
        # One SELECT on a bare connection: no ORM unit of work, no transaction to commit.
        with services.read_engine.connect() as conn:
            server = IdpServer(services, Session(bind=conn), reader=conn, read_only=True)
            response: Response = server.create_token_response(oauth_request)
        return response, server.deferred_events
    with services.sessions.begin() as db:
        server = IdpServer(services, db)
        response = server.create_token_response(oauth_request)
    return response, server.deferred_events


def _write_events(services: Services, events: list[dict[str, Any]]) -> None:
    with services.sessions.begin() as db:
        for event in events:
            record(db, **event)


@router.get("/token", include_in_schema=False)
async def token_get() -> Response:
    """RFC 6749 §3.2: the client MUST use POST."""
    response = invalid_request("the token endpoint accepts only POST", status=405)
    response.headers["Allow"] = "POST"
    return response
