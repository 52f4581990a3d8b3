"""The authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2), from validation to the code.

Shared by GET|POST /authorize and the consent form, which re-submits the original request so
the server trusts nothing it did not validate again. Until client_id and redirect_uri are known
to belong together, every error is a page here, never a redirect (RFC 6749 §4.1.2.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749.errors import OAuth2Error
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from idp.audit.events import AuditEvent, record
from idp.protocol.claims import describe
from idp.protocol.requests import IdpRequest, Params, client_ip
from idp.protocol.server import IdpServer
from idp.protocol.tokens import BadToken, token_service
from idp.runtime import Runtime
from idp.security import cookies
from idp.store import clients, consents, sessions, users
from idp.store.base import now
from idp.store.clients import Client
from idp.store.sessions import BrowserSession
from idp.store.users import User
from idp.web.templating import Templates

KNOWN_PROMPTS = frozenset({"none", "login", "consent", "select_account"})


@dataclass
class AuthorizationContext:
    runtime: Runtime
    templates: Templates
    request: Request
    params: Params
    # 303 after a POST, so the browser follows with a GET (RFC 9110 §15.4.4).
    redirect_status: int


def origin_of(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


class Refused(Exception):
    """An error for the relying party, sent to its validated redirect_uri (RFC 6749 §4.1.2.1)."""

    def __init__(self, error: str, description: str | None = None) -> None:
        super().__init__(error)
        self.error, self.description = error, description


def authorize(ctx: AuthorizationContext, decision: str | None = None) -> Response:
    with ctx.runtime.sessions.begin() as db:
        target = _target(ctx, db)
        if isinstance(target, Response):
            return target
        client, redirect_uri = target
        try:
            return _authorize(ctx, db, client, decision)
        except Refused as refused:
            return _redirect_error(ctx, redirect_uri, refused)


def _target(ctx: AuthorizationContext, db: Session) -> tuple[Client, str] | Response:
    """The client and its redirect_uri, or an error page: nothing is sent to an unchecked URI."""
    p, templates = ctx.params, ctx.templates
    client_ids = p.lists.get("client_id", [])
    if len(client_ids) != 1 or not client_ids[0]:
        return templates.error(
            ctx.request,
            "Missing application",
            "The request must name exactly one application (client_id).",
        )
    client = clients.get(db, client_ids[0]) if len(client_ids[0]) <= 64 else None
    if client is None:
        return templates.error(
            ctx.request,
            "Unknown application",
            "No application with this client_id is registered here.",
        )
    redirect_uris = p.lists.get("redirect_uri", [])
    # RFC 9700 §4.1.3: exact string comparison with a registered URI.
    if len(redirect_uris) != 1 or redirect_uris[0] not in client.redirect_uris:
        return templates.error(
            ctx.request,
            "Invalid redirect address",
            f"The redirect_uri is missing, repeated or not registered for {client.name}.",
        )
    return client, redirect_uris[0]


def _redirect_error(ctx: AuthorizationContext, redirect_uri: str, refused: Refused) -> Response:
    params = [("error", refused.error)]
    if refused.description:
        params.append(("error_description", refused.description))
    if (state := ctx.params.get("state")) is not None:
        params.append(("state", state))
    params.append(("iss", ctx.runtime.settings.issuer))  # RFC 9207 §2
    return RedirectResponse(
        add_params_to_uri(redirect_uri, params), status_code=ctx.redirect_status
    )


def _check_unsupported(p: Params) -> None:
    if repeated := p.repeated():
        raise Refused("invalid_request", f"parameter {repeated[0]} is repeated")
    if "request" in p.data:
        raise Refused("request_not_supported", "request objects are not supported")
    if "request_uri" in p.data:
        raise Refused("request_uri_not_supported", "request_uri is not supported")
    if p.get("response_mode") not in (None, "query"):
        raise Refused("invalid_request", "only response_mode=query is supported")


def _prompts_and_max_age(p: Params) -> tuple[set[str], int | None]:
    """OIDC Core §3.1.2.1 prompt and max_age, validated."""
    prompts = set((p.get("prompt") or "").split())
    if not prompts <= KNOWN_PROMPTS:
        raise Refused("invalid_request", "unknown prompt value")
    if "none" in prompts and len(prompts) > 1:
        raise Refused("invalid_request", "prompt=none cannot be combined with other values")
    raw = p.get("max_age")
    if raw is None:
        return prompts, None
    if not (raw.isascii() and raw.isdigit() and len(raw) < 10):
        raise Refused("invalid_request", "max_age must be a non-negative integer")
    return prompts, int(raw)


def _hinted_subject(ctx: AuthorizationContext) -> str | None:
    hint = ctx.params.get("id_token_hint")
    if not hint:
        return None
    try:
        return str(token_service(ctx.runtime).verify_id_token_hint(hint)["sub"])
    except BadToken:
        raise Refused(
            "invalid_request", "id_token_hint is not an ID token of this issuer"
        ) from None


def _signed_in(ctx: AuthorizationContext, db: Session) -> tuple[BrowserSession, User] | None:
    session = session_of(db, ctx.request, ctx.runtime)
    user = users.get(db, session.user_id) if session else None
    if session is None or user is None or user.disabled:
        return None
    return session, user


def _authorize(
    ctx: AuthorizationContext, db: Session, client: Client, decision: str | None
) -> Response:
    p = ctx.params
    _check_unsupported(p)
    server = IdpServer(ctx.runtime, db)
    oauth_request = IdpRequest(
        "GET", ctx.runtime.settings.endpoint("/authorize"), ctx.request.headers, p
    )
    oauth_request.ip = client_ip(ctx.request)
    try:
        grant = server.get_consent_grant(oauth_request, end_user=None)
    except OAuth2Error as error:
        raise Refused(error.error, error.description) from None
    prompts, max_age = _prompts_and_max_age(p)
    hinted_sub = _hinted_subject(ctx)

    signed_in = _signed_in(ctx, db)
    if (
        signed_in is None
        or prompts & {"login", "select_account"}
        # OIDC Core §3.1.2.1: max_age=0 is prompt=login (timestamps are whole seconds).
        or (max_age is not None and (max_age == 0 or now() - signed_in[0].auth_time > max_age))
    ):
        if "none" in prompts:
            raise Refused("login_required", "the user must sign in")
        return _to_login(ctx, p)
    session, user = signed_in
    if hinted_sub is not None and hinted_sub != user.id:
        # The hinted user is neither signed in nor did they just sign in: an error, never a code
        # for somebody else.
        raise Refused("login_required", "the signed-in user is not the one id_token_hint names")

    scopes = oauth_request.scope.split()
    if page := _consent_step(ctx, db, client, user, scopes, prompts, decision, grant.redirect_uri):
        return page

    oauth_request.user, oauth_request.session = user, session
    try:
        _, _, headers = grant.create_authorization_response(grant.redirect_uri, user)
    except OAuth2Error as error:
        raise Refused(error.error, error.description) from None
    location = add_params_to_uri(dict(headers)["Location"], [("iss", ctx.runtime.settings.issuer)])
    return RedirectResponse(location, status_code=ctx.redirect_status)


def _consent_step(
    ctx: AuthorizationContext,
    db: Session,
    client: Client,
    user: User,
    scopes: list[str],
    prompts: set[str],
    decision: str | None,
    redirect_uri: str,
) -> Response | None:
    """Record the user's answer, or ask for one; None when the request may proceed."""
    ip = client_ip(ctx.request)
    if decision == "deny":
        record(db, AuditEvent.CONSENT_DENIED, ip=ip, user_id=user.id, client_id=client.client_id)
        raise Refused("access_denied", "the user denied the request")
    if decision == "allow":
        consents.grant(db, user.id, client.client_id, scopes)
        record(
            db,
            AuditEvent.CONSENT_GRANTED,
            ip=ip,
            user_id=user.id,
            client_id=client.client_id,
            scope=" ".join(scopes),
        )
        return None
    remembered = client.trusted or consents.covers(db, user.id, client.client_id, scopes)
    # Access that outlives the session is asked for every time (OIDC Core §11).
    if remembered and "consent" not in prompts and "offline_access" not in scopes:
        return None
    if "none" in prompts:
        raise Refused("consent_required", "the user must approve this application")
    return _consent_page(ctx, client, user.email, scopes, redirect_uri)


