"""GET /jwks.json: the public keys relying parties verify our tokens with (RFC 7517 §5).

A GET or HEAD is answered before routing (documents.Documents); the route answers the rest
as routing does (405 with Allow)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from idp.protocol.endpoints.documents import JWKS_PATH

router = APIRouter()


@router.get(JWKS_PATH, include_in_schema=False)
async def jwks_endpoint(request: Request) -> Response:
    return request.app.state.published.response(request)  # type: ignore[no-any-return]
