"""The hot paths' database work, statement by statement (issue 16).

Each test warms its path up (the key ring, the day's last_used_day write), then counts what one
more request sends to the database and asserts the exact list, by kind ("SELECT refresh_tokens",
"UPDATE authorization_codes", ...), with the reason for each statement in the docstring. A new
statement on one of these paths fails here and has to say why it is needed.

Statements are read at the driver, not from SQLAlchemy's events: the token endpoint reads the
client on the driver's cursor (idp.store.clients.get_record), below those events. A pool
"checkout" listener installs a tracer on every connection a request takes, and both engines
(runtime.engine and runtime.read_engine) share that one pool, so nothing a request sends escapes
the count. Only transaction framing is left out (BEGIN, COMMIT, ROLLBACK: psycopg sends them
itself, not through a cursor); SAVEPOINT and RELEASE are work a request chose, and count.

The lists are the same on SQLite and PostgreSQL, but for one statement: PostgreSQL adds `SELECT
pg_advisory_xact_lock` (idp.store.audit_chain.lock_chain) to a transaction that writes an audit
row. No successful token-endpoint request writes one (successes are counted in metrics; the
trail records the failures and the security events, a reused refresh token, a replayed code);
the sign-in pages do (`login.succeeded`, `consent.granted`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event, text
from starlette.testclient import TestClient

from idp.db.engine import loop_connections_made
from idp.db.loop_reads import LoopReads
from idp.store import clients
from tests.conftest import ISSUER, make_settings, migrated_app
from tests.helpers import PASSWORD, RP, Harness, form_fields, query_of
from tests.refresh_helpers import (
    OFFLINE_SCOPE,
    introspect,
    offline_client,
    refresh,
    resource_server,
    userinfo,
)

# The background worker's threads (idp.worker: idp-maintenance, idp-deliveries, idp-delivery_N,
# idp-webhook) poll the database on their own schedule; they are not part of any request.
BACKGROUND_THREADS = "idp-"
FRAMING = ("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA")

CLIENT_READ = "SELECT clients"


@dataclass
class Sent:
    """What the requests' threads sent while the count ran, and how many pool checkouts."""

    statements: list[str] = field(default_factory=list)
    checkouts: int = 0
    # PostgreSQL: for each statement, whether it ran in a transaction.
    in_transaction: list[bool] = field(default_factory=list)
    # PostgreSQL: statements awaited on the event loop (idp.db.loop_reads), outside the pool.
    awaited: int = 0

    def kinds(self) -> list[str]:
        return [kind(s) for s in self.statements]


def kind(statement: str) -> str:
    """A statement by verb and table: `SELECT clients`, `UPDATE refresh_tokens`, `SAVEPOINT`."""
    words = " ".join(statement.split())
    verb = words.split(" ", 1)[0].upper()
    if verb == "SELECT" and "pg_advisory_xact_lock" in words:
        return "SELECT pg_advisory_xact_lock"
    if verb == "RELEASE":
        return "RELEASE SAVEPOINT"
    patterns = {
        "SELECT": r"\bFROM\s+\"?(\w+)",
        "INSERT": r"^INSERT\s+INTO\s+\"?(\w+)",
        "UPDATE": r"^UPDATE\s+\"?(\w+)",
        "DELETE": r"^DELETE\s+FROM\s+\"?(\w+)",
    }
    match = re.search(patterns[verb], words, re.IGNORECASE) if verb in patterns else None
    return f"{verb} {match.group(1)}" if match else verb