def _to_login(ctx: AuthorizationContext, p: Params) -> Response:
    """Send the browser to sign in, then back to this same request.

    The way back drops what asked for the new sign-in (prompt=login, max_age), or
    the request would ask again forever; the relying party still sees the fresh auth_time.
    """
    back = [(k, v) for k, v in p.without("max_age") if k != "prompt"]
    remaining = set((p.get("prompt") or "").split()) - {"login", "select_account"}
    if remaining:
        back.append(("prompt", " ".join(sorted(remaining))))
    query = {"return_to": "/authorize?" + urlencode(back)}
    if hint := p.get("login_hint"):
        query["login_hint"] = hint
    return RedirectResponse("/login?" + urlencode(query), status_code=ctx.redirect_status)


def _consent_page(
    ctx: AuthorizationContext, client: Client, email: str, scopes: list[str], redirect_uri: str
) -> Response:
    return ctx.templates.render(
        ctx.request,
        "consent/ask.html",
        {
            "client_name": client.name,
            "user_email": email,
            "scopes": [describe(s) for s in scopes],
            "request_params": urlencode(ctx.params.pairs),
            "redirect_host": urlsplit(redirect_uri).netloc,
        },
        form_action_origins=[origin_of(redirect_uri)],
    )


def session_of(db: Session, request: Request, runtime: Runtime) -> BrowserSession | None:
    settings = runtime.settings
    return sessions.current(
        db, cookies.read(request, settings, cookies.SESSION), settings.session_idle_timeout_seconds
    )
