"""/admin/users: find a user, a user's detail (roles, factors, sessions, disabled), and the
form to create one. The actions on a user are in user_actions.py."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from idp import deps
from idp.admin import users as user_admin
from idp.admin.listing import InvalidCursor
from idp.admin.pages import access
from idp.admin.users import InvalidUser, create_user
from idp.runtime import Runtime
from idp.store import users as user_store
from idp.store.users import User
from idp.web.templating import Templates

router = APIRouter()


@router.get("/admin/users", include_in_schema=False)
def user_list(
    request: Request, runtime: deps.Rt, pages: deps.Pages, browser: deps.Browser
) -> Response:
    admin = access.page(request, runtime, pages, browser)
    if isinstance(admin, Response):
        return admin
    q = request.query_params.get("q", "").strip()[:320]
    role = request.query_params.get("role", "").strip()[:64]
    try:
        with deps.read_transaction(runtime) as db:
            found = user_admin.search_users(
                db, q=q or None, role=role or None, cursor=request.query_params.get("cursor")
            )
    except InvalidCursor:
        return pages.error(request, "Invalid page", "This list has no such page.", 400)
    context = {"users": found.items, "q": q, "role": role, "next_cursor": found.next_cursor}
    return access.render(request, runtime, pages, browser, "admin/users/list.html", context)


def load(runtime: Runtime, user_id: str) -> User | None:
    with deps.read_transaction(runtime) as db:
        return user_store.get(db, user_id)


def not_found(request: Request, pages: Templates) -> Response:
    return pages.error(request, "User not found", "There is no user with this id.", 404)


@router.get("/admin/users/new", include_in_schema=False)
def new_user_form(
    request: Request, runtime: deps.Rt, pages: deps.Pages, browser: deps.Browser
) -> Response:
    admin = access.page(request, runtime, pages, browser, sensitive=True)
    if isinstance(admin, Response):
        return admin
    context = {"values": {"email": "", "name": ""}, "error": None}
    return access.render(request, runtime, pages, browser, "admin/users/new.html", context)


@router.post("/admin/users/new", include_in_schema=False)
def create(
    request: Request,
    params: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
) -> Response:
    admin = access.form(request, params, runtime, pages, browser, "/admin/users/new", True)
    if isinstance(admin, Response):
        return admin
    email, name = (params.get("email") or "").strip(), (params.get("name") or "").strip()
    try:
        with deps.transaction(runtime) as db:
            user = create_user(
                db,
                runtime.passwords,
                runtime.settings,
                email=email,
                password=params.get("password") or "",
                name=name or None,
            )
            user_id = user.id
    except InvalidUser as exc:
        context = {"values": {"email": email, "name": name}, "error": str(exc)}
        name_ = "admin/users/new.html"
        return access.render(request, runtime, pages, browser, name_, context, status=422)
    return access.redirect(runtime, browser, f"/admin/users/{user_id}?notice=created")


@router.get("/admin/users/{user_id}", include_in_schema=False)
def user_detail(
    user_id: str, request: Request, runtime: deps.Rt, pages: deps.Pages, browser: deps.Browser
) -> Response:
    admin = access.page(request, runtime, pages, browser)
    if isinstance(admin, Response):
        return admin
    with deps.read_transaction(runtime) as db:
        user = user_store.get(db, user_id)
        facts = user_admin.describe_user(db, user, runtime.settings) if user else None
    if facts is None:
        return not_found(request, pages)
    context = {"facts": facts, "user": user, "notice": access.notice(request)}
    return access.render(request, runtime, pages, browser, "admin/users/detail.html", context)
