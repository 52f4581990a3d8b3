"""/admin/users/{id}/…: disable, enable, reset MFA, end sessions, grant and revoke a role.
Each needs a sign-in within ten minutes; the destructive ones (all but enable and grant) show
what will happen first (GET) and act on the confirmation (POST)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from starlette.background import BackgroundTask
from starlette.responses import Response

from idp import deps
from idp.admin import revocation, users as user_admin
from idp.admin.pages import access
from idp.admin.pages.users import load, not_found
from idp.admin.users import InvalidUser
from idp.protocol.requests import Params
from idp.store import users as user_store
from idp.store.base import now
from idp.store.users import User

router = APIRouter()


@dataclass(frozen=True)
class Confirm:
    title: str
    message: str
    button: str


CONFIRM = {
    "disable": Confirm(
        "Disable this user",
        "The user can no longer sign in; every session ends and every token is revoked.",
        "Disable the user",
    ),
    "reset-mfa": Confirm(
        "Reset two-step verification",
        "Every second factor of the user (authenticator app, passkeys, recovery codes) is "
        "removed. Where the policy requires one, the next sign-in sets up a new one.",
        "Reset two-step verification",
    ),
    "end-sessions": Confirm(
        "End every session",
        "The user is signed out everywhere, and their refresh and access tokens are revoked.",
        "End every session",
    ),
    "revoke-role": Confirm(
        "Revoke a role",
        "The user's next tokens no longer carry the role (tokens issued already keep it until "
        "they expire).",
        "Revoke the role",
    ),
}
DIRECT = ("enable", "grant-role")


@router.get("/admin/users/{user_id}/{action}", include_in_schema=False)
def confirm_page(
    user_id: str,
    action: str,
    request: Request,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
) -> Response:
    if action not in CONFIRM:
        return not_found(request, pages)
    admin = access.page(request, runtime, pages, browser, sensitive=True)
    if isinstance(admin, Response):
        return admin
    user = load(runtime, user_id)
    if user is None:
        return not_found(request, pages)
    c = CONFIRM[action]
    role = request.query_params.get("role", "")[:64]
    context = {
        "title": f"{c.title}: {user.email}" + (f" ({role})" if role else ""),
        "message": c.message,
        "button": c.button,
        "action": f"/admin/users/{user_id}/{action}",
        "back": f"/admin/users/{user_id}",
        "hidden": {"role": role} if action == "revoke-role" else {},
    }
    return access.render(request, runtime, pages, browser, "admin/confirm.html", context)


# The time boxes the grant form offers, in seconds ("": until revoked).
GRANT_FOR = {"": 0, "3600": 3600, "28800": 28800, "86400": 86400, "604800": 604800}


def _do(action: str, user: User, params: Params, admin: access.Admin, runtime: deps.Rt) -> str:
    """Do the action in one transaction; the notice for the user's page."""
    role = (params.get("role") or "").strip()
    with deps.transaction(runtime) as db:
        target = user_store.get(db, user.id)
        assert target is not None
        if action == "disable":
            revocation.disable_user(db, user.id, admin.actor, "disabled_by_admin")
        elif action == "enable":
            revocation.enable_user(db, user.id, admin.actor)
        elif action == "reset-mfa":
            user_admin.reset_mfa(db, user.id, actor=admin.actor)
        elif action == "end-sessions":
            revocation.revoke_user(db, user.id, admin.actor, "ended_by_admin")
        elif action == "grant-role":
            boxed = GRANT_FOR.get(params.get("for") or "")
            if boxed is None:
                raise InvalidUser("choose a time box the form offers", "for")
            until = now() + boxed if boxed else None
            granted = user_admin.grant_role(db, target, role, actor=admin.actor, expires_at=until)
            if granted.pending is not None:
                return "approval-requested"
        else:
            user_admin.revoke_role(db, target, role, actor=admin.actor)
    return action


@router.post("/admin/users/{user_id}/{action}", include_in_schema=False)
def act(
    user_id: str,
    action: str,
    request: Request,
    params: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
) -> Response:
    if action not in (*CONFIRM, *DIRECT):
        return not_found(request, pages)
    back = f"/admin/users/{user_id}" + ("" if action in DIRECT else f"/{action}")
    admin = access.form(request, params, runtime, pages, browser, back, sensitive=True)
    if isinstance(admin, Response):
        return admin
    user = load(runtime, user_id)
    if user is None:
        return not_found(request, pages)
    try:
        notice = _do(action, user, params, admin, runtime)
    except InvalidUser as exc:
        return pages.error(request, "Not a valid role", str(exc), 400)
    response = access.redirect(runtime, browser, f"/admin/users/{user_id}?notice={notice}")
    if action in ("disable", "end-sessions"):
        response.background = BackgroundTask(request.app.state.worker.kick)  # logout tokens
    return response
