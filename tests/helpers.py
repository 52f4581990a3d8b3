"""A relying party and a browser, in a few lines each, for tests that read like the spec."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html import unescape
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import KeySet
from starlette.testclient import TestClient

from idp.admin.clients import ClientSpec, fetch_logo, register
from idp.admin.users import create_user
from idp.audit.events import AuditEvent, record
from idp.runtime import Runtime
from idp.store import roles
from idp.store.roles import ADMIN

PASSWORD = "correct horse battery staple"
REDIRECT_URI = "https://rp.example/callback"


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def form_fields(html: str) -> dict[str, str]:
    """name -> value of every <input> and the first submit <button> in the page."""
    fields: dict[str, str] = {}
    for tag in re.findall(r"<input[^>]*>", html):
        name = re.search(r'name="([^"]*)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name:
            fields[unescape(name.group(1))] = unescape(value.group(1)) if value else ""
    return fields


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass
class RP:
    """A registered client and what it keeps between requests."""

    client_id: str
    secret: str | None
    redirect_uri: str = REDIRECT_URI
    state: str = field(default_factory=lambda: secrets.token_urlsafe(8))
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(8))
    verifier: str = ""
    challenge: str = ""

    def __post_init__(self) -> None:
        self.verifier, self.challenge = pkce_pair()

    def auth(self) -> dict[str, str]:
        return basic(self.client_id, self.secret) if self.secret else {}

    def authorize_params(self, **overrides: Any) -> dict[str, str]:
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": "openid profile email",
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": self.challenge,
            "code_challenge_method": "S256",
        }
        params.update(overrides)
        return {k: v for k, v in params.items() if v is not None}


class Harness:
    """The IdP under test: make users and clients, drive a browser, redeem codes."""

    def __init__(self, app: FastAPI, http: TestClient) -> None:
        self.app = app
        self.http = http

    @property
    def runtime(self) -> Runtime:
        return self.app.state.runtime  # type: ignore[no-any-return]

    def user(
        self, email: str = "alice@example.com", password: str = PASSWORD, **kwargs: Any
    ) -> str:
        """A user; an admin (`is_admin`, or "admin" in `roles_granted`) is made one directly
        in the store, as a test's setup, not through the approval gate of idp.admin.approvals
        (which the tests of that gate drive themselves)."""
        admin = kwargs.pop("is_admin", False)
        granted = list(kwargs.pop("roles_granted", ()))
        if ADMIN in granted:
            admin = True
            granted.remove(ADMIN)
        with self.runtime.sessions.begin() as db:
            user = create_user(
                db,
                self.runtime.passwords,
                self.runtime.settings,
                email=email,
                password=password,
                roles_granted=granted,
                **kwargs,
            )
            if admin:
                roles.add(db, user.id, ADMIN)
                record(db, AuditEvent.ROLE_GRANTED, user_id=user.id, role=ADMIN, until=None)
            return user.id

    def client(self, **kwargs: Any) -> RP:
        spec = {
            "name": "Test RP",
            "grant_types": ["authorization_code"],
            "scopes": ["openid", "profile", "email", "offline_access"],
            "redirect_uris": [REDIRECT_URI],
        }
        spec.update(kwargs)
        wanted = ClientSpec(**spec)  # type: ignore[arg-type]
        # As every caller does: fetch_logo before the transaction, the policy of the app's runtime.
        logo = fetch_logo(wanted, self.runtime.outbound)
        with self.runtime.sessions.begin() as db:
            registered = register(db, wanted, logo, policy=self.runtime.outbound)
            if registered.pending is not None:
                # A test's setup: the admin scopes asked for, set in the store directly (the
                # approval gate has tests of its own).
                registered.client.scopes = list(dict.fromkeys(wanted.scopes))
                db.delete(registered.pending)
            return RP(
                registered.client.client_id,
                registered.client_secret,
                redirect_uri=(spec["redirect_uris"] or [REDIRECT_URI])[0],
            )  # type: ignore[index]

    # --- browser --------------------------------------------------------------------------------

    def authorize(self, rp: RP, **overrides: Any) -> httpx.Response:
        return self.http.get("/authorize", params=rp.authorize_params(**overrides))

    def follow_local(self, response: httpx.Response) -> httpx.Response:
        """Follow the IdP's redirects to its own pages (resume, consent) as a browser does; stop
        at the login redirect (a form to fill), a page, or a redirect to the relying party."""
        for _ in range(5):
            location = response.headers.get("location", "")
            if response.status_code not in (302, 303) or not location.startswith("/"):
                return response
            if location.startswith("/login?"):
                return response
            response = self.http.get(location)
        raise AssertionError("too many redirects")

    def login(
        self, email: str = "alice@example.com", password: str = PASSWORD, return_to: str = "/"
    ) -> httpx.Response:
        page = self.http.get("/login", params={"return_to": return_to})
        fields = form_fields(page.text)
        fields.update(email=email, password=password)
        return self.http.post("/login", data=fields)

    def follow_to_code(
        self,
        response: httpx.Response,
        rp: RP,
        email: str = "alice@example.com",
        password: str = PASSWORD,
        consent: str = "allow",
    ) -> httpx.Response:
        """Follow redirects through login and consent until the answer leaves for the RP."""
        for _ in range(8):
            if response.status_code in (302, 303):
                location = response.headers["location"]
                if location.startswith(rp.redirect_uri):
                    return response
                if location.startswith("/login"):
                    page = self.http.get(location)
                    fields = form_fields(page.text)
                    fields.update(email=email, password=password)
                    response = self.http.post("/login", data=fields)
                    continue
                response = self.http.get(location)
                continue
            if response.status_code == 200 and 'action="/consent"' in response.text:
                fields = form_fields(response.text)
                fields["decision"] = consent
                response = self.http.post("/consent", data=fields)
                continue
            return response
        raise AssertionError("too many redirects")

    def code_for(self, rp: RP, **overrides: Any) -> str:
        response = self.follow_to_code(self.authorize(rp, **overrides), rp)
        assert response.status_code in (302, 303), response.text
        params = query_of(response.headers["location"])
        assert "code" in params, params
        return params["code"]

    def exchange(self, rp: RP, code: str, **overrides: Any) -> httpx.Response:
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": rp.redirect_uri,
            "code_verifier": rp.verifier,
        }
        if not rp.secret:
            data["client_id"] = rp.client_id
        data.update(overrides)
        data = {k: v for k, v in data.items() if v is not None}
        return self.http.post("/token", data=data, headers=rp.auth())

    def tokens(self, rp: RP, **overrides: Any) -> dict[str, Any]:
        response = self.exchange(rp, self.code_for(rp, **overrides))
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def client_credentials(self, rp: RP, **data: str) -> httpx.Response:
        return self.http.post(
            "/token", data={"grant_type": "client_credentials", **data}, headers=rp.auth()
        )

    # --- verifying what we got ------------------------------------------------------------------

    def jwks(self) -> KeySet:
        return KeySet.import_key_set(self.http.get("/jwks.json").json())

    def decode(self, token: str) -> jwt.Token:
        return jwt.decode(token, self.jwks(), algorithms=["RS256"])


def redeem(http: httpx.Client, rp: RP, code: str) -> httpx.Response:
    """RFC 6749 §4.1.3 with the PKCE verifier (RFC 7636 §4.5), client_secret_basic, through
    any client (a TestClient, or httpx against a real server)."""
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": rp.redirect_uri,
        "code_verifier": rp.verifier,
    }
    return http.post("/token", data=data, headers=rp.auth())


def wait_until(done: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll until `done()` holds (work the server does in the background), at most `timeout`."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def urlencoded(data: dict[str, str]) -> str:
    return urlencode(data)


_T = TypeVar("_T")


def in_its_own_loop(scenario: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """asyncio.run in a thread of its own: the session may already run an event loop in this
    one (Playwright's sync API does, in the browser tests' worker)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, scenario()).result()
