"""Log lines (issue 15): JSON objects (or text with IDP_LOG_FORMAT=text), every line of a request
carrying its X-Request-ID (taken when well-formed, else made), request lines only with
IDP_ACCESS_LOG, values that cannot forge a line, and no secret in any line of any flow."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from idp.audit.events import AuditEvent, record
from idp.ops import logs
from tests.conftest import ISSUER, make_settings, migrated_app
from tests.helpers import PASSWORD, Harness
from tests.mfa_helpers import answer_factor, enrol_totp, recovery_codes, totp_code
from tests.refresh_helpers import (
    OFFLINE_SCOPE,
    introspect,
    offline_client,
    refresh,
    resource_server,
    revoke,
    userinfo,
)

GENERATED_ID = re.compile(r"[0-9a-f]{32}")


@dataclass
class Captured:
    stream: io.StringIO

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["event"] == name]


@pytest.fixture
def captured() -> Iterator[Captured]:
    """Every line any logger writes, at every level, through the JSON formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield Captured(stream)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
def logged(database_url: str, tmp_path: Path) -> Iterator[Harness]:
    """An IdP with IDP_ACCESS_LOG on."""
    app = migrated_app(make_settings(database_url, tmp_path, access_log=True))
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as http:
        yield Harness(app, http)
    app.state.runtime.engine.dispose()


def test_a_well_formed_request_id_is_kept_and_returned(idp: Harness) -> None:
    response = idp.http.get("/health/live", headers={"X-Request-ID": "proxy-1234.abc:9"})
    assert response.headers["x-request-id"] == "proxy-1234.abc:9"


@pytest.mark.parametrize("presented", [None, "", "has space", "x" * 65, "a/b", "semi;colon"])
def test_a_missing_or_malformed_request_id_is_replaced(idp: Harness, presented: str | None) -> None:
    headers = {"X-Request-ID": presented} if presented is not None else {}
    response = idp.http.get("/health/live", headers=headers)
    assert GENERATED_ID.fullmatch(response.headers["x-request-id"])


def test_every_line_of_a_request_carries_its_id_and_what_it_was_about(
    logged: Harness, captured: Captured
) -> None:
    """The request line (method, route template, status, duration) and the audit line of the
    same request share its id, and name the client and the user."""
    idp = logged
    user_id = idp.user()
    rp = idp.client()
    code = idp.code_for(rp)
    exchanged = idp.http.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": rp.redirect_uri,
            "code_verifier": rp.verifier,
        },
        headers={**rp.auth(), "X-Request-ID": "rp-trace-1"},
    )
    assert exchanged.status_code == 200
    [line] = [r for r in captured.events("request") if r.get("request_id") == "rp-trace-1"]
    assert line["method"] == "POST" and line["route"] == "/token" and line["status"] == 200
    assert isinstance(line["duration_ms"], float) and line["level"] == "info"
    assert line["client_id"] == rp.client_id and line["user_id"] == user_id
    [signed_in] = captured.events("login.succeeded")
    assert signed_in["user_id"] == user_id and signed_in["logger"] == "idp.audit"
    signed_in_request = [
        r for r in captured.events("request") if r["request_id"] == signed_in["request_id"]
    ]
    assert [r["route"] for r in signed_in_request] == ["/login"]


def test_routes_are_templates_never_the_callers_path(logged: Harness, captured: Captured) -> None:
    """An id in a path is the caller's input: the line names the route it matched."""
    logged.http.get("/clients/some-client-id/logo")
    logged.http.get("/no/such/page")
    routes = [r["route"] for r in captured.events("request")]
    assert routes == ["/clients/{client_id}/logo", "unmatched"]


def test_no_request_lines_without_the_setting(idp: Harness, captured: Captured) -> None:
    idp.http.get("/health/live")
    assert captured.events("request") == []


def test_values_cannot_forge_a_line_in_either_format(idp: Harness, captured: Captured) -> None:
    """OWASP Logging Cheat Sheet (log injection): a newline or an escape sequence in a value
    stays inside its line, in JSON and in text."""
    evil = 'nobody\n{"event": "login.succeeded"}\x1b[2K\u202e'
    with idp.runtime.sessions.begin() as db:
        record(db, AuditEvent.CLIENT_AUTH_FAILED, client_id=evil, ip="10.0.0.1", why=evil)
    [line] = [line for line in captured.lines() if "client_auth.failed" in line]
    assert json.loads(line)["client_id"] == evil and json.loads(line)["why"] == evil
    text = logs.TextFormatter().format(
        logging.makeLogRecord(
            {"name": "idp.audit", "msg": "client_auth.failed", "fields": {"client_id": evil}}
        )
    )
    assert "\n" not in text and "\x1b" not in text and "\u202e" not in text
    assert "client_id=nobody\\n{" in text


