"""/admin/api/approvals: the changes that wait for a second administrator (the admin role, an
admin API scope), and approving or rejecting them. Only an administrator's own token (a person
signed in with two factors, `idp:admin`) decides; an admin service may ask, never approve."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.encoders import jsonable_encoder
from sqlalchemy.orm import Session
from starlette.responses import JSONResponse

from idp import deps
from idp.admin import approvals as service
from idp.admin.api import schemas
from idp.admin.api.auth import AdminToken, Token, authorize
from idp.admin.api.errors import Conflict, Forbidden, Invalid, NotFound
from idp.admin.listing import DEFAULT_LIMIT, MAX_LIMIT, InvalidCursor
from idp.errors import NO_STORE
from idp.store.approvals import PendingChange

router = APIRouter(prefix="/approvals", tags=["approvals"])

Cursor = Annotated[str | None, Query(max_length=512)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


def pending_response(change: PendingChange, **around: Any) -> JSONResponse:
    """202 Accepted: the change waits for approval (`around` puts it beside other parts)."""
    out = service.describe(change)
    body = {**around, "pending_change": out} if around else out
    return JSONResponse(jsonable_encoder(body), status_code=202, headers=NO_STORE)


def _change(db: Session, change_id: str) -> PendingChange:
    try:
        return service.get_change(db, change_id)
    except service.UnknownChange:
        raise NotFound("pending change") from None


@router.get("", response_model=schemas.PendingChangePage, summary="List pending changes")
def list_pending(
    token: Token, runtime: deps.Rt, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> dict[str, Any]:
    """Oldest request first; only those still waiting (not decided, not expired)."""
    with deps.read_transaction(runtime) as db:
        authorize(db, token, write=False)
        try:
            page = service.list_pending(db, cursor=cursor, limit=limit)
        except InvalidCursor as exc:
            raise Invalid({"cursor": str(exc)}) from None
        return {
            "items": [service.describe(c) for c in page.items],
            "next_cursor": page.next_cursor,
        }


@router.get("/{change_id}", response_model=schemas.PendingChangeOut, summary="Show a change")
def show_pending(change_id: str, token: Token, runtime: deps.Rt) -> dict[str, Any]:
    with deps.read_transaction(runtime) as db:
        authorize(db, token, write=False)
        return service.describe(_change(db, change_id))


def _decide(change_id: str, token: AdminToken, runtime: deps.Rt, approve: bool) -> dict[str, Any]:
    with deps.transaction(runtime) as db:
        caller = authorize(db, token, write=True)
        _change(db, change_id)
        try:
            if approve:
                change = service.approve(db, change_id, actor=caller.actor)
            else:
                change = service.reject(db, change_id, actor=caller.actor)
        except service.NotAllowed as exc:
            raise Forbidden(str(exc)) from None
        except service.NotPending as exc:
            raise Conflict(str(exc)) from None
        return service.describe(change)


@router.post(
    "/{change_id}/approve",
    response_model=schemas.PendingChangeOut,
    summary="Approve a change: it applies now",
)
def approve(change_id: str, token: Token, runtime: deps.Rt) -> dict[str, Any]:
    """403 for a service's token, the requester's or the target user's own; 409 for a change
    decided already or expired."""
    return _decide(change_id, token, runtime, approve=True)


@router.post(
    "/{change_id}/reject", response_model=schemas.PendingChangeOut, summary="Reject a change"
)
def reject(change_id: str, token: Token, runtime: deps.Rt) -> dict[str, Any]:
    return _decide(change_id, token, runtime, approve=False)
