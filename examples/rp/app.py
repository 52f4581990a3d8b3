"""A relying-party web app: sign in through the IdP with the authorization code flow and PKCE,
show the user's claims, call the protected API with the access token, refresh, and sign out
through the IdP's end-session endpoint.

authlib's Starlette client does the protocol work: discovery, PKCE (S256), state and nonce,
the code exchange, and the ID token's validation against the JWKS (signature, iss, aud, exp,
nonce, at_hash). This app adds the RFC 9207 `iss` check of the authorization response.

The browser holds only a signed session cookie with a random id; tokens stay on the server
(here in memory: a real app keeps them in its database, so that several workers share them).

Settings (environment): EXAMPLE_ISSUER (http://localhost:8000), EXAMPLE_RP_URL
(http://localhost:8002), EXAMPLE_API_URL (http://localhost:8001), EXAMPLE_CLIENT_ID and
EXAMPLE_CLIENT_SECRET, or EXAMPLE_CLIENT_FILE (examples/.rp-client.json, the JSON that
`idp clients create --json` printed), EXAMPLE_SESSION_SECRET (random per start if unset).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvicorn
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.integrations.starlette_client import OAuth
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.middleware.sessions import SessionMiddleware

SCOPE = "openid profile email offline_access notes.read roles"
DEFAULT_CLIENT_FILE = Path(__file__).resolve().parent.parent / ".rp-client.json"


@dataclass(frozen=True)
class Config:
    issuer: str
    base_url: str
    api_url: str
    client_id: str
    client_secret: str
    session_secret: str

    @classmethod
    def from_env(cls) -> Config:
        client_id = os.environ.get("EXAMPLE_CLIENT_ID")
        client_secret = os.environ.get("EXAMPLE_CLIENT_SECRET")
        if not (client_id and client_secret):
            path = Path(os.environ.get("EXAMPLE_CLIENT_FILE", DEFAULT_CLIENT_FILE))
            try:
                registered = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise SystemExit(
                    f"no client: set EXAMPLE_CLIENT_ID and EXAMPLE_CLIENT_SECRET, or register one "
                    f"with `make example-rp` ({path}: {exc})"
                ) from None
            client_id, client_secret = registered["client_id"], registered["client_secret"]
        return cls(
            issuer=os.environ.get("EXAMPLE_ISSUER", "http://localhost:8000").rstrip("/"),
            base_url=os.environ.get("EXAMPLE_RP_URL", "http://localhost:8002").rstrip("/"),
            api_url=os.environ.get("EXAMPLE_API_URL", "http://localhost:8001").rstrip("/"),
            client_id=client_id,
            client_secret=client_secret,
            session_secret=os.environ.get("EXAMPLE_SESSION_SECRET") or secrets.token_urlsafe(32),
        )


def page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'><link rel='icon' href='data:,'>"
        f"<title>{escape(title)}</title></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>",
        headers={"Cache-Control": "no-store"},
    )


def button(action: str, label: str) -> str:
    return f'<form method="post" action="{action}"><button type="submit">{label}</button></form>'


def create_app(config: Config | None = None) -> FastAPI:
    config = config or Config.from_env()
    app = FastAPI(title="Example RP", docs_url=None, redoc_url=None, openapi_url=None)
    secure = config.base_url.startswith("https://")
    # SameSite=Lax: the cookie comes back on the IdP's redirect to /callback (a top-level GET)
    # but not on a cross-site POST, which is what protects the POST buttons below.
    app.add_middleware(
        SessionMiddleware,
        secret_key=config.session_secret,
        session_cookie="example_rp",
        same_site="lax",
        https_only=secure,
        max_age=8 * 3600,
    )
    oauth = OAuth()
    oauth.register(
        "idp",
        client_id=config.client_id,
        client_secret=config.client_secret,
        server_metadata_url=f"{config.issuer}/.well-known/openid-configuration",
        client_kwargs={
            "scope": SCOPE,
            "code_challenge_method": "S256",
            "token_endpoint_auth_method": "client_secret_basic",
        },
    )
    idp = oauth.create_client("idp")
    tokens: dict[str, dict[str, Any]] = {}  # session id -> token response (see module docstring)

    def signed_in(request: Request) -> dict[str, Any] | None:
        return tokens.get(request.session.get("sid", ""))

    def token_client() -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=config.client_id,
            client_secret=config.client_secret,
            token_endpoint_auth_method="client_secret_basic",  # noqa: S106 (a method name)
        )

    @app.get("/")
    async def home(request: Request) -> Response:
        token = signed_in(request)
        if token is None:
            return page("Example app", '<p><a href="/login">Sign in</a></p>')
        claims = token["userinfo"]
        rows = "".join(
            f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>"
            for k, v in sorted(claims.items())
        )
        return page(
            f"Signed in as {claims.get('email', claims['sub'])}",
            f"<table id='claims'>{rows}</table>"
            '<p><a href="/call-api">Call the API</a> · <a href="/call-api?path=/reports">'
            "Call the API's auditor report</a></p>"
            + button("/refresh", "Refresh tokens")
            + button("/logout", "Sign out"),
        )

    @app.get("/login")
    async def login(request: Request) -> Response:
        return await idp.authorize_redirect(request, f"{config.base_url}/callback")  # type: ignore[no-any-return]

    @app.get("/callback")
    async def callback(request: Request) -> Response:
        metadata = await idp.load_server_metadata()
        # RFC 9207: the response names its issuer, so it cannot come from another IdP.
        if request.query_params.get("iss") != metadata["issuer"]:
            return page("Sign-in failed", "<p>The response did not come from our IdP.</p>")
        try:
            token = await idp.authorize_access_token(request)
        except OAuthError as exc:
            return page("Sign-in failed", f"<p>{escape(exc.error or '')}: "
                        f"{escape(exc.description or '')}</p>")  # fmt: skip
        # The ID token proves who signed in; profile and email come from userinfo (OIDC Core
        # §5.3), whose `sub` must match the ID token's (§5.3.2) or the answer is not used.
        claims = dict(token["userinfo"])
        profile = await idp.userinfo(token=token)
        if profile.get("sub") != claims["sub"]:
            return page("Sign-in failed", "<p>userinfo answered for another subject.</p>")
        token["userinfo"] = {**dict(profile), **claims}
        sid = secrets.token_urlsafe(32)
        request.session.clear()
        request.session["sid"] = sid
        tokens[sid] = dict(token)
        return RedirectResponse("/", status_code=303)

    @app.get("/call-api")
    async def call_api(request: Request, path: str = "/notes") -> Response:
        token = signed_in(request)
        if token is None:
            return RedirectResponse("/", status_code=303)
        if path not in ("/notes", "/reports"):
            return page("Not found", "<p>Unknown API path.</p>")
        async with httpx.AsyncClient(timeout=10.0) as http:
            answer = await http.get(
                config.api_url + path,
                headers={"Authorization": f"Bearer {token['access_token']}"},
            )
        return page(
            f"API answered {answer.status_code}",
            f"<pre id='api'>{escape(answer.text)}</pre><p><a href='/'>Back</a></p>",
        )

    @app.post("/refresh")
    async def refresh(request: Request) -> Response:
        token = signed_in(request)
        if token is None:
            return RedirectResponse("/", status_code=303)
        metadata = await idp.load_server_metadata()
        async with token_client() as client:
            try:
                fresh = await client.refresh_token(
                    metadata["token_endpoint"], refresh_token=token["refresh_token"]
                )
            except OAuthError as exc:
                # invalid_grant: the grant was revoked or expired; sign in again.
                tokens.pop(request.session.get("sid", ""), None)
                request.session.clear()
                return page("Please sign in again", f"<p>{escape(exc.error or '')}</p>")
        # Refresh rotates the refresh token; keep the user's claims from the ID token.
        userinfo = await idp.parse_id_token(fresh, nonce=None) if "id_token" in fresh else None
        token.update(dict(fresh))
        if userinfo is not None:
            token["userinfo"] = {**token["userinfo"], **dict(userinfo)}
        return RedirectResponse("/", status_code=303)

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        token = tokens.pop(request.session.get("sid", ""), None)
        request.session.clear()
        if token is None:
            return RedirectResponse("/", status_code=303)
        metadata = await idp.load_server_metadata()
        # The refresh token outlives the IdP session (offline access): revoke it (RFC 7009).
        async with token_client() as client:
            await client.revoke_token(
                metadata["revocation_endpoint"],
                token=token["refresh_token"],
                token_type_hint="refresh_token",  # noqa: S106 (a hint name)
            )
        return await idp.logout_redirect(  # type: ignore[no-any-return]
            request,
            post_logout_redirect_uri=f"{config.base_url}/signed-out",
            id_token_hint=token["id_token"],
        )

    @app.get("/signed-out")
    async def signed_out(request: Request) -> Response:
        try:
            await idp.validate_logout_response(request)
        except OAuthError:
            return page("Sign-out not confirmed", "<p>Unknown or missing state.</p>")
        return page("Signed out", '<p>You are signed out. <a href="/login">Sign in</a></p>')

    return app


def main() -> None:
    config = Config.from_env()
    url = urlsplit(config.base_url)
    # No access log: /callback's query string carries the authorization code.
    uvicorn.run(
        create_app(config),
        host=url.hostname or "localhost",
        port=url.port or 8002,
        access_log=False,
    )
