"""The published documents, JWKS (RFC 7517 §5) and provider metadata (OIDC Discovery 1.0 §4,
RFC 8414 §3), answered from pre-encoded bytes with their ETag.

Both change only when keys or settings do, and relying parties fetch them often: a GET or HEAD
is answered by a pure ASGI middleware in front of the router, so it costs no routing, no
dependency resolution and no Response object (the middlewares outside it still add the request
id, the security headers and the metrics). Every other method reaches the routes in jwks.py and
discovery.py, which answer 405 as routing does, or the same document.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from idp.keys.ring import KeyRing

JWKS_PATH = "/jwks.json"
DISCOVERY_PATHS = frozenset(
    {"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"}
)
DISCOVERY_MAX_AGE = 3600


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.2: a list of tags or "*", compared weakly (W/ prefixes ignored)."""
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


def answer(
    body: bytes, etag: str, media_type: str, max_age: int, if_none_match: str | None
) -> Answer:
    """200 with the document, or 304 (RFC 9110 §15.4.5) when the client holds this version;
    cacheable, and readable by a browser-based relying party on another origin."""
    headers = [
        (b"cache-control", f"public, max-age={max_age}".encode()),
        (b"etag", etag.encode()),
        (b"access-control-allow-origin", b"*"),
    ]
    if etag_matches(if_none_match, etag):
        return Answer(304, headers, b"")
    headers += [
        (b"content-type", media_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    return Answer(200, headers, body)


class Published:
    """The documents as this process publishes them."""

    def __init__(self, keys: KeyRing, discovery: bytes, jwks_max_age: int) -> None:
        self.keys = keys
        self.discovery = discovery
        self.discovery_etag = etag_of(discovery)
        self.jwks_max_age = jwks_max_age

    def jwks(self, if_none_match: str | None) -> Answer:
        # From memory: the background worker keeps the snapshot current.
        snapshot = self.keys.snapshot()
        return answer(
            snapshot.jwks_json,
            snapshot.etag,
            "application/jwk-set+json",
            self.jwks_max_age,
            if_none_match,
        )

    def metadata(self, if_none_match: str | None) -> Answer:
        return answer(
            self.discovery,
            self.discovery_etag,
            "application/json",
            DISCOVERY_MAX_AGE,
            if_none_match,
        )

    def at(self, path: str, if_none_match: str | None) -> Answer:
        return self.jwks(if_none_match) if path == JWKS_PATH else self.metadata(if_none_match)

    def response(self, request: Request) -> Response:
        """The answer as a Response, for the routes (which only a HEAD or GET that bypassed
        the middleware reaches)."""
        found = self.at(request.url.path, request.headers.get("if-none-match"))
        response = Response(found.body, status_code=found.status)
        response.raw_headers = found.headers
        return response


class Documents:
    """The answer to GET and HEAD of the published documents, before routing."""

    def __init__(self, app: ASGIApp, published: Published) -> None:
        self.app = app
        self.published = published

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if (
            scope["type"] != "http"
            or scope["method"] not in ("GET", "HEAD")
            or (path != JWKS_PATH and path not in DISCOVERY_PATHS)
        ):
            await self.app(scope, receive, send)
            return
        if_none_match = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"if-none-match"), None
        )
        found = self.published.at(path, if_none_match)
        scope["endpoint"] = self  # the metrics and the access log name the route by its path
        await send(
            {"type": "http.response.start", "status": found.status, "headers": found.headers}
        )
        body = b"" if scope["method"] == "HEAD" else found.body
        await send({"type": "http.response.body", "body": body})
