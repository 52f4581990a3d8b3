"""The stored sign-in interaction: what /authorize validated, the steps done, what is owed.

The login and consent pages advance an interaction by its id; `resume()` answers with the next
step owed, or the interaction's outcome, taken once (store.interactions.complete). An id opens
nothing in another browser, after 15 minutes, or after its outcome was taken.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from idp.audit.events import AuditEvent, record
from idp.errors import AccessDenied, LoginRequired, OAuth2Error, PageError
from idp.protocol.authorization import (
    Browser,
    NeedsInteraction,
    Outcome,
    authlib_grant,
    consent_owed,
    error_redirect,
    issue_code,
    signed_in_user,
)
from idp.protocol.requests import Params
from idp.runtime import Runtime
from idp.store import clients, consents, interactions
from idp.store.clients import Client
from idp.store.interactions import CONSENT, LOGIN, Interaction

EXPIRED = ("This sign-in has expired", "Go back to the application and sign in again.")


@dataclass(frozen=True)
class Pending:
    """A live interaction of this browser, with its client, for the pages that advance it."""

    row: Interaction
    client: Client
    params: Params

    @property
    def redirect_uri(self) -> str:
        return self.params.get("redirect_uri") or ""

    @property
    def scopes(self) -> list[str]:
        return (self.params.get("scope") or "").split()


def pending(db: Session, interaction_id: str | None, browser: Browser) -> Pending:
    """The interaction behind this id, only for the browser that started it, only before it
    expires and only until it is complete; otherwise an error page."""
    row = interactions.get(db, interaction_id, browser.binding)
    client = clients.get(db, row.client_id) if row is not None and row.client_id else None
    if row is None or client is None:
        raise PageError(*EXPIRED)
    return Pending(row, client, Params([(k, v) for k, v in row.params]))


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
    if (
        signed_in is None
        or (row.login_required and LOGIN not in row.steps)
        or (row.user_id is not None and row.user_id != signed_in[1].id)
    ):
        return NeedsInteraction(interaction_id, LOGIN)
    session, user = signed_in
    if row.hinted_sub is not None and row.hinted_sub != user.id:
        raise LoginRequired("the signed-in user is not the one id_token_hint names")
    if CONSENT not in row.steps and consent_owed(db, it.client, user, it.params):
        return NeedsInteraction(interaction_id, CONSENT)
    if interactions.complete(db, interaction_id, browser.binding) is None:
        raise PageError(*EXPIRED)
    grant, request = authlib_grant(db, runtime, it.params)
    return issue_code(runtime, grant, request, user, session)


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
