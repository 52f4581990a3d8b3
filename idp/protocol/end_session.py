"""OpenID Connect RP-Initiated Logout 1.0: end the IdP session, then go back to the client.

Without a valid id_token_hint for the signed-in user the user must confirm (§2, §6: a third
party must not be able to sign people out). A post_logout_redirect_uri is used only when it
exactly matches one registered by the client the request identifies; otherwise the answer is a
page here, never a redirect.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from authlib.common.urls import add_params_to_uri
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from idp.authn import sessions as authn_sessions
from idp.protocol.requests import Params, client_ip
from idp.protocol.tokens import BadToken, token_service
from idp.runtime import Runtime
from idp.security import cookies
from idp.store import clients, sessions, users
from idp.store.clients import Client
from idp.store.sessions import BrowserSession
from idp.web.templating import Templates

FORWARDED = ("id_token_hint", "post_logout_redirect_uri", "state", "client_id")


@dataclass
class LogoutRequest:
    client: Client | None
    redirect_uri: str | None
    hinted_sub: str | None


class Invalid(Exception):
    """The request cannot be honoured; shown as a page."""


def _parse(db: Session, runtime: Runtime, p: Params) -> LogoutRequest:
    if p.repeated():
        raise Invalid(f"parameter {p.repeated()[0]} is repeated")
    hinted_sub = client_id = None
    if hint := p.get("id_token_hint"):
        try:
            claims = token_service(runtime).verify_id_token_hint(hint)
        except BadToken:
            raise Invalid("id_token_hint is not an ID token of this issuer") from None
        hinted_sub = claims.get("sub")
        aud = claims.get("aud")
        client_id = aud if isinstance(aud, str) else (aud[0] if aud else None)
    if (given := p.get("client_id")) is not None:
        if client_id is not None and given != client_id:
            raise Invalid("client_id does not match the id_token_hint")
        client_id = given
    client = clients.get(db, client_id) if client_id and len(client_id) <= 64 else None
    if client_id and client is None:
        raise Invalid("no application with this client_id is registered here")
    redirect_uri = p.get("post_logout_redirect_uri")
    if redirect_uri is not None:
        if client is None:
            raise Invalid("post_logout_redirect_uri needs id_token_hint or client_id")
        if redirect_uri not in client.post_logout_redirect_uris:
            raise Invalid(f"this post_logout_redirect_uri is not registered for {client.name}")
    return LogoutRequest(client, redirect_uri, hinted_sub)


def end_session(
    runtime: Runtime, templates: Templates, request: Request, p: Params, confirmed: bool
) -> Response:
    settings = runtime.settings
    cookie = cookies.read(request, settings, cookies.SESSION)
    with runtime.sessions.begin() as db:
        try:
            logout = _parse(db, runtime, p)
        except Invalid as exc:
            return templates.error(request, "Cannot sign out", str(exc))
        session = sessions.current(db, cookie, settings.session_idle_timeout_seconds)
        vouched = session is not None and logout.hinted_sub == session.user_id
        if session is not None and not (vouched or confirmed):
            return _confirm_page(db, templates, request, p, logout, session)
        if session is not None and cookie:
            authn_sessions.end(db, session, client_ip(request))
    response = _after_logout(templates, request, p, logout, 303 if confirmed else 302)
    cookies.clear(response, settings, cookies.SESSION)
    return response


def _confirm_page(
    db: Session,
    templates: Templates,
    request: Request,
    p: Params,
    logout: LogoutRequest,
    session: BrowserSession,
) -> Response:
    user = users.get(db, session.user_id)
    origins = []
    if logout.redirect_uri:
        parts = urlsplit(logout.redirect_uri)
        origins.append(f"{parts.scheme}://{parts.netloc}")
    return templates.render(
        request,
        "end_session/confirm.html",
        {
            "client_name": logout.client.name if logout.client else None,
            "user_email": user.email if user else None,
            "params": [(k, v) for k, v in p.pairs if k in FORWARDED],
        },
        form_action_origins=origins,
    )


def _after_logout(
    templates: Templates, request: Request, p: Params, logout: LogoutRequest, status: int
) -> Response:
    if logout.redirect_uri:
        params = [("state", state)] if (state := p.get("state")) is not None else []
        return RedirectResponse(add_params_to_uri(logout.redirect_uri, params), status_code=status)
    return templates.render(request, "end_session/done.html")
