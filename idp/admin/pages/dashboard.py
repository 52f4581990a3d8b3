"""/admin: the dashboard (counts, and the recent security events)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from idp import deps
from idp.admin import approvals, audit
from idp.admin.pages import access

router = APIRouter()
RECENT = 20


@router.get("/admin", include_in_schema=False)
def dashboard(
    request: Request, runtime: deps.Rt, pages: deps.Pages, browser: deps.Browser
) -> Response:
    admin = access.page(request, runtime, pages, browser)
    if isinstance(admin, Response):
        return admin
    with deps.read_transaction(runtime) as db:
        c = audit.counts(db)
        events = audit.recent_security_events(db, RECENT)
        waiting = approvals.pending_count(db)
    counts = {
        "Clients": c.clients,
        "Disabled clients": c.disabled_clients,
        "Users": c.users,
        "Administrators": c.admins,
        "Disabled users": c.disabled_users,
        "Signing keys": c.published_keys,
        "Pending approvals": waiting,
    }
    context = {"counts": counts, "events": events}
    return access.render(request, runtime, pages, browser, "admin/dashboard.html", context)
