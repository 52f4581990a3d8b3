"""Small tools for the token endpoint tests: raw SQL, statement counting, client assertions."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import Engine, event, text

from idp.audit.events import close_minutes
from idp.store.base import now
from tests.helpers import Harness

ISSUER = "https://testserver"
TOKEN_URL = ISSUER + "/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Statements that only frame a transaction or set up a connection; they are not work.
FRAMING = ("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA", "SAVEPOINT", "RELEASE")


def sql(idp: Harness, statement: str, **params: Any) -> list[Any]:
    """Run one SQL statement in its own committed transaction; rows for a SELECT."""
    with idp.runtime.sessions.begin() as db:
        result = db.execute(text(statement), params)
        return list(result) if result.returns_rows else []


def audit_events(idp: Harness, event_name: str) -> list[Any]:
    """The audit events of one kind, once every failure tally has been written as if its
    minute had closed (tests/audit/test_tallies.py tests the minutes themselves)."""
    close_open_minutes(idp)
    return sql(
        idp, "SELECT client_id, user_id, detail FROM audit_events WHERE event = :e", e=event_name
    )


def close_open_minutes(idp: Harness) -> None:
    with idp.runtime.sessions.begin() as db:
        close_minutes(db, now() + 120)


def audited_count(idp: Harness, event_name: str) -> int:
    """How many times an event happened: a failure that was tallied counts its minute's count
    (its events may straddle two minutes, so the rows alone would not say)."""
    rows = audit_events(idp, event_name)
    return sum(int(json_of(detail).get("count", 1)) for _, _, detail in rows)


def json_of(value: Any) -> Any:
    """A JSON column's value: SQLite's driver hands back text, PostgreSQL's the object."""
    return json.loads(value) if isinstance(value, str) else value


def error_of(response: httpx.Response) -> str:
    """The RFC 6749 §5.2 `error` code, after checking the body has the §5.2 shape."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert isinstance(body.get("error"), str), body
    assert isinstance(body.get("error_description", ""), str), body
    return str(body["error"])


def jose_header(token: str) -> dict[str, Any]:
    """The protected header of a compact JWS, without verifying anything."""
    segment = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))  # type: ignore[no-any-return]


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """Collect the SQL statements sent on `engine`, transaction framing left out."""
    seen: list[str] = []

    def listener(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # The background worker's threads (idp-*) poll on their own schedule: not the request's.
        if threading.current_thread().name.startswith("idp-"):
            return
        if not statement.lstrip().upper().startswith(FRAMING):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listener)


@cache
def _rsa_key(name: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": name, "alg": "RS256", "use": "sig"})


def client_key(name: str = "client-key-1") -> RSAKey:
    """An RSA key pair for a private_key_jwt client (generated once per name per run)."""
    return _rsa_key(name)


def public_jwks(key: RSAKey) -> dict[str, object]:
    return {"keys": [key.as_dict(private=False)]}


def client_assertion(
    client_id: str,
    key: Any,
    alg: str = "RS256",
    header: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """RFC 7523 §3 / OIDC Core §9: iss = sub = client_id, aud = the token endpoint, jti, exp."""
    iat = int(time.time())
    body: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "jti": secrets.token_urlsafe(16),
        "iat": iat,
        "exp": iat + 60,
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    protected = {"alg": alg, **({"kid": key.kid} if getattr(key, "kid", None) else {})}
    protected.update(header or {})
    protected = {k: v for k, v in protected.items() if v is not None}
    return jwt.encode(protected, body, key, algorithms=[alg])


def assertion_form(assertion: str, **data: str) -> dict[str, str]:
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion, **data}
