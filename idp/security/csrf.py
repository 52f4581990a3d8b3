"""CSRF protection for the HTML forms: a token bound to the browser session, plus an Origin check.

The token is an HMAC, under a key derived from the key-encryption key, of two cookies: a random
anchor (host-only, `__Host-` outside development) and the session cookie. A cross-site form can
make the browser send both cookies but cannot read them to fill the field; a token minted for
one session does not verify under another; and both login and logout rotate the anchor, so no
token outlives the session it was made for. Stateless, so any worker verifies any token.

The Origin header, when present, must be this issuer's origin. `Origin: null` is refused: pages
carry `Referrer-Policy: same-origin`, so a browser sends a real Origin on our own forms.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from idp.security import cookies
from idp.security.secrets import b64url_encode, new_secret, same
from idp.settings import Settings


def _mac(key: bytes, anchor: str, session: str | None) -> str:
    message = f"{anchor}\n{session or ''}".encode()
    return b64url_encode(hmac.new(key, message, hashlib.sha256).digest())


def _anchor(request: Request, settings: Settings) -> str | None:
    value = cookies.read(request, settings, cookies.CSRF)
    return value if value and 20 <= len(value) <= 128 else None


def token_for(request: Request, settings: Settings, key: bytes) -> tuple[str, str | None]:
    """The form token for this browser and session, and the anchor to set as a cookie when the
    browser had none."""
    anchor = _anchor(request, settings)
    fresh = None if anchor else new_secret()
    session = cookies.read(request, settings, cookies.SESSION)
    return _mac(key, anchor or str(fresh), session), fresh


def attach(response: Response, settings: Settings, anchor: str | None) -> None:
    if anchor:
        cookies.set_cookie(response, settings, cookies.CSRF, anchor)


def rotate(response: Response, settings: Settings) -> None:
    """A new anchor (at login and logout): every token made before no longer verifies."""
    cookies.set_cookie(response, settings, cookies.CSRF, new_secret())


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def verify(request: Request, settings: Settings, key: bytes, submitted: str | None) -> bool:
    origin = request.headers.get("origin")
    if origin is not None and origin.lower() != _origin(settings.issuer):
        return False  # another site, or `null` (a sandboxed or privacy-stripped origin)
    anchor = _anchor(request, settings)
    if not anchor or not submitted or len(submitted) > 128:
        return False
    session = cookies.read(request, settings, cookies.SESSION)
    return same(_mac(key, anchor, session), submitted)