@contextmanager
def sent_to_database(engine: Engine) -> Iterator[Sent]:
    """Every statement sent on a connection of `engine`'s pool while the block runs, read at
    the driver (sqlite3's trace callback; a psycopg cursor class that notes each execute), from
    every thread but the background worker's."""
    sent = Sent()
    postgres = engine.dialect.name == "postgresql"
    traced: dict[Any, Any] = {}

    def note(statement: Any) -> None:
        if threading.current_thread().name.startswith(BACKGROUND_THREADS):
            return
        words = str(statement).lstrip()
        if not words.upper().startswith(FRAMING):
            sent.statements.append(words)

    def on_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        if not threading.current_thread().name.startswith(BACKGROUND_THREADS):
            sent.checkouts += 1
        if dbapi_conn in traced:
            return
        if postgres:
            traced[dbapi_conn] = dbapi_conn.cursor_factory
            dbapi_conn.cursor_factory = _noting_cursor(dbapi_conn.cursor_factory, note, sent)
        else:
            traced[dbapi_conn] = None
            dbapi_conn.set_trace_callback(note)

    fetch_one = LoopReads.fetch_one

    async def awaited_fetch_one(reads: LoopReads, sql: str, params: Any) -> Any:
        note(sql)
        sent.awaited += 1
        return await fetch_one(reads, sql, params)

    LoopReads.fetch_one = awaited_fetch_one  # type: ignore[method-assign]
    event.listen(engine, "checkout", on_checkout)
    for own in loop_connections_made(engine):  # the event loop's own on SQLite, outside the pool
        traced[own] = None
        own.set_trace_callback(note)
    try:
        yield sent
    finally:
        LoopReads.fetch_one = fetch_one  # type: ignore[method-assign]
        event.remove(engine, "checkout", on_checkout)
        for dbapi_conn, original in traced.items():
            if postgres:
                dbapi_conn.cursor_factory = original
            else:
                dbapi_conn.set_trace_callback(None)


