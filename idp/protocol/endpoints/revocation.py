"""POST /revoke (RFC 7009) and POST /introspect (RFC 7662): client-authenticated back channel.

Both read in a read-only transaction: an unknown token, or any introspection, never takes the
write lock. What must be written (a revocation, a failed authentication's audit event) is
written afterwards in a short transaction of its own. A private_key_jwt client's first unit of
work writes too (its assertion's jti).
"""

from __future__ import annotations

from authlib.oauth2.rfc6749.errors import InvalidClientError
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from idp import deps
from idp.errors import NO_STORE, InvalidRequest
from idp.protocol import token_admin
from idp.protocol.client_auth import RemoteKeys, one_method
from idp.protocol.refresh import AUTH_METHODS
from idp.protocol.requests import IdpRequest, Params, client_ip
from idp.protocol.server import IdpServer
from idp.runtime import Runtime
from idp.store.clients import ClientProtocol

router = APIRouter()

# RFC 7009 §2.1 lets a public client revoke its own tokens by client_id; introspection needs a
# client that can really authenticate (RFC 7662 §2.1, RFC 6749 §2.1).
REVOKE_METHODS = AUTH_METHODS
INTROSPECT_METHODS = [m for m in AUTH_METHODS if m != "none"]


def _oauth_request(runtime: Runtime, request: Request, params: Params, path: str) -> IdpRequest:
    oauth_request = IdpRequest("POST", runtime.settings.endpoint(path), request.headers, params)
    oauth_request.ip = client_ip(request)
    return oauth_request


def _authenticate(
    server: IdpServer, oauth_request: IdpRequest, methods: list[str], endpoint: str
) -> tuple[ClientProtocol | None, Response | None]:
    """The authenticated client, or the invalid_client answer (its audit event is kept)."""
    try:
        return server.authenticate_client(oauth_request, methods, endpoint), None
    except InvalidClientError as error:
        return None, server.client_auth_failed(oauth_request, error)


def _token_of(oauth_request: IdpRequest) -> str:
    token = oauth_request.params.get("token")
    if not token:
        raise InvalidRequest("token is required")
    return token


def _writes(oauth_request: IdpRequest) -> bool:
    """An assertion's jti is written at authentication; every other method only reads."""
    return "client_assertion" in oauth_request.params.data


def _revoke(runtime: Runtime, oauth_request: IdpRequest, keys: RemoteKeys | None) -> Response:
    writes = _writes(oauth_request)
    with (deps.transaction if writes else deps.read_transaction)(runtime) as db:
        server = IdpServer(runtime, db, keys, read_only=not writes)
        client, refused = _authenticate(server, oauth_request, REVOKE_METHODS, "revoke")
        found = None
        if client is not None:
            found = token_admin.find_revocable(db, runtime, client, _token_of(oauth_request))
    throttled = None
    if server.deferred_events or server.deferred_failure or found is not None:
        with deps.transaction(runtime) as db:
            throttled = server.write_deferred(db)
            if found is not None:
                token_admin.revoke(db, found, oauth_request.ip)
    # RFC 7009 §2.2: 200 whether or not there was anything to revoke.
    return throttled or refused or Response(status_code=200, headers=NO_STORE)


def _introspect(runtime: Runtime, oauth_request: IdpRequest, keys: RemoteKeys | None) -> Response:
    writes = _writes(oauth_request)
    with (deps.transaction if writes else deps.read_transaction)(runtime) as db:
        server = IdpServer(runtime, db, keys, read_only=not writes)
        client, refused = _authenticate(server, oauth_request, INTROSPECT_METHODS, "introspect")
        if client is not None:
            answer = token_admin.introspect(
                db,
                runtime,
                client,
                _token_of(oauth_request),
                noticed=server.deferred_events,
                ip=oauth_request.ip,
            )
    throttled = None
    if server.deferred_events or server.deferred_failure:
        with deps.transaction(runtime) as db:
            throttled = server.write_deferred(db)
    return throttled or refused or JSONResponse(answer, headers=NO_STORE)


@router.post("/revoke", include_in_schema=False)
async def revocation_endpoint(
    request: Request, form: deps.TokenForm, keys: deps.TokenClientKeys, runtime: deps.Rt
) -> Response:
    """RFC 7009 §2.1."""
    one_method(request.headers, form)  # RFC 6749 §2.3, RFC 7009 §2.1
    oauth_request = _oauth_request(runtime, request, form, "/revoke")
    return await run_in_threadpool(_revoke, runtime, oauth_request, keys)


@router.post("/introspect", include_in_schema=False)
async def introspection_endpoint(
    request: Request, form: deps.TokenForm, keys: deps.TokenClientKeys, runtime: deps.Rt
) -> Response:
    """RFC 7662 §2.1."""
    one_method(request.headers, form)  # RFC 6749 §2.3, RFC 7662 §2.1
    oauth_request = _oauth_request(runtime, request, form, "/introspect")
    return await run_in_threadpool(_introspect, runtime, oauth_request, keys)
