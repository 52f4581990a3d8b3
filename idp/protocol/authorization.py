"""The authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2), from validation to the code.

`authorize()` validates the request once and answers with a code, an error for the relying
party, or "needs interaction": the validated request is then stored (store.interactions) and
only its id travels through the browser. Login and consent advance the interaction by id, and
`interaction.resume()` picks up where it stands. Until client_id and redirect_uri are known to
belong together, every error is a page (PageError), never a redirect (RFC 6749 §4.1.2.1).

No HTTP in here: the caller passes the parameters and the browser's cookies, and turns the
outcome into a response.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from authlib.common.urls import add_params_to_uri
from sqlalchemy.orm import Session

from idp.audit.events import AuditEvent, record
from idp.authn import mfa, sessions
from idp.errors import (
    N_,
    ConsentRequired,
    InteractionRequired,
    InvalidRequest,
    LoginRequired,
    OAuth2Error,
    PageError,
    RequestNotSupported,
    RequestUriNotSupported,
    UnmetAuthenticationRequirements,
    UnsupportedResponseType,
    redirect_error,
)
from idp.protocol import audiences
from idp.protocol.requests import IdpRequest, Params, shown_name
from idp.protocol.server import IdpServer
from idp.protocol.tokens import ADMIN_SCOPES, BadToken, token_service
from idp.runtime import Runtime
from idp.store import clients, consents, interactions, users
from idp.store.base import now
from idp.store.clients import Client
from idp.store.interactions import CONSENT, LOGIN
from idp.store.sessions import BrowserSession
from idp.store.users import User

KNOWN_PROMPTS = frozenset({"none", "login", "consent", "select_account"})
# RFC 8707 §2: one `resource` per audience the grant is for.
REPEATABLE = frozenset({"resource"})
INTERACTION_TTL = 15 * 60


@dataclass(frozen=True)
class Browser:
    """What the request brings of the person's browser: its cookies and its address."""

    session_cookie: str | None
    binding: str  # the browser's interaction cookie (a new one if it had none)
    ip: str | None
    fresh_binding: bool = False  # the cookie must be set on the response
    user_agent: str | None = None  # its User-Agent header (cut to the column's 256 characters)
    # The users its signed device cookie names (idp.security.devices): who signed in here.
    device_accounts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Redirect:
    """Back to the relying party's validated redirect_uri: a code, or an error."""

    location: str
    origin: str


@dataclass(frozen=True)
class NeedsInteraction:
    """The person must act first: `step` is "login", "factor", "enrol" or "consent"."""

    interaction_id: str
    step: str


Outcome = Redirect | NeedsInteraction