def _noting_cursor(base: type[Any], note: Any, sent: Sent) -> type[Any]:
    class NotingCursor(base):  # type: ignore[misc, valid-type]
        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            note(query)
            result = super().execute(query, *args, **kwargs)
            # psycopg sends BEGIN itself, in execute(): a transaction is open after it unless
            # the connection is in autocommit mode.
            status = self.connection.info.transaction_status
            sent.in_transaction.append(status != psycopg.pq.TransactionStatus.IDLE)
            return result

        def executemany(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            note(query)
            return super().executemany(query, *args, **kwargs)

    return NotingCursor


# --- the counter itself ---------------------------------------------------------------------------


def test_the_count_sees_both_engines_and_the_driver_cursor(idp: Harness) -> None:
    """Nothing escapes the count: a Session on the read-write engine, a connection of the
    read-only engine, and a read on the driver's own cursor (the token endpoint's client read)
    are each seen once, and each took a connection from the one shared pool."""
    runtime = idp.runtime
    assert runtime.read_engine.pool is runtime.engine.pool
    with sent_to_database(runtime.engine) as sent:
        with runtime.sessions.begin() as db:
            db.execute(text("SELECT 1 FROM users"))
        with runtime.read_engine.connect() as conn:
            conn.execute(text("SELECT 1 FROM signing_keys"))
            clients.get_record(conn, "no-such-client")
    assert sent.kinds() == ["SELECT users", "SELECT signing_keys", CLIENT_READ]
    assert sent.checkouts == 2


# --- the token endpoint ---------------------------------------------------------------------------


@pytest.fixture
def service(idp: Harness) -> RP:
    return idp.client(grant_types=["client_credentials"], scopes=["api.read"], redirect_uris=[])


def test_client_credentials(idp: Harness, service: RP) -> None:
    """RFC 6749 §4.4: one statement, the client's row (client_secret_basic checks the secret's
    SHA-256 against it, and it carries the client's grant types, scopes and token lifetime),
    read without a transaction around it. Nothing is written: the token is a self-contained JWT.
    The pool is not touched: on SQLite the read runs on the event loop's own connection
    (idp.db.engine.loop_reader); on PostgreSQL it is awaited on the loop, on a connection in
    autocommit mode (idp.db.loop_reads: one round trip, no thread hop)."""
    assert idp.client_credentials(service).status_code == 200  # warm-up: today's last_used_day
    with sent_to_database(idp.runtime.engine) as sent:
        response = idp.client_credentials(service)
    assert response.status_code == 200, response.text
    assert sent.kinds() == [CLIENT_READ]
    assert sent.checkouts == 0
    assert sent.awaited == (0 if idp.runtime.engine.dialect.name == "sqlite" else 1)


def test_client_credentials_read_in_a_thread_without_loop_connections(
    database_url: str, tmp_path: Path
) -> None:
    """IDP_DATABASE_LOOP_READ_CONNECTIONS=0 on PostgreSQL: the same one statement, made in a
    thread on one of the pool's connections, in autocommit mode (no BEGIN and ROLLBACK)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the loop's own reads are PostgreSQL's; SQLite reads on the loop itself")
    app = migrated_app(make_settings(database_url, tmp_path, database_loop_read_connections=0))
    try:
        with TestClient(app, base_url=ISSUER, follow_redirects=False) as http:
            idp = Harness(app, http)
            service = idp.client(
                grant_types=["client_credentials"], scopes=["api.read"], redirect_uris=[]
            )
            assert idp.client_credentials(service).status_code == 200
            with sent_to_database(idp.runtime.engine) as sent:
                response = idp.client_credentials(service)
    finally:
        app.state.runtime.engine.dispose()
    assert response.status_code == 200, response.text
    assert sent.kinds() == [CLIENT_READ]
    assert (sent.checkouts, sent.awaited) == (1, 0)
    assert sent.in_transaction == [False]


def write_grant_checkouts(idp: Harness) -> int:
    """A token grant that writes: on SQLite it runs on the event loop, on the loop's own
    connection (idp.db.engine.on_the_loop), so it takes none from the pool; on PostgreSQL one."""
    return 0 if idp.runtime.engine.dialect.name == "sqlite" else 1


# Read for every grant that has a user: the user may still sign in (not disabled, not revoked
# since the grant began: idp.protocol.epochs) and the ID token's claims come from the row; the
# roles are read at every issue, so a role taken away narrows the very next token (admin scopes,
# the `roles` claim).
USER_READS = ["SELECT users", "SELECT user_roles"]
# RFC 6749 §4.1.2: the code is used once: one conditional UPDATE ... RETURNING, so two workers
# that race on one code cannot both win (idp.store.codes.consume).
CONSUME_CODE = "UPDATE authorization_codes"
# The issued access token's jti (and refresh family) written on the code, so that a replay of
# the code revokes what it issued (RFC 6749 §4.1.2: SHOULD revoke).
RECORD_ISSUED = "UPDATE authorization_codes"
# A new refresh-token family (its sign-in facts: sid, auth_time, amr, acr), its first token
# (the hash only), and the access token's link to the family, so that revoking the family
# (reuse, logout, an admin) revokes the access tokens issued from it too.
START_FAMILY = [
    "INSERT token_families",
    "INSERT refresh_tokens",
    "INSERT family_access_tokens",
]


def exchange_counted(idp: Harness, rp: RP, scope: str) -> Sent:
    """Sign in and exchange one code (the warm-up), then count the exchange of a second code,
    issued at once from the live session and the consent on file."""
    assert idp.exchange(rp, idp.code_for(rp, scope=scope)).status_code == 200
    code = idp.code_for(rp, scope=scope)
    with sent_to_database(idp.runtime.engine) as sent:
        response = idp.exchange(rp, code)
    assert response.status_code == 200, response.text
    assert "id_token" in response.json()
    return sent


def test_authorization_code_exchange(idp: Harness) -> None:
    """RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.6, checked against the code's row, no statement
    of its own) and an ID token: one write transaction of six statements.

    - SELECT clients: client authentication (client_secret_basic).
    - UPDATE authorization_codes: the code consumed, single use (one conditional UPDATE).
    - SELECT sessions: the sign-in behind the code is still live (not signed out, not idle
      past the timeout), or the code is refused.
    - SELECT users, SELECT user_roles: see USER_READS.
    - UPDATE authorization_codes: the token's jti on the code, for a replay to revoke."""
    idp.user()
    rp = idp.client()
    sent = exchange_counted(idp, rp, "openid profile email")
    assert sent.kinds() == [
        CLIENT_READ,
        CONSUME_CODE,
        "SELECT sessions",
        *USER_READS,
        RECORD_ISSUED,
    ]
    assert sent.checkouts == write_grant_checkouts(idp)


