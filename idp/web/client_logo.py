"""GET /clients/{client_id}/logo: a client's logo, served from this origin.

The image was fetched once, at registration, and its type read from its bytes (outbound.py).
Pages link to it as /clients/{client_id}/logo?v={logo_sha256}: the CSP's `img-src 'self'`
holds, and no browser ever contacts the client's host (which would learn who is signing in).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, Response

from idp import deps
from idp.store import clients

router = APIRouter()

MAX_CLIENT_ID = 64  # the clients.client_id column: anything longer names no client
CACHE_CONTROL = "public, max-age=86400"
# Opened on its own, the image gets no script, no plugin and no same-origin rights.
IMAGE_CSP = "default-src 'none'; sandbox"


@router.get("/clients/{client_id}/logo", include_in_schema=False)
def client_logo(client_id: str, request: Request, db: deps.ReadDb) -> Response:
    # The Session opens its connection at the first query, so an overlong id costs none.
    if len(client_id) > MAX_CLIENT_ID:
        return _not_found()
    logo = clients.logo(db, client_id)
    if logo is None:
        return _not_found()
    etag = f'"{logo.sha256}"'
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)  # RFC 9110 §15.4.5
    headers |= {"Content-Security-Policy": IMAGE_CSP, "Content-Disposition": "inline"}
    return Response(logo.image, media_type=logo.content_type, headers=headers)


def _matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.2: If-None-Match uses the weak comparison, and "*" matches any tag."""
    if if_none_match is None:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags


def _not_found() -> Response:
    return PlainTextResponse("no such logo\n", status_code=404)
