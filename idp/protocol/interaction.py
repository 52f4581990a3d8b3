"""The stored sign-in interaction: what /authorize validated, the steps done, what is owed.

The login and consent pages advance an interaction by its id; `resume()` answers with the next
step owed, or the interaction's outcome, taken once (store.interactions.complete). An id opens
nothing in another browser, after 15 minutes, or after its outcome was taken.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from idp.audit.events import AuditEvent, record
from idp.authn import mfa
from idp.errors import N_, AccessDenied, LoginRequired, OAuth2Error, PageError
from idp.protocol.authorization import (
    FACTOR,
    INTERACTION_TTL,
    NEW_PASSWORD,
    Browser,
    NeedsInteraction,
    Outcome,
    Redirect,
    authlib_grant,
    consent_owed,
    disabled_page,
    error_redirect,
    factor_owed,
    issue_code,
    origin_of,
    signed_in_user,
    step_owed,
)
from idp.protocol.requests import Params
from idp.runtime import Runtime
from idp.store import clients, consents, interactions
from idp.store.clients import Client
from idp.store.interactions import CONSENT, LOGIN, PASSWORD, Interaction
from idp.store.users import User

EXPIRED = (N_("This sign-in has expired"), N_("Go back to the application and sign in again."))
# The one parameter of an interaction of the IdP's own: where to go once signed in.
RETURN_PATH = "return_path"


@dataclass(frozen=True)
class Pending:
    """A live interaction of this browser, with its client, for the pages that advance it."""

    row: Interaction
    client: Client | None  # None: an interaction of the IdP's own (account pages, step-up)
    params: Params

    @property
    def redirect_uri(self) -> str:
        return self.params.get("redirect_uri") or ""

    @property
    def origins(self) -> list[str]:
        """Where the form's redirects end (for the page's CSP form-action)."""
        return [origin_of(self.redirect_uri)] if self.client is not None else []

    @property
    def scopes(self) -> list[str]:
        return (self.params.get("scope") or "").split()


def pending(db: Session, interaction_id: str | None, browser: Browser) -> Pending:
    """The interaction behind this id, only for the browser that started it, only before it
    expires and only until it is complete; otherwise an error page."""
    row = interactions.get(db, interaction_id, browser.binding)
    client = clients.read(db, row.client_id) if row is not None and row.client_id else None
    if row is None or (row.client_id is not None and client is None):
        raise PageError(*EXPIRED)
    if client is not None and client.disabled:
        # Disabled while the person was signing in: no code is issued for it.
        raise disabled_page(client)
    return Pending(row, client, Params([(k, v) for k, v in row.params]))


def start_own(
    db: Session, browser: Browser, return_path: str, login_required: bool = True
) -> NeedsInteraction:
    """An interaction of the IdP's own, for a page that needs a (fresh) sign-in first: the same
    steps as an authorization request, then back to `return_path` on this server."""
    if not return_path.startswith("/") or return_path.startswith("//") or "\\" in return_path:
        raise ValueError("return_path must be a path on this server")
    interaction_id = interactions.start(
        db,
        browser.binding,
        None,
        [(RETURN_PATH, return_path)],
        INTERACTION_TTL,
        browser.ip,
        login_required=login_required,
    )
    return NeedsInteraction(interaction_id, LOGIN)


def resume(db: Session, runtime: Runtime, interaction_id: str | None, browser: Browser) -> Outcome:
    """Continue an interaction: the next step owed, or its outcome (once)."""
    it = pending(db, interaction_id, browser)
    try:
        return _resume(db, runtime, it, interaction_id or "", browser)
    except OAuth2Error as error:
        interactions.complete(db, interaction_id or "", browser.binding)
        return error_redirect(runtime, it.redirect_uri, error, it.params.get("state"))


def _resume(
    db: Session, runtime: Runtime, it: Pending, interaction_id: str, browser: Browser
) -> Outcome:
    signed_in = signed_in_user(db, runtime, browser)
    row = it.row
    if PASSWORD in row.steps and LOGIN not in row.steps:
        return NeedsInteraction(interaction_id, FACTOR)  # the password alone was not enough
    if (
        signed_in is None
        or (row.login_required and LOGIN not in row.steps)
        or (row.user_id is not None and row.user_id != signed_in[1].id)
    ):
        return NeedsInteraction(interaction_id, LOGIN)
    session, user = signed_in
    owed = step_owed(db, it.client, user, session.acr, it.params.get("acr_values"))
    if owed == NEW_PASSWORD:
        return NeedsInteraction(interaction_id, owed)
    if owed is not None:
        # A step-up: the session's sign-in is not strong enough for this request.
        interactions.step_done(db, row, PASSWORD, user.id)
        return NeedsInteraction(interaction_id, owed)
    if it.client is None:
        # The IdP's own: signed in as asked, back to the page that asked (a path we stored).
        if interactions.complete(db, interaction_id, browser.binding) is None:
            raise PageError(*EXPIRED)
        return Redirect(it.params.get(RETURN_PATH) or "/", origin="")
    if row.hinted_sub is not None and row.hinted_sub != user.id:
        raise LoginRequired("the signed-in user is not the one id_token_hint names")
    if CONSENT not in row.steps and consent_owed(db, it.client, user, it.params):
        return NeedsInteraction(interaction_id, CONSENT)
    if interactions.complete(db, interaction_id, browser.binding) is None:
        raise PageError(*EXPIRED)
    grant, request = authlib_grant(db, runtime, it.params)
    return issue_code(runtime, grant, request, user, session)


def password_checked(
    db: Session, runtime: Runtime, interaction_id: str | None, browser: Browser, user: User
) -> Outcome | None:
    """The login page's report of a correct password: None when it is enough to start the
    session, else the step owed first (a sign-in to the IdP itself gets an interaction of its
    own, so the factor page has one) or the relying party's unmet-requirements error."""
    row = interactions.get(db, interaction_id, browser.binding) if interaction_id else None
    client = clients.read(db, row.client_id) if row is not None and row.client_id else None
    acr_values = Params([(k, v) for k, v in row.params]).get("acr_values") if row else None
    try:
        owed = factor_owed(db, client, user, mfa.AAL1, acr_values)
    except OAuth2Error as error:
        if row is None or client is None:
            raise PageError(
                N_("Sign-in not possible"), N_("This account cannot sign in this way.")
            ) from None
        interactions.complete(db, interaction_id or "", browser.binding)
        params = Params([(k, v) for k, v in row.params])
        return error_redirect(
            runtime, params.get("redirect_uri") or "", error, params.get("state")
        )
    if owed is None:
        return None
    if row is None:
        interaction_id = start_own(db, browser, "/", login_required=True).interaction_id
        row = interactions.get(db, interaction_id, browser.binding)
        assert row is not None
    interactions.step_done(db, row, PASSWORD, user.id)
    return NeedsInteraction(interaction_id or "", owed)


