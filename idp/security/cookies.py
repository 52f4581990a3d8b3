"""Cookie names and attributes: `__Host-` + Secure everywhere but a localhost http issuer.

A `__Host-` cookie must be Secure, host-only and Path=/, so a sibling subdomain cannot plant or
overwrite it. Browsers refuse Secure cookies over plain http, so development on
http://localhost drops both the prefix and Secure; every other issuer keeps them.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from idp.settings import Settings

SESSION = "idp_session"
CSRF = "idp_csrf"
# Binds sign-in interactions to the browser that started them (not the CSRF cookie).
INTERACTION = "idp_interaction"
# Names the accounts that signed in on this browser, for the sign-in throttle (security.devices).
DEVICE = "idp_device"


def name(settings: Settings, base: str) -> str:
    return base if settings.is_development else "__Host-" + base


def read(request: Request, settings: Settings, base: str) -> str | None:
    return request.cookies.get(name(settings, base))


def set_cookie(
    response: Response, settings: Settings, base: str, value: str, max_age: int | None = None
) -> None:
    """A cookie for this host only, HttpOnly, SameSite=Lax; a browser-session cookie unless
    max_age says how long it lives."""
    response.set_cookie(
        name(settings, base),
        value,
        max_age=max_age,
        path="/",
        secure=not settings.is_development,
        httponly=True,
        samesite="lax",
    )


def clear(response: Response, settings: Settings, base: str) -> None:
    response.delete_cookie(
        name(settings, base),
        path="/",
        secure=not settings.is_development,
        httponly=True,
        samesite="lax",
    )
