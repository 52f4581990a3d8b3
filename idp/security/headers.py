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


def page_csp(form_action_origins: list[str] | None = None) -> str:
    actions = " ".join(["'self'", *(form_action_origins or [])])
    return (
        f"default-src 'none'; style-src 'self'; img-src 'self'; form-action {actions}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


class SecurityHeaders:
    def __init__(self, app: ASGIApp, https: bool) -> None:
        self.app = app
        static: list[tuple[bytes, bytes]] = [
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
        ]
        if https:
            # RFC 6797; only when served over https, or browsers would pin a broken dev setup.
            static.append((b"strict-transport-security", b"max-age=63072000; includeSubDomains"))
        self.static = static

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
