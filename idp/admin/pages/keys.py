"""/admin/keys: the signing keys (state, dates), staging a rotation, and revoking a key after a
confirmation. Both changes need a sign-in within ten minutes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from idp import deps
from idp.admin import keys as key_admin
from idp.admin.pages import access
from idp.store import keys as key_store

router = APIRouter()
REVOKE_MESSAGE = (
    "The key leaves /jwks.json at once, so every token it signed stops verifying. If it is "
    "the signing key, a staged key (or a new one) takes over now."
)


@router.get("/admin/keys", include_in_schema=False)
def key_list(
    request: Request, runtime: deps.Rt, pages: deps.Pages, browser: deps.Browser
) -> Response:
    admin = access.page(request, runtime, pages, browser)
    if isinstance(admin, Response):
        return admin
    with deps.read_transaction(runtime) as db:
        rows = key_admin.list_keys(db)
    context = {
        "keys": rows,
        "algs": runtime.settings.enabled_algs,
        "notice": access.notice(request),
    }
    return access.render(request, runtime, pages, browser, "admin/keys/list.html", context)


@router.get("/admin/keys/rotate", include_in_schema=False)
def rotate_form(
    request: Request, runtime: deps.Rt, pages: deps.Pages, browser: deps.Browser
) -> Response:
    admin = access.page(request, runtime, pages, browser, sensitive=True)
    if isinstance(admin, Response):
        return admin
    context = {"algs": runtime.settings.enabled_algs}
    return access.render(request, runtime, pages, browser, "admin/keys/rotate.html", context)


@router.post("/admin/keys/rotate", include_in_schema=False)
def rotate(
    request: Request,
    params: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
) -> Response:
    back = "/admin/keys/rotate"
    admin = access.form(request, params, runtime, pages, browser, back, sensitive=True)
    if isinstance(admin, Response):
        return admin
    alg, at_once = params.get("alg") or "", params.get("immediately") == "on"
    try:
        with deps.transaction(runtime) as db:
            key_admin.rotate_key(
                db, runtime.sealer, runtime.settings, alg, now=at_once, actor=admin.actor
            )
    except key_admin.AlgorithmNotEnabled as exc:
        return pages.error(request, "Unknown algorithm", str(exc), 400)
    return access.redirect(runtime, browser, "/admin/keys?notice=rotated")


@router.get("/admin/keys/{kid}/revoke", include_in_schema=False)
def revoke_confirm(
    kid: str, request: Request, runtime: deps.Rt, pages: deps.Pages, browser: deps.Browser
) -> Response:
    admin = access.page(request, runtime, pages, browser, sensitive=True)
    if isinstance(admin, Response):
        return admin
    with deps.read_transaction(runtime) as db:
        key = key_store.get(db, kid)
    if key is None or key.state == key_store.KeyState.REVOKED:
        return pages.error(request, "Key not found", "There is no published key with this id.", 404)
    context = {
        "title": f"Revoke key {kid}",
        "message": REVOKE_MESSAGE,
        "button": "Revoke the key",
        "action": f"/admin/keys/{kid}/revoke",
        "back": "/admin/keys",
        "hidden": {},
    }
    return access.render(request, runtime, pages, browser, "admin/confirm.html", context)


@router.post("/admin/keys/{kid}/revoke", include_in_schema=False)
def revoke(
    kid: str,
    request: Request,
    params: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
) -> Response:
    back = f"/admin/keys/{kid}/revoke"
    admin = access.form(request, params, runtime, pages, browser, back, sensitive=True)
    if isinstance(admin, Response):
        return admin
    try:
        with deps.transaction(runtime) as db:
            key_admin.revoke_key(db, runtime.sealer, runtime.settings, kid, actor=admin.actor)
    except LookupError:
        return pages.error(request, "Key not found", "There is no published key with this id.", 404)
    return access.redirect(runtime, browser, "/admin/keys?notice=revoked")
