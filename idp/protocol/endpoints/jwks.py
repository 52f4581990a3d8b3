"""GET /jwks.json: the public keys relying parties verify our tokens with (RFC 7517 §5)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from idp import deps

router = APIRouter()


@router.get("/jwks.json", include_in_schema=False)
async def jwks_endpoint(request: Request, runtime: deps.Rt) -> Response:
    # From memory: the background worker keeps the snapshot current.
    snapshot = runtime.keys.snapshot()
    max_age = runtime.settings.jwks_max_age_seconds
    headers = {
        "Cache-Control": f"public, max-age={max_age}",
        "ETag": snapshot.etag,
        "Access-Control-Allow-Origin": "*",
    }
    if etag_matches(request.headers.get("if-none-match"), snapshot.etag):
        return Response(status_code=304, headers=headers)
    return Response(snapshot.jwks_json, media_type="application/jwk-set+json", headers=headers)


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.2: a list of tags or "*", compared weakly (W/ prefixes ignored)."""
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags
