"""OpenID Connect RP-Initiated Logout 1.0: end the IdP session, then go back to the client.

Without a valid id_token_hint for the signed-in user the user must confirm (§2, §6: a third
party must not be able to sign people out). A post_logout_redirect_uri is used only when it
exactly matches one registered by the client the request identifies; otherwise the answer is a
page here, never a redirect. No HTTP in here: the logout page (web/logout.py) renders the
decision.
"""

from __future__ import annotations

from dataclasses import dataclass

from authlib.common.urls import add_params_to_uri
from sqlalchemy.orm import Session

from idp.authn import sessions
from idp.errors import N_, PageError
from idp.protocol.authorization import origin_of
from idp.protocol.requests import Params
from idp.protocol.tokens import BadToken, token_service
from idp.runtime import Runtime
from idp.store import clients, users
from idp.store.clients import Client

# The parameters the confirmation form carries back, as they came.
FORWARDED = ("id_token_hint", "post_logout_redirect_uri", "state", "client_id")


@dataclass(frozen=True)
class LogoutRequest:
    client: Client | None
    redirect_uri: str | None
    hinted_sub: str | None


@dataclass(frozen=True)
class Confirm:
    """Ask the person first: the request does not prove it comes from their own session."""

    client_name: str | None
    user_email: str | None
    forwarded: list[tuple[str, str]]
    form_action_origins: list[str]


@dataclass(frozen=True)
class SignedOut:
    """Done: `location` is the validated post_logout_redirect_uri (with state), if any."""

    location: str | None
    ended: bool  # a session ended (its cookie must be cleared, its logout tokens sent)


def parse(db: Session, runtime: Runtime, p: Params) -> LogoutRequest:
    """§2: the request's client and post_logout_redirect_uri, checked; PageError otherwise."""
    if p.repeated():
        raise _cannot(f"parameter {p.repeated()[0]} is repeated")
    hinted_sub = client_id = None
    if hint := p.get("id_token_hint"):
        try:
            claims = token_service(runtime).verify_id_token_hint(hint)
        except BadToken:
            raise _cannot("id_token_hint is not an ID token of this issuer") from None
        hinted_sub = claims.get("sub")
        aud = claims.get("aud")
        client_id = aud if isinstance(aud, str) else (aud[0] if aud else None)
    if (given := p.get("client_id")) is not None:
        if client_id is not None and given != client_id:
            raise _cannot("client_id does not match the id_token_hint")
        client_id = given
    client = clients.get(db, client_id) if client_id and len(client_id) <= 64 else None
    if client_id and client is None:
        raise _cannot("no application with this client_id is registered here")
    redirect_uri = p.get("post_logout_redirect_uri")
    if redirect_uri is not None:
        if client is None:
            raise _cannot("post_logout_redirect_uri needs id_token_hint or client_id")
        if redirect_uri not in client.post_logout_redirect_uris:
            raise _cannot(
                f"this post_logout_redirect_uri is not registered for {client.name}", client
            )
    return LogoutRequest(client, redirect_uri, hinted_sub)


def _cannot(detail: str, client: Client | None = None) -> PageError:
    return PageError(
        N_("Cannot sign out"),
        N_("The application asked to sign you out with a request this server cannot accept."),
        detail=detail,
        client_uri=client.client_uri if client else None,
    )


def end_session(
    db: Session,
    runtime: Runtime,
    p: Params,
    session_cookie: str | None,
    confirmed: bool,
    ip: str | None,
) -> Confirm | SignedOut:
    """Sign out at once when vouched for (id_token_hint of the signed-in user) or confirmed;
    otherwise ask. Ending the session queues its back-channel logout tokens."""
    logout = parse(db, runtime, p)
    session = sessions.current(db, session_cookie, runtime.settings, touch=False)
    vouched = session is not None and logout.hinted_sub == session.user_id
    if session is not None and not (vouched or confirmed):
        user = users.get(db, session.user_id)
        return Confirm(
            client_name=logout.client.name if logout.client else None,
            user_email=user.email if user else None,
            forwarded=[(k, v) for k, v in p.pairs if k in FORWARDED],
            form_action_origins=[origin_of(logout.redirect_uri)] if logout.redirect_uri else [],
        )
    if session is not None:
        sessions.end(db, session, ip)
    location = None
    if logout.redirect_uri:
        state = [("state", s)] if (s := p.get("state")) is not None else []
        location = add_params_to_uri(logout.redirect_uri, state)
    return SignedOut(location, ended=session is not None)