def test_authorization_code_exchange_with_offline_access(idp: Harness) -> None:
    """RFC 6749 §4.1.3 and §6, OIDC Core §11: with offline_access the exchange also starts a
    refresh-token family (START_FAMILY), three INSERTs more, in the same transaction."""
    idp.user()
    rp = offline_client(idp)
    sent = exchange_counted(idp, rp, OFFLINE_SCOPE)
    assert sent.kinds() == [
        CLIENT_READ,
        CONSUME_CODE,
        "SELECT sessions",
        *USER_READS,
        *START_FAMILY,
        RECORD_ISSUED,
    ]
    assert sent.checkouts == write_grant_checkouts(idp)


def test_refresh_token_rotation(idp: Harness) -> None:
    """RFC 6749 §6 with rotation (RFC 9700 §4.14): one write transaction.

    - SELECT clients: client authentication.
    - SELECT refresh_tokens: the presented token, read first, so that another client's token
      or a wider scope is refused before anything is written.
    - SAVEPOINT: the rotation is undone if the request then fails (the client keeps a token
      it can use), while a detected reuse, written outside it, outlives the failure.
    - UPDATE refresh_tokens: single use, one conditional UPDATE ... WHERE used_at IS NULL that
      also records the successor's hash (a retry within the grace window gets that same one).
    - SELECT token_families: the family is still live (not revoked, not past its lifetime).
    - INSERT refresh_tokens: the successor (its hash).
    - SELECT users, SELECT user_roles: see USER_READS.
    - INSERT family_access_tokens: the new access token linked to the family.
    No RELEASE SAVEPOINT: COMMIT ends every savepoint of its transaction."""
    idp.user()
    rp = offline_client(idp)
    tokens = idp.tokens(rp, scope=OFFLINE_SCOPE)
    first = refresh(idp, rp, tokens["refresh_token"])  # warm-up
    assert first.status_code == 200, first.text
    token = first.json()["refresh_token"]
    for _ in range(2):  # every link of the chain costs the same
        with sent_to_database(idp.runtime.engine) as sent:
            response = refresh(idp, rp, token)
        assert response.status_code == 200, response.text
        token = response.json()["refresh_token"]
        assert sent.kinds() == [
            CLIENT_READ,
            "SELECT refresh_tokens",
            "SAVEPOINT",
            "UPDATE refresh_tokens",
            "SELECT token_families",
            "INSERT refresh_tokens",
            *USER_READS,
            "INSERT family_access_tokens",
        ]
        assert sent.checkouts == write_grant_checkouts(idp)


# --- what resource servers and relying parties ask with an access token -------------------------

# RFC 7009 revocation by jti: a revoked access token is refused though its signature is good.
DENYLIST = "SELECT revoked_tokens"


def test_userinfo(idp: Harness) -> None:
    """OIDC Core §5.3: one read-only transaction of three statements.

    - SELECT revoked_tokens: the token's jti is not on the denylist.
    - SELECT users: the claims, and the user's state (disabled, revocation epoch).
    - SELECT clients: the token's client's state (deleted, disabled, revocation epoch), on the
      driver's cursor."""
    idp.user()
    rp = idp.client()
    access_token = idp.tokens(rp)["access_token"]
    assert userinfo(idp, access_token).status_code == 200  # warm-up
    with sent_to_database(idp.runtime.engine) as sent:
        response = userinfo(idp, access_token)
    assert response.status_code == 200, response.text
    assert sent.kinds() == [DENYLIST, "SELECT users", CLIENT_READ]
    assert sent.checkouts == 1


def test_introspection_by_a_resource_server(idp: Harness) -> None:
    """RFC 7662 §2: one read-only transaction of four statements.

    - SELECT clients: the resource server's authentication (and its permission to introspect).
    - SELECT revoked_tokens: the token's jti is not on the denylist.
    - SELECT clients: the token's own client's state; skipped when the caller is that client.
    - SELECT users: the token's user's state (disabled, revocation epoch)."""
    idp.user()
    rp, api = idp.client(), resource_server(idp)
    access_token = idp.tokens(rp)["access_token"]
    assert introspect(idp, api, access_token).json()["active"] is True  # warm-up
    with sent_to_database(idp.runtime.engine) as sent:
        response = introspect(idp, api, access_token)
    assert response.json()["active"] is True, response.text
    assert sent.kinds() == [CLIENT_READ, DENYLIST, CLIENT_READ, "SELECT users"]
    assert sent.checkouts == 1


