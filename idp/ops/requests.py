"""Each request's id, its count and latency (metrics) and, with IDP_ACCESS_LOG, its line: a
pure ASGI middleware (no task per request, unlike BaseHTTPMiddleware).

`X-Request-ID` is taken from the request when it is well-formed (a proxy's or a client's id,
so a line here can be matched with theirs), else made here; it is returned on the response and
is on every log line written while the request runs.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from idp.ops import logs, metrics

log = logging.getLogger("idp.request")
HEADER = b"x-request-id"


class RequestContext:
    def __init__(self, app: ASGIApp, access_log: bool) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        presented = next((v for k, v in scope["headers"] if k == HEADER), None)
        context, token = logs.begin_request(presented.decode("latin-1") if presented else None)
        header = (HEADER, context["request_id"].encode())
        status = 500  # what the server's error handler sends when the app raises
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route, method = route_of(scope), scope["method"]
            metrics.request_answered(route, method, status, seconds)
            if self.access_log:
                line = {
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                }
                log.info("request", extra={"fields": line})
            logs.end_request(token)


def route_of(scope: Scope) -> str:
    """The route's template (/clients/{client_id}), never the path itself: an id in a path is
    the caller's input, and a log or a metric keyed by route stays small."""
    root = scope.get("root_path", "")
    template = getattr(scope.get("route"), "path", None)
    if template:
        return str(root + template)
    if "endpoint" in scope and not scope.get("path_params"):
        return str(scope["path"])  # a plain route without parameters (/token): its own path
    if root:
        return f"{root}/{{path}}"  # a mounted application (/static)
    return "unmatched"
