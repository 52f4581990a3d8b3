"""An administrator signed in with password and TOTP, and the admin pages' forms, for tests."""

from __future__ import annotations

import time

import httpx

from idp.store.roles import ADMIN
from tests.helpers import Harness, form_fields
from tests.mfa_helpers import answer_factor, enrol_totp, totp_code
from tests.token_helpers import sql

ADMIN_EMAIL = "admin@example.com"


def sign_in_admin(idp: Harness, email: str = ADMIN_EMAIL) -> str:
    """A new admin with an authenticator app, signed in with both factors; their user id."""
    user_id = idp.user(email=email, is_admin=True)
    secret = enrol_totp(idp, user_id)
    done = answer_factor(idp, idp.login(email=email), totp_code(secret))
    assert done.status_code == 303, done.text
    idp.follow_local(done)
    return user_id


def sign_in_without_mfa(idp: Harness, email: str = ADMIN_EMAIL) -> str:
    """A user signed in with a password only, who holds the admin role since."""
    user_id = idp.user(email=email)
    assert idp.login(email=email).status_code == 303
    sql(
        idp,
        "INSERT INTO user_roles (user_id, role, granted_at) VALUES (:u, :r, 0)",
        u=user_id,
        r=ADMIN,
    )
    return user_id


def age_sign_in(idp: Harness, seconds: int) -> None:
    """Every session signed in `seconds` ago."""
    sql(idp, "UPDATE sessions SET auth_time = :t", t=int(time.time()) - seconds)


def form_of(idp: Harness, path: str) -> dict[str, str]:
    page = idp.http.get(path)
    assert page.status_code == 200, (path, page.status_code, page.headers.get("location"))
    return form_fields(page.text)


def post_form(
    idp: Harness, path: str, action: str | None = None, **values: object
) -> httpx.Response:
    """Open the page at `path`, fill its form and send it to `action` (or `path`)."""
    fields: dict[str, object] = {**form_of(idp, path), **values}
    return idp.http.post(action or path, data=fields)  # type: ignore[arg-type]


def replace_cookie(idp: Harness, name: str, value: str) -> None:
    """The browser now holds `value` as its cookie `name` (for this host)."""
    for cookie in idp.http.cookies.jar:
        if cookie.name == name:
            cookie.value = value
            return
    idp.http.cookies.set(name, value)


def actors(idp: Harness, event: str) -> list[str]:
    """Who did each `event` (the audit actor), oldest first."""
    rows = sql(idp, "SELECT actor FROM audit_events WHERE event = :e ORDER BY id", e=event)
    return [actor for (actor,) in rows]
