"""The admin API under /admin/api: JSON over HTTP for automation, documented by an OpenAPI 3.1
document at /admin/api/openapi.json, guarded by this IdP's own access tokens (auth.py).

It is a FastAPI application of its own, mounted in the IdP's: its errors are JSON in the
protocol's forms (errors.py), never the pages a person sees, and its document lists only its
routes."""

from __future__ import annotations

from fastapi import FastAPI

from idp.admin.api import approvals, audit, clients, errors, keys, users
from idp.runtime import Runtime

PREFIX = "/admin/api"
DESCRIPTION = """Manage this identity provider's clients, users, roles, signing keys and audit
trail. Every request carries a Bearer access token of this IdP whose `aud` is this API's
resource URI (`{issuer}/admin/api`): `idp:admin` may do everything, `idp:admin.read` only read.
Services get one with client credentials; people get one as an administrator signed in with two
factors. Errors follow RFC 6750 §3 (401 `invalid_token`, 403 `insufficient_scope`) and, for bad
input, 422 `invalid_request` with `fields` naming each field in error.

Granting the admin role or adding an admin scope to a client answers 202 with a pending change:
it applies when a different administrator approves it (`/approvals`) within 24 hours."""


def build(runtime: Runtime) -> FastAPI:
    api = FastAPI(
        title="IdP admin API",
        version="1",
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        servers=[{"url": runtime.settings.issuer + PREFIX}],
        root_path_in_servers=False,  # the mount's path is in the URL above already
    )
    api.state.runtime = runtime
    errors.install(api)
    for module in (clients, users, approvals, keys, audit):
        api.include_router(module.router)
    return api