def test_the_serve_configuration_formats_idp_and_uvicorn_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`idp serve` hands uvicorn this dictConfig; each worker applies it."""
    saved = {n: logging.getLogger(n) for n in ("idp", "uvicorn", "uvicorn.error", "authlib")}
    state = {n: (lg.handlers[:], lg.level, lg.propagate) for n, lg in saved.items()}
    try:
        for fmt in ("json", "text"):
            logging.config.dictConfig(logs.config(fmt, "info"))
            logging.getLogger("idp.test").info("hello", extra={"fields": {"n": 1}})
            logging.getLogger("uvicorn.error").info("Started server process")
            logging.getLogger("authlib").debug("a token")
        out = capsys.readouterr().out.splitlines()
    finally:
        for name, (handlers, level, propagate) in state.items():
            lg = saved[name]
            lg.handlers, lg.level, lg.propagate = handlers, level, propagate
    first, second, third, fourth = out
    assert json.loads(first)["event"] == "hello" and json.loads(first)["n"] == 1
    assert json.loads(second)["logger"] == "uvicorn.error"
    assert re.fullmatch(r"\S+Z info idp.test hello n=1", third)
    assert "Started server process" in fourth
    assert not any("a token" in line for line in out)  # authlib's DEBUG never reaches a log


def test_no_flow_logs_a_secret(captured: Captured, database_url: str, tmp_path: Path) -> None:
    """Passwords (right and wrong), client secrets, codes, PKCE verifiers, access, refresh and
    ID tokens, TOTP seeds and codes, and recovery codes appear in no line of any flow, with
    every logger at DEBUG and request lines on."""
    app = migrated_app(make_settings(database_url, tmp_path, access_log=True))
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as http:
        idp = Harness(app, http)
        secrets = _every_flow(idp)
    app.state.runtime.engine.dispose()
    # The server's lines: the test's own HTTP client (httpx2) logs the URLs it requests.
    text = "\n".join(
        line for line, r in zip(captured.lines(), captured.records(), strict=True)
        if not r["logger"].startswith("httpx")
    )  # fmt: skip
    assert captured.events("login.succeeded") and captured.events("request")
    # A six-digit TOTP code could turn up inside a timestamp: it counts only standing alone.
    leaked = [
        name
        for name, value in secrets.items()
        if re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text)
    ]
    assert leaked == [], leaked
    assert all(isinstance(r, dict) for r in captured.records())  # every line is a JSON object


def _every_flow(idp: Harness) -> dict[str, str]:
    secrets: dict[str, str] = {"password": PASSWORD}
    user_id = idp.user()
    rp = offline_client(idp)
    assert rp.secret
    secrets["client_secret"] = rp.secret
    wrong = "wrong " + PASSWORD
    secrets["wrong_password"] = wrong
    idp.login(password=wrong)
    code = idp.code_for(rp, scope=OFFLINE_SCOPE)
    secrets.update(code=code, code_verifier=rp.verifier)
    tokens = idp.exchange(rp, code).json()
    secrets.update(
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
        id_token=tokens["id_token"],
    )
    userinfo(idp, tokens["access_token"])
    api = resource_server(idp)
    assert api.secret
    secrets["resource_server_secret"] = api.secret
    introspect(idp, api, tokens["access_token"])
    rotated = refresh(idp, rp, tokens["refresh_token"]).json()
    secrets["rotated_refresh_token"] = rotated["refresh_token"]
    refresh(idp, rp, tokens["refresh_token"])  # a reuse: the family is revoked, and audited
    revoke(idp, rp, rotated["access_token"])
    service_token = idp.client_credentials(api).json()["access_token"]
    secrets["service_token"] = service_token
    # A second factor: the seed, a code, and a recovery code used to sign in.
    seed = enrol_totp(idp, user_id)
    codes = recovery_codes(idp, user_id)
    secrets.update(totp_seed=seed, recovery_code=codes[0])
    idp.http.cookies.clear()
    at_factor = idp.login()
    one_time = totp_code(seed)
    secrets["totp_code"] = one_time
    assert answer_factor(idp, at_factor, one_time).status_code in (302, 303)
    idp.http.cookies.clear()
    assert answer_factor(idp, idp.login(), codes[0], method="recovery").status_code in (302, 303)
    # The cookies the browser held (the session, the interaction binding) are secrets too.
    for name, value in idp.http.cookies.items():
        secrets[f"cookie {name}"] = value
    return secrets
