"""The one page that shows a new client secret: once, never cached (no-store), in a read-only
field with a copy button (static/admin.js; the field can be copied by hand without it)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from idp.admin.pages import access
from idp.protocol.authorization import Browser
from idp.runtime import Runtime
from idp.store.clients import Client
from idp.web.templating import Templates


def shown_once(
    request: Request,
    runtime: Runtime,
    pages: Templates,
    browser: Browser,
    client: Client,
    client_secret: str,
    pending: bool = False,
) -> Response:
    context = {"client": client, "client_secret": client_secret, "pending": pending}
    response = access.render(
        request, runtime, pages, browser, "admin/clients/secret.html", context, scripts=True
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response
