"""Security headers on every response, as a pure ASGI middleware (no per-request task overhead).

A response that already carries a Content-Security-Policy keeps it: pages whose forms lead to a
relying party widen `form-action` to that one validated origin (Chromium applies form-action to
every redirect after a form POST).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def page_csp(form_action_origins: list[str] | None = None, scripts: bool = False) -> str:
    """A page's CSP. `scripts`: the page runs the IdP's own static script (passkeys); never
    an inline one."""
    actions = " ".join(["'self'", *(form_action_origins or [])])
    script = "script-src 'self'; " if scripts else ""
    return (
        f"default-src 'none'; {script}style-src 'self'; img-src 'self'; form-action {actions}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


def baseline_headers(https: bool) -> dict[str, str]:
    """The headers every response carries, unless it sets its own."""
    headers = {
        "x-frame-options": "DENY",
        "x-content-type-options": "nosniff",
        # same-origin, not no-referrer: with no-referrer Chromium sends `Origin: null` on
        # same-origin form posts, and the CSRF check must see the real origin to refuse null.
        "referrer-policy": "same-origin",
        "cross-origin-opener-policy": "same-origin",
        "permissions-policy": "camera=(), microphone=(), geolocation=()",
        "content-security-policy": DEFAULT_CSP,
    }
    if https:
        # RFC 6797; only when served over https, or browsers would pin a broken dev setup.
        headers["strict-transport-security"] = "max-age=63072000; includeSubDomains"
    return headers


class SecurityHeaders:
    def __init__(self, app: ASGIApp, https: bool) -> None:
        self.app = app
        self.static = [
            (name.encode(), value.encode())
            for name, value in baseline_headers(https).items()
            if name != "content-security-policy"
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers.extend(h for h in self.static if h[0] not in names)
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", DEFAULT_CSP.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
