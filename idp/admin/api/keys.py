"""/admin/api/keys: the signing keys, their rotation and their emergency revocation. Every
worker picks a change up within IDP_KEY_REFRESH_SECONDS."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from idp import deps
from idp.admin import keys as service
from idp.admin.api import schemas
from idp.admin.api.auth import Token, authorize
from idp.admin.api.errors import Invalid, NotFound

router = APIRouter(prefix="/keys", tags=["keys"])


@router.get("", response_model=list[schemas.KeyOut], summary="List signing keys")
def list_keys(token: Token, runtime: deps.Rt) -> list[dict[str, object]]:
    """Public parts only: a private key never leaves the server."""
    with deps.read_transaction(runtime) as db:
        authorize(db, token, write=False)
        return [service.describe_key(k) for k in service.list_keys(db)]


@router.post(
    "",
    status_code=201,
    response_model=schemas.KeyOut,
    summary="Rotate: stage a new key (it signs after the pre-publication window), or sign now",
)
def rotate_key(
    token: Token, runtime: deps.Rt, body: schemas.KeyRotation | None = None
) -> dict[str, object]:
    rotation = body or schemas.KeyRotation()
    with deps.transaction(runtime) as db:
        caller = authorize(db, token, write=True)
        try:
            key = service.rotate_key(
                db,
                runtime.sealer,
                runtime.settings,
                rotation.alg,
                now=rotation.now,
                actor=caller.actor,
            )
        except service.AlgorithmNotEnabled as exc:
            raise Invalid({"alg": str(exc)}) from None
        return service.describe_key(key)


@router.post(
    "/{kid}/revoke",
    response_model=schemas.KeyRevoked,
    summary="Withdraw a key at once (emergency); a new one signs if it was signing",
)
def revoke_key(kid: str, token: Token, runtime: deps.Rt) -> dict[str, Any]:
    with deps.transaction(runtime) as db:
        caller = authorize(db, token, write=True)
        try:
            replacement = service.revoke_key(
                db, runtime.sealer, runtime.settings, kid, actor=caller.actor
            )
        except LookupError:
            raise NotFound("published key") from None
        return {
            "kid": kid,
            "replacement": service.describe_key(replacement) if replacement else None,
        }
