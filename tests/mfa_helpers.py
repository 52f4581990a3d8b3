"""Second factors in tests: a user's TOTP set up directly, codes for any time step, and the
factor page answered as a browser does."""

from __future__ import annotations

import time

import httpx
import pyotp

from idp.authn import mfa
from idp.store import factors, users
from tests.helpers import Harness, form_fields


def totp_code(secret: str, steps: int = 0) -> str:
    """The code of the time step `steps` away from now."""
    return pyotp.TOTP(secret).at(time.time() + steps * mfa.TOTP_PERIOD)


def enrol_totp(idp: Harness, user_id: str) -> str:
    """Give the user a confirmed authenticator app; returns its secret. Confirmed with the
    previous step's code, so the current step's code is still unused for a sign-in."""
    with idp.runtime.sessions.begin() as db:
        user = users.get(db, user_id)
        assert user is not None
        secret = mfa.start_totp(db, idp.runtime.sealer, user, "Test").secret
        step = int(time.time() // mfa.TOTP_PERIOD)
        confirmed = mfa.confirm_totp(db, idp.runtime.sealer, user, totp_code(secret, -1), None)
        if not confirmed and int(time.time() // mfa.TOTP_PERIOD) != step:
            # A step ended in between: the previous step's code was two steps old by then.
            confirmed = mfa.confirm_totp(db, idp.runtime.sealer, user, totp_code(secret, -1), None)
        assert confirmed
    return secret


def recovery_codes(idp: Harness, user_id: str) -> list[str]:
    with idp.runtime.sessions.begin() as db:
        return mfa.new_recovery_codes(db, user_id, None)


def last_step(idp: Harness, user_id: str) -> int:
    with idp.runtime.reads.begin() as db:
        row = factors.totp_of(db, user_id)
        return row.last_step if row else -1


def answer_factor(
    idp: Harness, response: httpx.Response, code: str, method: str | None = None
) -> httpx.Response:
    """At a redirect to /login/factor: open the page and send the code."""
    location = response.headers["location"]
    assert location.startswith("/login/factor?"), location
    page = idp.http.get(location + (f"&method={method}" if method else ""))
    assert page.status_code == 200, page.text
    fields = form_fields(page.text)
    fields["code"] = code
    return idp.http.post("/login/factor", data=fields)