def origin_of(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


# --- the request -----------------------------------------------------------------------------


def authorize(db: Session, runtime: Runtime, params: Params, browser: Browser) -> Outcome:
    """GET|POST /authorize: validate once, then a code, an error redirect, or an interaction."""
    client, redirect_uri = target(db, params)
    try:
        return _authorize(db, runtime, client, params, browser)
    except OAuth2Error as error:
        return error_redirect(runtime, redirect_uri, error, params.get("state"))


def disabled_page(client: Client) -> PageError:
    """The page a disabled client's sign-in ends on (idp.admin.revocation.disable_client)."""
    return PageError(
        N_("This application is disabled"),
        N_("An administrator has disabled %(client)s; it cannot sign anyone in."),
        values={"client": client.name},
    )


def target(db: Session, p: Params) -> tuple[Client, str]:
    """The client and its redirect_uri, or an error page: nothing is sent to an unchecked URI."""
    client_ids = p.lists.get("client_id", [])
    if len(client_ids) != 1 or not client_ids[0]:
        raise PageError(
            N_("Missing application"),
            N_("The request must name exactly one application (client_id)."),
        )
    client = clients.read(db, client_ids[0]) if len(client_ids[0]) <= 64 else None
    if client is None:
        raise PageError(
            N_("Unknown application"), N_("No application with this client_id is registered here.")
        )
    if client.disabled:
        # A page, never a redirect: the client may not start anything, not even an error flow.
        raise disabled_page(client)
    redirect_uris = p.lists.get("redirect_uri", [])
    # RFC 9700 §4.1.3: exact string comparison with a registered URI.
    if len(redirect_uris) != 1 or redirect_uris[0] not in client.redirect_uris:
        raise PageError(
            N_("Invalid redirect address"),
            N_("The redirect_uri is missing, repeated or not registered for %(client)s."),
            values={"client": client.name},
            client_uri=client.client_uri,
        )
    return client, redirect_uris[0]


def _authorize(
    db: Session, runtime: Runtime, client: Client, p: Params, browser: Browser
) -> Outcome:
    _check_unsupported(p)
    grant, request = authlib_grant(db, runtime, p)
    prompts, max_age = prompts_and_max_age(p)
    hinted_sub = _hinted_subject(runtime, p)
    signed_in = signed_in_user(db, runtime, browser)
    session = signed_in[0] if signed_in else None
    login_required = (
        session is None
        or bool(prompts & {"login", "select_account"})
        # OIDC Core §3.1.2.1: max_age=0 is prompt=login (timestamps are whole seconds).
        or (max_age is not None and (max_age == 0 or now() - session.auth_time > max_age))
    )
    if login_required and "none" in prompts:
        raise LoginRequired("the user must sign in")
    if signed_in and not login_required and hinted_sub not in (None, signed_in[1].id):
        # The hinted user is neither signed in nor did they just sign in: an error, never a code
        # for somebody else.
        raise LoginRequired("the signed-in user is not the one id_token_hint names")
    step = LOGIN if login_required else CONSENT
    if signed_in and not login_required:
        session, user = signed_in
        try:
            owed = step_owed(db, client, user, session.acr, p.get("acr_values"))
        except UnmetAuthenticationRequirements:
            if "none" in prompts:
                raise InteractionRequired("the sign-in needs the user") from None
            raise
        if owed is not None and "none" in prompts:
            raise InteractionRequired("a second factor is needed")
        if owed is None and not consent_owed(db, client, user, p):
            return issue_code(runtime, grant, request, user, session)
        step = owed or CONSENT
    if "none" in prompts:
        raise ConsentRequired("the user must approve this application")
    cap = runtime.settings.interactions_per_ip_per_minute
    if cap and browser.ip and interactions.started_since(db, browser.ip, now() - 60) >= cap:
        raise PageError(
            N_("Too many sign-in attempts"),
            N_("Too many sign-ins were started from your network. Wait a minute, then try again."),
            429,
            client_uri=client.client_uri,
        )
    interaction_id = interactions.start(
        db,
        browser.binding,
        client.client_id,
        p.pairs,
        INTERACTION_TTL,
        browser.ip,
        login_required=login_required,
        hinted_sub=hinted_sub,
        user_id=signed_in[1].id if signed_in and not login_required else None,
    )
    return NeedsInteraction(interaction_id, step)


def _check_unsupported(p: Params) -> None:
    if repeated := p.repeated(allowed=REPEATABLE):
        raise InvalidRequest(f"parameter {shown_name(repeated[0])} is repeated")
    if "request" in p.data:
        raise RequestNotSupported("request objects are not supported")
    if "request_uri" in p.data:
        raise RequestUriNotSupported("request_uri is not supported")
    if p.get("response_mode") not in (None, "query"):
        raise InvalidRequest("only response_mode=query is supported")
    # Checked here, not left to authlib: authlib quotes the response_type it does not support
    # in its error description, and refuses (with a ValueError, a 500) to build a description
    # holding a quote, a control character or anything outside ASCII (RFC 6749 §4.1.2.1).
    response_type = p.get("response_type")
    if response_type is None:
        raise InvalidRequest("response_type is required")
    if response_type != "code":
        raise UnsupportedResponseType("only response_type=code is supported")


def authlib_grant(db: Session, runtime: Runtime, p: Params) -> tuple[Any, IdpRequest]:
    """authlib's checks of the request (response_type, scope, PKCE, nonce, ...), and the grant
    that issues its code."""
    server = IdpServer(runtime, db)
    request = IdpRequest("GET", runtime.settings.endpoint("/authorize"), {}, p)
    grant = server.get_consent_grant(request, end_user=None)
    # Checked here, where every path to a code passes (a resumed interaction too), against the
    # client's registration as it is now.
    audiences.for_grant(p, request.client.row, runtime.settings.audience)
    return grant, request


def prompts_and_max_age(p: Params) -> tuple[set[str], int | None]:
    """OIDC Core §3.1.2.1 prompt and max_age, validated."""
    prompts = set((p.get("prompt") or "").split())
    if not prompts <= KNOWN_PROMPTS:
        raise InvalidRequest("unknown prompt value")
    if "none" in prompts and len(prompts) > 1:
        raise InvalidRequest("prompt=none cannot be combined with other values")
    raw = p.get("max_age")
    if raw is None:
        return prompts, None
    if not (raw.isascii() and raw.isdigit() and len(raw) < 10):
        raise InvalidRequest("max_age must be a non-negative integer")
    return prompts, int(raw)


def _hinted_subject(runtime: Runtime, p: Params) -> str | None:
    hint = p.get("id_token_hint")
    if not hint:
        return None
    try:
        claims = token_service(runtime).verify_id_token_hint(hint, p.get("client_id"))
    except BadToken:
        raise InvalidRequest(
            "id_token_hint is not an ID token of this issuer for this client"
        ) from None
    return str(claims["sub"])


def signed_in_user(
    db: Session, runtime: Runtime, browser: Browser
) -> tuple[BrowserSession, User] | None:
    # Read-only copies: the protocol reads who is signed in, and never changes them here.
    session = sessions.read_current(db, browser.session_cookie, runtime.settings)
    user = users.read(db, session.user_id) if session else None
    if session is None or user is None or user.disabled:
        return None
    return session, user


# The steps a second factor adds (their pages: endpoints.authorize.STEP_PAGES).
FACTOR = "factor"  # answer a second factor the user holds
ENROL = "enrol"  # set one up first: the policy requires one and the user has none
NEW_PASSWORD = "new_password"  # noqa: S105 (a step name) the password is too short for the account as it is now


def factor_owed(
    db: Session, client: Client | None, user: User, achieved: str | None, acr_values: str | None
) -> str | None:
    """The step a sign-in that reached `achieved` still owes (None: it is enough), by the
    policy (mfa.requirement) and the relying party's acr_values. A request the user's factors
    cannot reach is refused, never silently downgraded."""
    needed = mfa.requirement(db, user, client, acr_values)
    if mfa.satisfies(achieved, needed.acr):
        return None
    factors = needed.factors
    if factors.can_reach(needed.acr):
        return FACTOR
    if needed.by_policy and not factors.any and needed.acr == mfa.AAL2:
        return ENROL
    record(db, AuditEvent.MFA_REQUIRED_UNMET, user_id=user.id, acr=needed.acr)
    raise UnmetAuthenticationRequirements(f"this sign-in cannot reach acr {needed.acr}")


def step_owed(
    db: Session, client: Client | None, user: User, achieved: str | None, acr_values: str | None
) -> str | None:
    """What a signed-in user still owes before a code: a second factor (factor_owed), then a
    new password when the sign-in flagged the old one as too short."""
    owed = factor_owed(db, client, user, achieved, acr_values)
    if owed is None and user.password_change_required:
        return NEW_PASSWORD
    return owed


def consent_owed(db: Session, client: Client, user: User, p: Params) -> bool:
    scopes = (p.get("scope") or "").split()
    # Power over this IdP is consented to explicitly, even by a trusted first-party app.
    trusted = client.trusted and not ADMIN_SCOPES.intersection(scopes)
    remembered = trusted or consents.covers(db, user.id, client.client_id, scopes)
    # Access that outlives the session is asked for every time (OIDC Core §11).
    return not remembered or "consent" in prompts_and_max_age(p)[0] or "offline_access" in scopes


def issue_code(
    runtime: Runtime, grant: Any, request: IdpRequest, user: User, session: BrowserSession
) -> Redirect:
    """The authorization code (RFC 6749 §4.1.2), with RFC 9207's `iss`."""
    request.user, request.session = user, session
    _, _, headers = grant.create_authorization_response(grant.redirect_uri, user)
    location = add_params_to_uri(dict(headers)["Location"], [("iss", runtime.settings.issuer)])
    return Redirect(location, origin_of(grant.redirect_uri))


def error_redirect(
    runtime: Runtime, redirect_uri: str, error: OAuth2Error, state: str | None
) -> Redirect:
    response = redirect_error(redirect_uri, error, state, runtime.settings.issuer, 302)
    return Redirect(response.headers["location"], origin_of(redirect_uri))
