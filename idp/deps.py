"""Typed dependencies: what an endpoint or a page takes from the request, in one place.

The request owns its transaction, and this is the only module that opens one for a request:
- `Db` is one read-write transaction. It is declared with scope="function", so it commits
  before the response is sent: a commit that fails answers 500, never the 200 it would have been.
- `ReadDb` is a read-only transaction: on SQLite it never takes the write lock.
- `BackChannelDb` is `Db` for client-authenticated endpoints: it depends on `ClientKeys`, so a
  `private_key_jwt` client's remote keys are fetched before BEGIN, never inside the transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from idp.errors import InvalidRequest, PageError
from idp.protocol.client_auth import RemoteKeys, prefetch_client_keys
from idp.protocol.requests import BadParameters, Params, query_params, read_form
from idp.runtime import Runtime
from idp.web.templating import Templates


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def get_templates(request: Request) -> Templates:
    return request.app.state.templates  # type: ignore[no-any-return]


Rt = Annotated[Runtime, Depends(get_runtime)]
Pages = Annotated[Templates, Depends(get_templates)]


@contextmanager
def transaction(runtime: Runtime) -> Iterator[Session]:
    """One read-write unit of work: commit on success, roll back on any exception."""
    with runtime.sessions.begin() as db:
        yield db


@contextmanager
def read_transaction(runtime: Runtime) -> Iterator[Session]:
    """One read-only unit of work: one consistent snapshot, no write lock."""
    with runtime.reads.begin() as db:
        yield db


def get_db(runtime: Rt) -> Iterator[Session]:
    with transaction(runtime) as db:
        yield db


def get_read_db(runtime: Rt) -> Iterator[Session]:
    with read_transaction(runtime) as db:
        yield db


Db = Annotated[Session, Depends(get_db, scope="function")]
ReadDb = Annotated[Session, Depends(get_read_db, scope="function")]


async def page_params(request: Request, runtime: Rt) -> Params:
    """A browser request's parameters: the query of a GET, the form of a POST."""
    settings = runtime.settings
    try:
        if request.method == "POST":
            return await read_form(request, settings.max_body_bytes, settings.max_param_bytes)
        return query_params(request, settings.max_param_bytes)
    except BadParameters as exc:
        raise PageError("Invalid request", str(exc)) from None


PageParams = Annotated[Params, Depends(page_params)]


async def oauth_form(request: Request, runtime: Rt) -> Params:
    """The form body of a back-channel OAuth request: not too large, well formed, no parameter
    sent twice (RFC 6749 §3.1), and nothing in the query string (credentials and codes belong in
    the body, never in a URL that logs keep)."""
    settings = runtime.settings
    try:
        params = await read_form(request, settings.max_body_bytes, settings.max_param_bytes)
    except BadParameters as exc:
        raise InvalidRequest(str(exc)) from None
    if repeated := params.repeated():
        raise InvalidRequest(f"parameter {repeated[0]} is repeated")
    if request.query_params:
        raise InvalidRequest("parameters must be sent in the body, not the query string")
    return params


OAuthForm = Annotated[Params, Depends(oauth_form)]


async def client_keys(form: OAuthForm, runtime: Rt) -> RemoteKeys | None:
    """A private_key_jwt client's keys from its jwks_uri, fetched with no transaction open."""
    if "client_assertion" not in form.data:
        return None
    return await run_in_threadpool(prefetch_client_keys, runtime, form)


ClientKeys = Annotated[RemoteKeys | None, Depends(client_keys)]


def get_db_after_client_keys(runtime: Rt, keys: ClientKeys) -> Iterator[Session]:
    with transaction(runtime) as db:
        yield db


BackChannelDb = Annotated[Session, Depends(get_db_after_client_keys, scope="function")]
