"""Typed dependencies: what an endpoint or a page takes from the request, in one place.

The request owns its transaction, and this is the only module that opens one for a request:
- `Db` is one read-write transaction. It is declared with scope="function", so it commits
  before the response is sent: a commit that fails answers 500, never the 200 it would have been.
- `ReadDb` is a read-only transaction: on SQLite it never takes the write lock.
- `transaction()` and `read_transaction()` are the same units of work for the back-channel
  endpoints, which choose between them by what the request asks (a client_credentials grant
  with a secret only reads). They open in the endpoint's body, after every dependency, so a
  `private_key_jwt` client's remote keys (`ClientKeys`) are always fetched before BEGIN, never
  inside a transaction; and they close before the endpoint returns its response.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, TypeVar

from fastapi import Depends
from sqlalchemy import Connection
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from idp.db.engine import loop_connection, on_the_loop
from idp.errors import N_, InvalidRequest, PageError
from idp.protocol import authorization
from idp.protocol.client_auth import KeysLocation, RemoteKeys, fetch_client_keys, keys_location
from idp.protocol.requests import (
    BadParameters,
    Params,
    client_ip,
    query_params,
    read_form,
    shown_name,
)
from idp.runtime import Runtime
from idp.security import cookies, devices
from idp.security.secrets import new_secret
from idp.web.templating import Templates

T = TypeVar("T")


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


# The dependencies that do no I/O are `async def`: FastAPI runs a plain `def` dependency in
# the threadpool, a thread hop per dependency per request for nothing.
async def get_runtime(request: Request) -> Runtime:
    return runtime_of(request)


async def get_templates(request: Request) -> Templates:
    return request.app.state.templates  # type: ignore[no-any-return]


Rt = Annotated[Runtime, Depends(get_runtime)]
Pages = Annotated[Templates, Depends(get_templates)]


@contextmanager
def transaction(runtime: Runtime) -> Iterator[Session]:
    """One read-write unit of work: commit on success, roll back on any exception. Inside
    on_the_loop's work it runs on the loop's own connection (idp.db.engine)."""
    connection = loop_connection(runtime.engine)
    if connection is None:
        with runtime.sessions.begin() as db:
            yield db
        return
    with runtime.sessions(bind=connection) as db, db.begin():
        yield db


@contextmanager
def read_transaction(runtime: Runtime) -> Iterator[Session]:
    """One read-only unit of work: one consistent snapshot, no write lock."""
    with runtime.reads.begin() as db:
        yield db


@contextmanager
def read_connection(runtime: Runtime) -> Iterator[Connection]:
    """A read-only connection without the ORM, for the one lookup of the client_credentials hot
    path (a quarter of the cost of a Session's unit of work, measured: 35 µs against 130 µs).
    The lookup is a single statement, which needs no transaction around it: on PostgreSQL the
    connection is in autocommit mode, one round trip instead of BEGIN, SELECT and ROLLBACK."""
    with runtime.read_engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


async def in_transaction(runtime: Runtime, work: Callable[[Session], T]) -> T:
    """A page's read-write unit of work, `work(db)`, committed before it returns: on SQLite on
    the event loop (idp.db.engine.on_the_loop: `work` may run twice, and must do nothing
    before its first statement that it could not repeat), elsewhere in one thread hop. `Db`
    costs three hops (its enter, the endpoint, its exit), each a few context switches and GIL
    hand-offs: under 32 concurrent sign-ins, 24 context switches per page request."""

    def unit() -> T:
        with transaction(runtime) as db:
            return work(db)

    return await on_the_loop(runtime.engine, unit)


async def in_read_transaction(runtime: Runtime, work: Callable[[Session], T]) -> T:
    """A page's read-only unit of work, `work(db)`, in one thread hop (`ReadDb` costs three)."""

    def unit() -> T:
        with read_transaction(runtime) as db:
            return work(db)

    return await run_in_threadpool(unit)


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
        raise PageError(
            N_("Invalid request"),
            N_("This request has a parameter that is not valid."),
            detail=str(exc),
        ) from None


PageParams = Annotated[Params, Depends(page_params)]


async def oauth_form(
    request: Request,
    runtime: Rt,
    opaque: frozenset[str] = frozenset(),
    repeatable: frozenset[str] = frozenset(),
) -> Params:
    """The form body of a back-channel OAuth request: not too large, well formed, no parameter
    sent twice (RFC 6749 §3.1) unless its spec lets it repeat (`repeatable`: RFC 8707's
    `resource`), and nothing in the query string (credentials and codes belong in the body,
    never in a URL that logs keep)."""
    settings = runtime.settings
    try:
        params = await read_form(request, settings.max_body_bytes, settings.max_param_bytes, opaque)
    except BadParameters as exc:
        raise InvalidRequest(str(exc)) from None
    if repeated := params.repeated(allowed=repeatable):
        raise InvalidRequest(f"parameter {shown_name(repeated[0])} is repeated")
    if request.query_params:
        raise InvalidRequest("parameters must be sent in the body, not the query string")
    return params


OAuthForm = Annotated[Params, Depends(oauth_form)]

# RFC 7009 §2.2 and RFC 7662 §2.2: a token the server does not recognise is not an error (200,
# or {"active": false}), whatever its length; it is only hashed or signature-checked.
PRESENTED_TOKEN = frozenset({"token"})


async def token_form(request: Request, runtime: Rt) -> Params:
    """`oauth_form` for /revoke and /introspect: `token` may be any string the body can hold."""
    return await oauth_form(request, runtime, PRESENTED_TOKEN)


TokenForm = Annotated[Params, Depends(token_form)]


def _keys_location(runtime: Runtime, form: Params) -> KeysLocation | None:
    with read_transaction(runtime) as db:
        return keys_location(db, form)


async def client_keys(form: Params, runtime: Runtime) -> RemoteKeys | None:
    """A private_key_jwt client's keys from its jwks_uri: where they are is read in a read-only
    transaction, which ends before the fetch; the fetch itself runs with no transaction open."""
    if "client_assertion" not in form.data:
        return None
    where = await run_in_threadpool(_keys_location, runtime, form)
    if where is None:
        return None
    return await run_in_threadpool(fetch_client_keys, where, runtime.outbound)


async def _client_keys(form: OAuthForm, runtime: Rt) -> RemoteKeys | None:
    return await client_keys(form, runtime)


async def _token_client_keys(form: TokenForm, runtime: Rt) -> RemoteKeys | None:
    return await client_keys(form, runtime)


ClientKeys = Annotated[RemoteKeys | None, Depends(_client_keys)]
# The same, after `token_form` (FastAPI caches each dependency once per request).
TokenClientKeys = Annotated[RemoteKeys | None, Depends(_token_client_keys)]


async def get_browser(request: Request, runtime: Rt) -> authorization.Browser:
    """The browser's session cookie, its interaction binding (a new one if it has none) and
    its address."""
    settings = runtime.settings
    binding = cookies.read(request, settings, cookies.INTERACTION)
    fresh = binding is None or not 32 <= len(binding) <= 128
    device = devices.read(runtime.device_key, cookies.read(request, settings, cookies.DEVICE))
    return authorization.Browser(
        session_cookie=cookies.read(request, settings, cookies.SESSION),
        binding=new_secret() if fresh else str(binding),
        ip=client_ip(request),
        fresh_binding=fresh,
        # Only shown to the person in their list of sessions; cut to fit the column.
        user_agent=request.headers.get("user-agent", "")[:256] or None,
        device_accounts=device.accounts if device else (),
    )


Browser = Annotated[authorization.Browser, Depends(get_browser)]


def bind_browser(response: Response, runtime: Runtime, browser: authorization.Browser) -> None:
    """Set the interaction cookie a browser was just given: its interactions are bound to it."""
    if browser.fresh_binding:
        cookies.set_cookie(response, runtime.settings, cookies.INTERACTION, browser.binding)
