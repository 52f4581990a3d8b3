"""/admin/approvals: the changes that wait for a second administrator (the admin role for a
user, an admin API scope for a client), with who asked, what, and until when; Approve and
Reject are POST forms that need a sign-in within ten minutes, as every sensitive action."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from idp import deps
from idp.admin import approvals as service
from idp.admin.listing import InvalidCursor
from idp.admin.pages import access

router = APIRouter()
PAGE_SIZE = 50


@router.get("/admin/approvals", include_in_schema=False)
def approval_list(
    request: Request, runtime: deps.Rt, pages: deps.Pages, browser: deps.Browser
) -> Response:
    admin = access.page(request, runtime, pages, browser)
    if isinstance(admin, Response):
        return admin
    try:
        with deps.read_transaction(runtime) as db:
            found = service.list_pending(
                db, cursor=request.query_params.get("cursor"), limit=PAGE_SIZE
            )
    except InvalidCursor:
        return pages.error(request, "Invalid page", "This list has no such page.", 400)
    changes = [
        {**service.describe(c), "own": admin.actor == c.requested_by or admin.user.id == c.user_id}
        for c in found.items
    ]
    context = {
        "changes": changes,
        "next_cursor": found.next_cursor,
        "notice": access.notice(request),
    }
    return access.render(request, runtime, pages, browser, "admin/approvals.html", context)


@router.post("/admin/approvals/{change_id}/{decision}", include_in_schema=False)
def decide(
    change_id: str,
    decision: str,
    request: Request,
    params: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
) -> Response:
    if decision not in ("approve", "reject"):
        return pages.error(request, "Not found", "There is no such page.", 404)
    back = "/admin/approvals"
    admin = access.form(request, params, runtime, pages, browser, back, sensitive=True)
    if isinstance(admin, Response):
        return admin
    try:
        with deps.transaction(runtime) as db:
            if decision == "approve":
                service.approve(db, change_id, actor=admin.actor)
            else:
                service.reject(db, change_id, actor=admin.actor)
    except service.UnknownChange:
        return pages.error(request, "Change not found", "There is no such pending change.", 404)
    except service.NotAllowed as exc:
        return pages.error(request, "Not allowed", str(exc), 403)
    except service.NotPending as exc:
        return pages.error(request, "Not pending", str(exc), 409)
    notice = "approved" if decision == "approve" else "rejected"
    return access.redirect(runtime, browser, f"/admin/approvals?notice={notice}")
