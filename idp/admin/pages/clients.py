"""/admin/clients: the list (search, pages, each client's linter findings), a client's detail,
and the form to register or edit one. A new secret is shown once (secret.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from idp import deps
from idp.admin import clients as client_admin, lint
from idp.admin.clients import InvalidRegistration
from idp.admin.listing import InvalidCursor
from idp.admin.pages import access, client_form, secret
from idp.admin.pages.client_form import ClientForm
from idp.protocol.authorization import Browser
from idp.runtime import Runtime
from idp.store import clients as client_store
from idp.store.clients import Client, today
from idp.web.templating import Templates

router = APIRouter()
PAGE_SIZE = 50


@router.get("/admin/clients", include_in_schema=False)
def client_list(
    request: Request, runtime: deps.Rt, pages: deps.Pages, browser: deps.Browser
) -> Response:
    admin = access.page(request, runtime, pages, browser)
    if isinstance(admin, Response):
        return admin
    q = request.query_params.get("q", "")[:200]
    try:
        with deps.read_transaction(runtime) as db:
            found = client_admin.search_clients(
                db, q=q or None, cursor=request.query_params.get("cursor"), limit=PAGE_SIZE
            )
    except InvalidCursor:
        return pages.error(request, "Invalid page", "This list has no such page.", 400)
    day = today()
    listed = [(c, lint.findings(c, runtime.settings, day)) for c in found.items]
    context = {
        "clients": listed,
        "q": q,
        "next_cursor": found.next_cursor,
        "notice": access.notice(request),
    }
    return access.render(request, runtime, pages, browser, "admin/clients/list.html", context)


def load(runtime: Runtime, client_id: str) -> Client | None:
    with deps.read_transaction(runtime) as db:
        return client_store.get(db, client_id)


def not_found(request: Request, pages: Templates) -> Response:
    return pages.error(request, "Client not found", "There is no client with this id.", 404)


@router.get("/admin/clients/new", include_in_schema=False)
def new_client_form(
    request: Request, runtime: deps.Rt, pages: deps.Pages, browser: deps.Browser
) -> Response:
    admin = access.page(request, runtime, pages, browser, sensitive=True)
    if isinstance(admin, Response):
        return admin
    return _form_page(request, runtime, pages, browser, client_form.blank(), None)


def _form_page(
    request: Request,
    runtime: Runtime,
    pages: Templates,
    browser: Browser,
    form: ClientForm,
    client: Client | None,
    status: int = 200,
) -> Response:
    context = {
        **form.context(),
        "client": client,
        "jwks_text": client_form.jwks_text(form.values["jwks"]),
        "action": f"/admin/clients/{client.client_id}/edit" if client else "/admin/clients/new",
    }
    name = "admin/clients/form.html"
    return access.render(request, runtime, pages, browser, name, context, status=status)


@router.post("/admin/clients/new", include_in_schema=False)
def create_client(
    request: Request,
    params: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
) -> Response:
    admin = access.form(
        request, params, runtime, pages, browser, "/admin/clients/new", sensitive=True
    )
    if isinstance(admin, Response):
        return admin
    form = client_form.read(params)
    if form.errors:
        return _form_page(request, runtime, pages, browser, form, None, 422)
    try:
        wanted = client_admin.spec_from_metadata(client_form.changes(form))
        # Validates, resolves the hosts this server will call, fetches the logo: no
        # transaction is open while it waits on the network.
        logo = client_admin.fetch_logo(wanted, runtime.outbound)
        with deps.transaction(runtime) as db:
            registered = client_admin.register(
                db, wanted, logo, policy=runtime.outbound, actor=admin.actor
            )
    except InvalidRegistration as exc:
        form.errors.update(exc.fields or {"client_name": str(exc)})
        return _form_page(request, runtime, pages, browser, form, None, 422)
    client = registered.client
    pending = registered.pending is not None
    if registered.client_secret is None:
        notice = "?notice=approval-requested" if pending else ""
        return access.redirect(runtime, browser, f"/admin/clients/{client.client_id}{notice}")
    return secret.shown_once(
        request, runtime, pages, browser, client, registered.client_secret, pending
    )


@router.get("/admin/clients/{client_id}", include_in_schema=False)
def client_detail(
    client_id: str,
    request: Request,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
) -> Response:
    admin = access.page(request, runtime, pages, browser)
    if isinstance(admin, Response):
        return admin
    client = load(runtime, client_id)
    if client is None:
        return not_found(request, pages)
    context = {
        "client": client,
        "metadata": client_form.of_client(client).values,
        "findings": lint.findings(client, runtime.settings, today()),
        "notice": access.notice(request),
    }
    return access.render(request, runtime, pages, browser, "admin/clients/detail.html", context)


@router.get("/admin/clients/{client_id}/edit", include_in_schema=False)
def edit_client_form(
    client_id: str,
    request: Request,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
) -> Response:
    admin = access.page(request, runtime, pages, browser, sensitive=True)
    if isinstance(admin, Response):
        return admin
    client = load(runtime, client_id)
    if client is None:
        return not_found(request, pages)
    return _form_page(request, runtime, pages, browser, client_form.of_client(client), client)


@router.post("/admin/clients/{client_id}/edit", include_in_schema=False)
def edit_client(
    client_id: str,
    request: Request,
    params: deps.PageParams,
    runtime: deps.Rt,
    pages: deps.Pages,
    browser: deps.Browser,
) -> Response:
    back = f"/admin/clients/{client_id}/edit"
    admin = access.form(request, params, runtime, pages, browser, back, sensitive=True)
    if isinstance(admin, Response):
        return admin
    client = load(runtime, client_id)
    if client is None:
        return not_found(request, pages)
    form = client_form.read(params)
    if form.errors:
        return _form_page(request, runtime, pages, browser, form, client, 422)
    changes = client_form.changes(form)
    try:
        logo = client_admin.fetch_for_update(client, changes, runtime.outbound)  # no transaction
        with deps.transaction(runtime) as db:
            updated = client_admin.change_client(
                db, client_id, changes, admin.actor, policy=runtime.outbound, logo=logo
            )
    except InvalidRegistration as exc:
        form.errors.update(exc.fields or {"client_name": str(exc)})
        return _form_page(request, runtime, pages, browser, form, client, 422)
    except LookupError:
        return not_found(request, pages)
    notice = "approval-requested" if updated.pending is not None else "updated"
    return access.redirect(runtime, browser, f"/admin/clients/{client_id}?notice={notice}")