# --- what relying parties fetch -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/jwks.json", "/.well-known/openid-configuration"])
def test_published_documents_send_nothing(idp: Harness, path: str) -> None:
    """RFC 7517 §5 and OIDC Discovery §4: the key set (kept current in memory by the worker)
    and the provider metadata (encoded once at start) are served without a statement, nor even
    a connection taken from the pool."""
    assert idp.http.get(path).status_code == 200  # warm-up
    with sent_to_database(idp.runtime.engine) as sent:
        response = idp.http.get(path)
    assert response.status_code == 200
    assert sent.statements == []
    assert sent.checkouts == 0


# --- the sign-in pages ----------------------------------------------------------------------------

# The interaction the page advances, only this browser's and only while it is live, and its
# client (a disabled client's sign-in ends here), on every page of a sign-in.
PENDING = ["SELECT interactions", CLIENT_READ]
# Who is signed in: the session (live, not idle) and its user (not disabled).
SIGNED_IN = ["SELECT sessions", "SELECT users"]
# The user's second factors and admin role in one read (idp.store.factors.summary): what the
# policy asks of this sign-in (idp.authn.mfa).
FACTORS = "SELECT totp_factors"


def chain(idp: Harness) -> list[str]:
    """An audited transaction appends to the hash chain as it commits: on PostgreSQL it waits
    for the chain's lock first; then the chain's head, and the new rows' place and MAC
    (idp.store.audit_chain)."""
    postgres = idp.runtime.engine.dialect.name == "postgresql"
    lock = ["SELECT pg_advisory_xact_lock"] if postgres else []
    return [*lock, "SELECT audit_events", "UPDATE audit_events"]


def page_by_page(
    idp: Harness, rp: RP, checkouts: dict[str, int] | None = None
) -> list[tuple[str, list[str]]]:
    """One authorization code flow by a new browser, with what each request sent (and, into
    `checkouts`, how many connections each took from the pool)."""
    idp.http.cookies.clear()
    counted: list[tuple[str, list[str]]] = []

    def step(label: str, send: Any) -> Any:
        with sent_to_database(idp.runtime.engine) as sent:
            response = send()
        counted.append((label, sent.kinds()))
        if checkouts is not None:
            checkouts[label] = sent.checkouts
        return response

    location = step("GET /authorize", lambda: idp.authorize(rp)).headers["location"]
    fields = form_fields(step("GET /login", lambda: idp.http.get(location)).text)
    fields.update(email="alice@example.com", password=PASSWORD)
    response = step("POST /login", lambda: idp.http.post("/login", data=fields))
    location = response.headers["location"]
    response = step("GET /authorize/resume", lambda: idp.http.get(location))
    location = response.headers["location"]
    if location.startswith("/consent"):
        fields = form_fields(step("GET /consent", lambda: idp.http.get(location)).text)
        fields["decision"] = "allow"
        response = step("POST /consent", lambda: idp.http.post("/consent", data=fields))
    assert "code" in query_of(response.headers["location"]), response.headers
    return counted


