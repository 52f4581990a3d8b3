"""POST /token: RFC 6749 §3.2, §4.1.3, §4.4, §6; RFC 7636 §4.5; errors per §5.2."""

from __future__ import annotations

import logging
import sqlite3
import time

from fastapi import APIRouter, Request
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from idp import deps
from idp.db.engine import loop_reader
from idp.db.loop_reads import LoopReads, ReadFailed, loop_reads
from idp.errors import InvalidRequest, oauth_json
from idp.ops.logs import loggable
from idp.protocol.client_auth import RemoteKeys, basic_client_id, one_method
from idp.protocol.requests import IdpRequest, Params, client_ip
from idp.protocol.server import IdpServer, KnownClient, NotRead, is_client_id
from idp.runtime import Runtime
from idp.store import clients

router = APIRouter()
# RFC 8707 §2: one `resource` per audience the token is for.
REPEATABLE = frozenset({"resource"})
log = logging.getLogger("idp.token")


def is_read_only(params: Params) -> bool:
    """client_credentials with a client secret reads one row and writes nothing."""
    return (
        params.get("grant_type") == "client_credentials" and "client_assertion" not in params.data
    )


async def token_endpoint(request: Request) -> Response:
    """The hot path, called by idp.protocol.endpoints.direct ahead of FastAPI's stack and
    without its dependency solving (measured with peer-bench: 676 against 744
    client_credentials grants per CPU-second; with the bare read connection below, 826, as
    before the redesign; called directly, +12 % again). The same steps as the typed
    dependencies, in the same order: the form, then a private_key_jwt client's remote keys,
    then one unit of work that ends before the response is returned."""
    runtime = deps.runtime_of(request)
    form = await deps.oauth_form(request, runtime, repeatable=REPEATABLE)
    keys = await deps.client_keys(form, runtime)
    if not form.get("grant_type"):
        raise InvalidRequest("grant_type is required")
    one_method(request.headers, form)  # RFC 6749 §2.3
    oauth_request = IdpRequest("POST", runtime.settings.endpoint("/token"), request.headers, form)
    oauth_request.ip = client_ip(request)
    if not is_read_only(form):
        response, server = await _write_grant(runtime, oauth_request, keys)
        return mark_used_after(response, runtime, server)
    reader = loop_reader(runtime.engine)
    answered = None
    if reader is not None:
        # The hot path on the embedded database runs on the event loop: one local, lock-free
        # read (WAL) and one signature, CPU-bound work a thread hop would only slow down.
        answered = _read_on(runtime, oauth_request, reader)
    elif (reads := loop_reads(runtime.engine)) is not None:
        # On PostgreSQL the client's row is awaited on the loop (never a blocking round trip
        # there), then the grant runs on the loop as on SQLite.
        answered = await _read_awaited(runtime, oauth_request, reads)
    if answered is None:
        answered = await run_in_threadpool(_read_only_grant, runtime, oauth_request)
    response, server = answered
    if server.deferred_events or server.deferred_failure:
        # A failed authentication is recorded (and throttled) after the read, in a write
        # transaction of its own, so the common case never takes the write lock.
        throttled = await run_in_threadpool(_write_deferred, runtime, server)
        return throttled or response
    return mark_used_after(response, runtime, server)


def mark_used_after(response: Response, runtime: Runtime, server: IdpServer) -> Response:
    """The first token of the day for a client (in this process) writes its last_used_day,
    after the response has been sent: never a round trip before the token."""
    client_id = server.issued_to
    if response.status_code != 200 or client_id is None or response.background is not None:
        return response
    day = int(time.time() // 86400)
    if runtime.usage.claim(client_id, day):
        response.background = BackgroundTask(_write_last_used, runtime, client_id, day)
    return response


def _write_last_used(runtime: Runtime, client_id: str, day: int) -> None:
    try:
        with deps.transaction(runtime) as db:
            clients.mark_used(db, client_id, day)
    except SQLAlchemyError:
        # Bookkeeping for the linter, not part of the grant: a busy database loses nothing
        # that matters, and the next token of the day tries again.
        runtime.usage.release(client_id, day)
        log.warning("could not record that client %s was used", loggable(client_id), exc_info=True)


async def _write_grant(
    runtime: Runtime, oauth_request: IdpRequest, keys: RemoteKeys | None
) -> tuple[Response, IdpServer]:
    """One short write transaction, committed before the response leaves (on the event loop
    on SQLite: deps.in_transaction)."""
    return await deps.in_transaction(runtime, lambda db: _grant(db, runtime, oauth_request, keys))


def _grant(
    db: Session, runtime: Runtime, oauth_request: IdpRequest, keys: RemoteKeys | None
) -> tuple[Response, IdpServer]:
    server = IdpServer(runtime, db, keys)
    response: Response = server.create_token_response(oauth_request)
    return response, server


def _read_only_grant(runtime: Runtime, oauth_request: IdpRequest) -> tuple[Response, IdpServer]:
    """client_credentials with a secret: one read-only snapshot; the server comes back with
    what it kept for a write (a failed authentication)."""
    with deps.read_connection(runtime) as conn:
        return _read_on(runtime, oauth_request, conn)


def _read_on(
    runtime: Runtime,
    oauth_request: IdpRequest,
    reader: Connection | sqlite3.Connection | None = None,
    known_client: KnownClient | None = None,
) -> tuple[Response, IdpServer]:
    # The Session is for authlib's interfaces only: this grant reads through `reader`, or
    # nothing at all when its client's row was read before (`known_client`).
    with Session(runtime.read_engine) as db:
        server = IdpServer(runtime, db, read_only=True, reader=reader, known_client=known_client)
        response: Response = server.create_token_response(oauth_request)
    return response, server


async def _read_awaited(
    runtime: Runtime, oauth_request: IdpRequest, reads: LoopReads
) -> tuple[Response, IdpServer] | None:
    """The read-only grant with its client's row awaited first; None when it must be made in
    a thread instead: no Basic credentials to name the client, the read failed, or the grant
    asked for another client (authlib tries the methods the client may use, in turn)."""
    client_id = basic_client_id(oauth_request.headers)
    if client_id is None or not is_client_id(client_id):
        return None
    try:
        record = await clients.get_record_awaited(reads, client_id)
    except ReadFailed:
        return None
    try:
        return _read_on(runtime, oauth_request, known_client=KnownClient(client_id, record))
    except NotRead:
        return None


def _write_deferred(runtime: Runtime, server: IdpServer) -> Response | None:
    with deps.transaction(runtime) as db:
        return server.write_deferred(db)


# POST /token is answered ahead of the router (idp.app: DirectRoutes); every other method here.
NOT_POST = ["GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"]


@router.api_route("/token", methods=NOT_POST, include_in_schema=False)
async def token_not_post() -> Response:
    """RFC 6749 §3.2: the client MUST use POST; any other method is refused in §5.2's form."""
    return oauth_json(
        InvalidRequest("the token endpoint accepts only POST", status_code=405),
        headers={"Allow": "POST"},
    )
