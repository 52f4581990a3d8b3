"""Pages of the signed-in person's own account: who is signed in, and whether the sign-in is
fresh enough for a change that matters (a new password, a second factor added or removed).

A page that is not signed in, or not freshly, sends the person through a sign-in of the IdP's
own (every factor the policy asks for) and back to the page. A form POST whose sign-in went
stale meanwhile is refused with a page: a POST cannot be replayed through a redirect.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session
from starlette.responses import Response

from idp import deps
from idp.authn import sessions
from idp.protocol import interaction
from idp.protocol.authorization import Browser
from idp.protocol.endpoints.authorize import respond
from idp.runtime import Runtime
from idp.store import users
from idp.store.base import now
from idp.store.sessions import BrowserSession
from idp.store.users import User

# How recent a sign-in must be for a change to the account's credentials.
FRESH_SECONDS = 300


@dataclass(frozen=True)
class SignedIn:
    session: BrowserSession
    user: User

    @property
    def fresh(self) -> bool:
        return now() - self.session.auth_time <= FRESH_SECONDS


def signed_in(runtime: Runtime, db: Session, browser: Browser) -> SignedIn | None:
    """The live session of this browser and its user (untouched), or None."""
    session = sessions.current(db, browser.session_cookie, runtime.settings, touch=False)
    user = users.get(db, session.user_id) if session else None
    if session is None or user is None or user.disabled:
        return None
    return SignedIn(session, user)


def sign_in_first(
    runtime: Runtime,
    browser: Browser,
    return_path: str,
    status: int = 302,
    db: Session | None = None,
) -> Response:
    """Send the person through a (fresh) sign-in, then back to `return_path` (303 after a
    POST: the browser follows with a GET, and the form is not sent again). `db`: the request's
    own write transaction, if it has one (a second one would wait for it on SQLite)."""
    if db is not None:
        step = interaction.start_own(db, browser, return_path, login_required=True)
    else:
        with deps.transaction(runtime) as own:
            step = interaction.start_own(own, browser, return_path, login_required=True)
    return respond(step, runtime, browser, status)


def page_signed_in(
    runtime: Runtime, browser: Browser, return_path: str, fresh: bool = False
) -> SignedIn | Response:
    """For a GET: who is signed in (freshly, if `fresh`), or the redirect to sign in first."""
    with deps.read_transaction(runtime) as db:
        who = signed_in(runtime, db, browser)
    if who is None or (fresh and not who.fresh):
        return sign_in_first(runtime, browser, return_path)
    return who