def test_a_sign_in_page_by_page(idp: Harness) -> None:
    """OIDC Core §3.1.2 through the pages, the first time (consent asked) and the second (the
    consent remembered, the code issued at resume). Each page runs one transaction; the login
    runs two, so that the password hash runs outside any (its first reserves the throttle's
    slots). Its lists, beyond the shared parts above:

    - /authorize: the client (the page's check of client_id and redirect_uri, then authlib's
      own), the address's interactions of the last minute (IDP_INTERACTIONS_PER_IP_PER_MINUTE),
      and the new interaction.
    - POST /login, first transaction: the account by email, a slot in each of the three
      throttle buckets (account, address, account from address; idp.authn.throttle).
    - POST /login, second: the personal bucket forgotten, the others' slots given back; the
      user again (this transaction's row), the factors twice (the password's length rule, then
      what the client asks), the interaction again (the factor owed), the new session, whether
      this address signed in lately (idp.authn.new_device), `login.succeeded`, the step noted.
      The second time, the new device is audited too (the trail knows an earlier sign-in).
    - /authorize/resume: whether a consent covers the scopes; the second time the
      interaction's outcome taken once (one conditional UPDATE) and the code stored.
    - POST /consent: the consent remembered and audited, the step noted, then resume's work.

    A statement more on any page fails here and has to say why it is needed."""
    idp.user()
    rp = idp.client()
    first = [
        (
            "GET /authorize",
            [CLIENT_READ, CLIENT_READ, "SELECT interactions", "INSERT interactions"],
        ),
        ("GET /login", PENDING),
        (
            "POST /login",
            [
                *PENDING,
                "SELECT users",
                *["INSERT throttle_counters"] * 3,
                *["UPDATE throttle_counters"] * 2,
                "DELETE throttle_counters",
                "SELECT users",
                FACTORS,
                *PENDING,
                FACTORS,
                "INSERT sessions",
                "SELECT audit_events",
                "SELECT audit_events",
                "INSERT audit_events",
                "SELECT interactions",
                "UPDATE interactions",
                *chain(idp),
            ],
        ),
        ("GET /authorize/resume", [*PENDING, *SIGNED_IN, FACTORS, "SELECT consents"]),
        ("GET /consent", [*PENDING, *SIGNED_IN]),
        (
            "POST /consent",
            [
                *PENDING,
                *SIGNED_IN,
                # The decision remembered in one statement, INSERT ... ON CONFLICT DO NOTHING
                # (idp.store.consents.grant: a first consent; a decision at once in another
                # sign-in waits for it instead of failing on the key).
                "INSERT consents",
                "INSERT audit_events",
                "UPDATE interactions",
                *PENDING,
                *SIGNED_IN,
                FACTORS,
                "UPDATE interactions",
                CLIENT_READ,
                "INSERT authorization_codes",
                *chain(idp),
            ],
        ),
    ]
    assert page_by_page(idp, rp) == first
    again = page_by_page(idp, rp)
    login = dict(first)["POST /login"]
    # The same address, a new browser: the address is known at the first read, so no look for
    # an earlier sign-in; `login.new_device` is one more audit row, inserted and sealed with
    # the other (one batch each; SQLite's trace sees each row of a batch).
    seen = login.index("SELECT audit_events")
    per_row = 1 if idp.runtime.engine.dialect.name == "postgresql" else 2
    assert dict(again)["POST /login"] == [
        *login[:seen],
        "SELECT audit_events",
        *["INSERT audit_events"] * per_row,
        "SELECT interactions",
        "UPDATE interactions",
        *chain(idp),
        *["UPDATE audit_events"] * (per_row - 1),
    ]
    assert dict(again)["GET /authorize/resume"] == [
        *PENDING,
        *SIGNED_IN,
        FACTORS,
        "SELECT consents",
        "UPDATE interactions",
        CLIENT_READ,
        "INSERT authorization_codes",
    ]
    assert [label for label, _ in again] == [
        "GET /authorize",
        "GET /login",
        "POST /login",
        "GET /authorize/resume",
    ]


def test_the_pages_write_on_the_loop(idp: Harness) -> None:
    """The pages' write transactions (idp.deps.in_transaction) run, on SQLite, on the event
    loop's own connection, as the token grants do: none takes a connection from the pool, nor
    a thread (on PostgreSQL each takes one, in one thread hop). The pages that only read take
    one, in one thread hop: a read transaction never waits for the write lock."""
    idp.user()
    rp = idp.client()
    checkouts: dict[str, int] = {}
    page_by_page(idp, rp, checkouts)
    write = write_grant_checkouts(idp)
    assert checkouts == {
        "GET /authorize": write,
        "GET /login": 1,
        "POST /login": 2 * write,  # the throttle's slots before the hash, the verdict after
        "GET /authorize/resume": write,
        "GET /consent": 1,
        "POST /consent": write,
    }
