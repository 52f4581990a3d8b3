"""/admin/clients/{id}/…: rotate the secret, disable, enable, delete. Each needs a sign-in
within ten minutes; the destructive ones show what will happen first (GET), and act on the
confirmation (POST)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from starlette.responses import Response

from idp import deps
from idp.admin import revocation
from idp.admin.pages import access, secret
from idp.admin.pages.clients import load, not_found
from idp.store import clients as client_store

router = APIRouter()

# Overlap windows an administrator may choose, in seconds, with their words (default 24 h).
OVERLAPS = {0: "None: the old secret stops now", 3600: "1 hour", 86400: "24 hours",
            7 * 86400: "7 days"}  # fmt: skip
DEFAULT_OVERLAP = 86400


@dataclass(frozen=True)
class Confirm:
    title: str
    message: str
    button: str


CONFIRM = {
    "disable": Confirm(
        "Disable this client",
        "The client will authenticate nowhere, and every token it holds is revoked at once.",
        "Disable the client",
    ),
    "delete": Confirm(
        "Delete this client",
        "The client and its registration are deleted, and every token it holds is revoked. "
        "This cannot be undone.",
        "Delete the client",
    ),
}


@router.get("/admin/clients/{client_id}/{action}", include_in_schema=False)
def confirm_page(
    client_id: str,
    action: str,
    request: Request,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
) -> Response:
    if action not in (*CONFIRM, "rotate"):
        return not_found(request, pages)
    admin = access.page(request, runtime, pages, browser, sensitive=True)
    if isinstance(admin, Response):
        return admin
    client = load(runtime, client_id)
    if client is None:
        return not_found(request, pages)
    back = f"/admin/clients/{client_id}"
    if action == "rotate":
        context: dict[str, object] = {
            "client": client,
            "overlaps": OVERLAPS,
            "default": DEFAULT_OVERLAP,
        }
        name = "admin/clients/rotate.html"
        return access.render(request, runtime, pages, browser, name, context)
    c = CONFIRM[action]
    context = {
        "title": f"{c.title}: {client.name}",
        "message": c.message,
        "button": c.button,
        "action": f"{back}/{action}",
        "back": back,
        "hidden": {},
    }
    return access.render(request, runtime, pages, browser, "admin/confirm.html", context)


@router.post("/admin/clients/{client_id}/rotate", include_in_schema=False)
def rotate(
    client_id: str,
    request: Request,
    params: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
) -> Response:
    back = f"/admin/clients/{client_id}/rotate"
    admin = access.form(request, params, runtime, pages, browser, back, sensitive=True)
    if isinstance(admin, Response):
        return admin
    chosen = params.get("overlap_seconds") or ""
    overlap = int(chosen) if chosen.isdigit() and int(chosen) in OVERLAPS else DEFAULT_OVERLAP
    try:
        with deps.transaction(runtime) as db:
            new = revocation.rotate_secret(db, client_id, admin.actor, overlap)
            client = client_store.get(db, client_id)
    except revocation.NoSuchClient:
        return not_found(request, pages)
    except revocation.NotASecretClient as exc:
        return pages.error(request, "This client has no secret", str(exc), 409)
    if client is None:
        return not_found(request, pages)
    return secret.shown_once(request, runtime, pages, browser, client, new)


@router.post("/admin/clients/{client_id}/{action}", include_in_schema=False)
def act(
    client_id: str,
    action: str,
    request: Request,
    params: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
) -> Response:
    if action not in ("disable", "enable", "delete"):
        return not_found(request, pages)
    back = f"/admin/clients/{client_id}" + ("" if action == "enable" else f"/{action}")
    admin = access.form(request, params, runtime, pages, browser, back, sensitive=True)
    if isinstance(admin, Response):
        return admin
    try:
        with deps.transaction(runtime) as db:
            if action == "disable":
                revocation.disable_client(db, client_id, admin.actor, "disabled_by_admin")
            elif action == "enable":
                revocation.enable_client(db, client_id, admin.actor)
            else:
                revocation.delete_client(db, client_id, admin.actor)
    except revocation.NoSuchClient:
        return not_found(request, pages)
    if action == "delete":
        return access.redirect(runtime, browser, "/admin/clients?notice=deleted")
    return access.redirect(runtime, browser, f"/admin/clients/{client_id}?notice={action}d")
