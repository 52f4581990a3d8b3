"""CSRF protection for the HTML forms: a double-submit token plus an Origin check.

The token lives in a host-only cookie (`__Host-` outside development) and in a hidden field; a
cross-site form can send the cookie but cannot read it to fill the field. The Origin header, when
the browser sends it, must be this issuer's origin.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from idp.security import cookies
from idp.security.secrets import new_secret, same
from idp.settings import Settings


def token_for(request: Request, settings: Settings) -> tuple[str, bool]:
    """The browser's CSRF token, and whether it is new (and must be set as a cookie)."""
    existing = cookies.read(request, settings, cookies.CSRF)
    if existing and 20 <= len(existing) <= 128:
        return existing, False
    return new_secret(), True


def attach(response: Response, settings: Settings, token: str, is_new: bool) -> None:
    if is_new:
        cookies.set_cookie(response, settings, cookies.CSRF, token)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def verify(request: Request, settings: Settings, submitted: str | None) -> bool:
    origin = request.headers.get("origin")
    if origin is not None and origin != "null" and origin.lower() != _origin(settings.issuer):
        return False
    expected = cookies.read(request, settings, cookies.CSRF)
    return bool(expected and submitted and same(expected, submitted))
