"""/admin/api/audit: search the audit trail by actor, subject, event and time, newest first."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from idp import deps
from idp.admin import audit as service
from idp.admin.api import schemas
from idp.admin.api.auth import Token, authorize
from idp.admin.api.errors import Invalid
from idp.admin.listing import DEFAULT_LIMIT, MAX_LIMIT, InvalidCursor

router = APIRouter(prefix="/audit", tags=["audit"])

Time = Annotated[int | None, Query(ge=0, description="Unix time")]


@router.get("", response_model=schemas.EventPage, summary="Search the audit trail")
def search(
    token: Token,
    runtime: deps.Rt,
    actor: Annotated[
        str | None, Query(max_length=128, description='"cli", "user:ID" or "client:ID"')
    ] = None,
    subject: Annotated[
        str | None, Query(max_length=64, description="a user id or a client id")
    ] = None,
    event: Annotated[
        str | None, Query(max_length=64, description="an event type, e.g. login.failed")
    ] = None,
    since: Time = None,
    until: Time = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """`since` is inclusive, `until` exclusive."""
    with deps.read_transaction(runtime) as db:
        authorize(db, token, write=False)
        try:
            page = service.search_events(
                db,
                actor=actor,
                subject=subject,
                event=event,
                since=since,
                until=until,
                cursor=cursor,
                limit=limit,
            )
        except service.UnknownEvent as exc:
            raise Invalid({"event": str(exc)}) from None
        except InvalidCursor as exc:
            raise Invalid({"cursor": str(exc)}) from None
        return {
            "items": [service.describe_event(r) for r in page.items],
            "next_cursor": page.next_cursor,
        }
