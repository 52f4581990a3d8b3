"""/admin: the dashboard (counts, and the recent security events)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from idp import deps
from idp.admin.pages import access
from idp.store import clients, keys

router = APIRouter()


@router.get("/admin", include_in_schema=False)
def dashboard(
    request: Request, runtime: deps.Rt, pages: deps.Pages, browser: deps.Browser
) -> Response:
    admin = access.page(request, runtime, pages, browser)
    if isinstance(admin, Response):
        return admin
    with deps.read_transaction(runtime) as db:
        counts = {
            "Clients": len(clients.all_clients(db)),
            "Signing keys": len(keys.published(db)),
        }
    context = {"counts": counts, "events": [], "admin": admin}
    return access.render(request, runtime, pages, browser, "admin/dashboard.html", context)