def logged_in(db: Session, interaction_id: str | None, browser: Browser, user_id: str) -> None:
    """The login page's report: this user signed in within the interaction."""
    row = interactions.get(db, interaction_id, browser.binding)
    if row is not None:
        interactions.step_done(db, row, LOGIN, user_id)


def decide(
    db: Session,
    runtime: Runtime,
    interaction_id: str | None,
    browser: Browser,
    allow: bool,
) -> Outcome:
    """The consent page's answer: remembered and audited, then the interaction goes on."""
    it = pending(db, interaction_id, browser)
    signed_in = signed_in_user(db, runtime, browser)
    if signed_in is None or it.row.user_id not in (None, signed_in[1].id):
        # Signed out, or signed in as somebody else in another tab: the answer is not theirs.
        return NeedsInteraction(interaction_id or "", LOGIN)
    if it.client is None:
        raise PageError(N_("Invalid request"), N_("Nothing here needs your consent."))
    user, client_id = signed_in[1], it.client.client_id
    if not allow:
        record(db, AuditEvent.CONSENT_DENIED, ip=browser.ip, user_id=user.id, client_id=client_id)
        interactions.complete(db, interaction_id or "", browser.binding)
        return error_redirect(
            runtime,
            it.redirect_uri,
            AccessDenied("the user denied the request"),
            it.params.get("state"),
        )
    consents.grant(db, user.id, client_id, it.scopes)
    record(
        db,
        AuditEvent.CONSENT_GRANTED,
        ip=browser.ip,
        user_id=user.id,
        client_id=client_id,
        scope=" ".join(it.scopes),
    )
    interactions.step_done(db, it.row, CONSENT)
    return resume(db, runtime, interaction_id, browser)
