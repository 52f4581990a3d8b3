"""/admin/roles: every role anyone holds, with how many hold it (the holders are the users
list filtered by the role), and who holds admin rights until when."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from idp import deps
from idp.admin import users as user_admin
from idp.admin.pages import access

router = APIRouter()


@router.get("/admin/roles", include_in_schema=False)
def role_list(
    request: Request, runtime: deps.Rt, pages: deps.Pages, browser: deps.Browser
) -> Response:
    admin = access.page(request, runtime, pages, browser)
    if isinstance(admin, Response):
        return admin
    with deps.read_transaction(runtime) as db:
        holders = user_admin.role_holders(db)
        admins = user_admin.admin_rights(db)
    context = {"roles": holders, "admins": admins}
    return access.render(request, runtime, pages, browser, "admin/roles.html", context)
